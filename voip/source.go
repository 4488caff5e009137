package voip

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Packetized is a stream of RTP packets made by the bot itself (a tone, a
// file played in a loop): a paced goroutine writes packets, the forwarder
// reads them as an inbound track.
type Packetized struct {
	track   *InboundTrack
	packets chan queuedPacket
	keyreq  chan struct{}
	done    chan struct{}
	once    sync.Once

	seq uint16
	ts  uint32
	hdr rtp.Header
	now func() time.Time // the clock packets are stamped with
}

// NewPacketized makes a source track of a kind and format; the producer
// calls Write for each packet, at the pace it should be heard.
func NewPacketized(kind webrtc.RTPCodecType, codec webrtc.RTPCodecParameters, id, leg string) *Packetized {
	p := &Packetized{
		packets: make(chan queuedPacket, 64),
		keyreq:  make(chan struct{}, 1),
		done:    make(chan struct{}),
		now:     time.Now,
	}
	p.track = &InboundTrack{Kind: kind, Codec: codec, ID: id, Leg: leg, read: p.read, keyframe: p.requestKeyframe}
	return p
}

// Track is the inbound track the forwarder reads.
func (p *Packetized) Track() *InboundTrack { return p.track }

// KeyframeRequests delivers (coalesced) keyframe requests from receivers.
func (p *Packetized) KeyframeRequests() <-chan struct{} { return p.keyreq }

func (p *Packetized) requestKeyframe() {
	select {
	case p.keyreq <- struct{}{}:
	default:
	}
}

// Write sends one payload as the next RTP packet, its timestamp advanced by
// tsStep ticks from the previous packet's (0 for the packets of one video
// frame after the first). It blocks while the reader is behind (packets
// that waited longer than staleAfter are dropped when read), and fails once
// the source is closed.
func (p *Packetized) Write(payload []byte, marker bool, tsStep uint32) error {
	select {
	case <-p.done:
		return io.ErrClosedPipe
	default:
	}
	p.seq++
	p.ts += tsStep
	p.hdr = rtp.Header{Version: 2, Marker: marker, PayloadType: uint8(p.track.Codec.PayloadType), SequenceNumber: p.seq, Timestamp: p.ts, SSRC: 1}
	pkt := make([]byte, p.hdr.MarshalSize()+len(payload))
	n, err := p.hdr.MarshalTo(pkt)
	if err != nil {
		return err
	}
	copy(pkt[n:], payload)
	select {
	case p.packets <- queuedPacket{pkt: pkt, at: p.now()}:
		return nil
	case <-p.done:
		return io.ErrClosedPipe
	}
}

// queuedPacket is a packet written and not yet read.
type queuedPacket struct {
	pkt []byte
	at  time.Time
}

// staleAfter is how long a written packet may wait for the reader. Older
// ones are dropped: media made while nobody listened (before the source
// joined a forwarder) would otherwise arrive as a burst and delay the stream
// for good.
const staleAfter = 200 * time.Millisecond

func (p *Packetized) read(b []byte) (int, error) {
	for {
		select {
		case q := <-p.packets:
			if p.now().Sub(q.at) > staleAfter {
				continue
			}
			if len(q.pkt) > len(b) {
				return 0, io.ErrShortBuffer
			}
			return copy(b, q.pkt), nil
		case <-p.done:
			return 0, io.EOF
		}
	}
}

// Close ends the stream: the reader gets io.EOF, the writer an error.
func (p *Packetized) Close() {
	p.once.Do(func() { close(p.done) })
}

// Done is closed once the stream is closed.
func (p *Packetized) Done() <-chan struct{} { return p.done }

// SourceLeg is a leg that only sends: the bot's own media. It receives
// nothing (its Outbound is nil).
type SourceLeg struct {
	id      string
	streams []*Packetized
	stop    func() error // stops the producers; called once by Close
	done    chan struct{}
	once    sync.Once
	err     error
}

var _ Leg = (*SourceLeg)(nil)

// NewSourceLeg makes a leg of streams. stop is called by Close to stop the
// goroutines producing them; the leg is done when every stream is closed.
func NewSourceLeg(id string, stop func() error, streams ...*Packetized) *SourceLeg {
	l := &SourceLeg{id: id, streams: streams, stop: stop, done: make(chan struct{})}
	go func() {
		for _, s := range streams {
			<-s.Done()
		}
		close(l.done)
	}()
	return l
}

// ID implements Leg.
func (l *SourceLeg) ID() string { return l.id }

// OnInbound implements Leg.
func (l *SourceLeg) OnInbound(fn func(*InboundTrack)) {
	for _, s := range l.streams {
		fn(s.track)
	}
}

// Outbound implements Leg: a source receives nothing.
func (l *SourceLeg) Outbound(webrtc.RTPCodecType) *OutboundTrack { return nil }

// Stats implements Leg.
func (l *SourceLeg) Stats() LegStats {
	st := LegStats{Leg: l.id}
	for _, s := range l.streams {
		t := s.track
		st.Inbound = append(st.Inbound, TrackStats{ID: t.ID, Kind: t.Kind, Codec: t.Codec.MimeType, Packets: t.packets.Load(), Bytes: t.bytes.Load()})
	}
	return st
}

// Done implements Leg.
func (l *SourceLeg) Done() <-chan struct{} { return l.done }

// Close implements Leg.
func (l *SourceLeg) Close() error {
	l.once.Do(func() {
		if l.stop != nil {
			l.err = l.stop()
		}
		for _, s := range l.streams {
			s.Close()
		}
		<-l.done
	})
	if errors.Is(l.err, io.EOF) {
		return nil
	}
	return l.err
}
