package voip

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// PacketStream is one stream of media carried as plain RTP packets by
// something outside voip (a Jami SRTP session, later XMPP…): a reader of
// what arrives and a writer of what we send, already negotiated.
type PacketStream struct {
	Kind webrtc.RTPCodecType
	// Codec is the format that arrives, with the payload type the remote
	// sends it with; we send the same format.
	Codec webrtc.RTPCodecParameters
	// SendPayloadType is the codec's number towards the remote.
	SendPayloadType uint8
	// DTMFPayloadType is telephone-event as it arrives, SendDTMFPayloadType
	// as we send it; 0 if none was negotiated.
	DTMFPayloadType, SendDTMFPayloadType uint8
	// ReadRTP reads one packet into b, blocking; an error ends the stream
	// (and the leg).
	ReadRTP func(b []byte) (int, error)
	// WriteRTP sends one packet; it may be called while ReadRTP blocks.
	WriteRTP func(h *rtp.Header, payload []byte) error
	// RequestKeyframe asks the remote for a keyframe (an RTCP PLI); nil
	// if it cannot.
	RequestKeyframe func()
	ID, StreamID    string
}

// PacketLeg is a leg made of PacketStreams. It has no goroutine: the
// forwarder it is in reads each stream (one reader per track, see Leg) and
// writes into its outbound tracks, which give each packet our SSRC and the
// remote's payload types.
//
// RTCP is the owner's to carry, as the transport is: it passes what the
// remote sends to HandleRTCP, and sends what Reports makes every few
// seconds, from one goroutine.
type PacketLeg struct {
	id         string
	tracks     []*packetTrack
	reportSSRC uint32
	lastSRs    sync.Map // remote SSRC -> lastSR
	closer     func() error
	done       chan struct{}
	once       sync.Once
}

// packetTrack is one stream's inbound and outbound tracks.
type packetTrack struct {
	in  *InboundTrack
	out *OutboundTrack
	// remoteSSRC is the latest packet's SSRC (the SDP of a Jami
	// call names none).
	remoteSSRC atomic.Uint32
}

var _ Leg = (*PacketLeg)(nil)

// PacketLegOption changes a packet leg.
type PacketLegOption func(*PacketLeg)

// WithCloser sets what Close calls to end the transport (which ends the
// streams' reads): without it, the owner closes the transport itself,
// and the forwarder's readers stop only then.
func WithCloser(fn func() error) PacketLegOption { return func(l *PacketLeg) { l.closer = fn } }

// NewPacketLeg makes a leg of the given streams.
func NewPacketLeg(id string, streams []PacketStream, opts ...PacketLegOption) *PacketLeg {
	l := &PacketLeg{id: id, done: make(chan struct{}), reportSSRC: rand.Uint32()}
	for _, o := range opts {
		o(l)
	}
	for i, ps := range streams {
		trackID := ps.ID
		if trackID == "" {
			trackID = fmt.Sprintf("%s-%s-%d", id, ps.Kind, i)
		}
		streamID := ps.StreamID
		if streamID == "" {
			streamID = id
		}
		pt := &packetTrack{}
		read := ps.ReadRTP
		pt.in = &InboundTrack{
			Kind: ps.Kind, Codec: ps.Codec, DTMFPayloadType: ps.DTMFPayloadType,
			ID: trackID, StreamID: streamID, Leg: id, followSSRC: true,
			read: func(b []byte) (int, error) {
				n, err := read(b)
				if err != nil {
					l.end()
					return 0, err
				}
				if n >= 12 {
					// The latest SSRC: the peer's reports are about it
					// (a restarted stream has a new one: InboundTrack.follow).
					if ssrc := uint32(b[8])<<24 | uint32(b[9])<<16 | uint32(b[10])<<8 | uint32(b[11]); pt.remoteSSRC.Load() != ssrc {
						pt.remoteSSRC.Store(ssrc)
					}
				}
				return n, nil
			},
			keyframe: ps.RequestKeyframe,
		}
		out := NewOutboundTrack(ps.Codec.RTPCodecCapability, trackID, streamID)
		out.writer = packetWriter{ps.WriteRTP}
		out.ssrc = rand.Uint32()
		out.pt = ps.SendPayloadType
		out.dtmfPT = ps.SendDTMFPayloadType
		pt.out = out
		l.tracks = append(l.tracks, pt)
	}
	return l
}

// packetWriter is an outbound track's writer: the stream's WriteRTP.
type packetWriter struct {
	write func(h *rtp.Header, payload []byte) error
}

// WriteRTP implements webrtc.TrackLocalWriter.
func (w packetWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if err := w.write(h, payload); err != nil {
		return 0, err
	}
	return len(payload), nil
}

// Write implements webrtc.TrackLocalWriter, for a marshalled packet.
func (w packetWriter) Write(b []byte) (int, error) {
	var h rtp.Header
	n, err := h.Unmarshal(b)
	if err != nil {
		return 0, err
	}
	return w.WriteRTP(&h, b[n:])
}

// ID implements Leg.
func (l *PacketLeg) ID() string { return l.id }

// OnInbound implements Leg: the streams are known from the start.
func (l *PacketLeg) OnInbound(fn func(*InboundTrack)) {
	for _, t := range l.tracks {
		fn(t.in)
	}
}

// Outbound implements Leg: the first stream of the kind.
func (l *PacketLeg) Outbound(kind webrtc.RTPCodecType) *OutboundTrack {
	for _, t := range l.tracks {
		if t.in.Kind == kind {
			return t.out
		}
	}
	return nil
}

// Stats implements Leg.
func (l *PacketLeg) Stats() LegStats {
	st := LegStats{Leg: l.id}
	for _, t := range l.tracks {
		st.Inbound = append(st.Inbound, inboundStats(t.in, t.remoteSSRC.Load()))
		st.Outbound = append(st.Outbound, outboundStats(t.out))
	}
	return st
}

// Done implements Leg: closed by Close, or when a stream's read fails
// (the transport ended).
func (l *PacketLeg) Done() <-chan struct{} { return l.done }

func (l *PacketLeg) end() { l.once.Do(func() { close(l.done) }) }

// Close implements Leg: nothing more is written, and the transport is
// closed if WithCloser gave a way. The leg has no goroutine of its own.
func (l *PacketLeg) Close() error {
	for _, t := range l.tracks {
		t.out.mu.Lock()
		t.out.writer = nil
		t.out.mu.Unlock()
	}
	l.end()
	var err error
	if l.closer != nil {
		closer := l.closer
		l.closer = nil
		err = closer()
	}
	return err
}

// errNoStream is returned for a stream index the leg does not have.
var errNoStream = errors.New("the packet leg has no such stream")

// HandleRTCP takes the RTCP the remote sent on stream i: sender reports
// (for the timing of our receiver reports), reception reports of what we
// send (loss, jitter, round-trip time in Stats), and keyframe requests
// (PLI, FIR), passed to the source the forwarder feeds the stream from.
func (l *PacketLeg) HandleRTCP(i int, pkts []rtcp.Packet) error {
	if i < 0 || i >= len(l.tracks) {
		return fmt.Errorf("RTCP for stream %d of leg %s: %w", i, l.id, errNoStream)
	}
	now := time.Now()
	noteSenderReports(&l.lastSRs, pkts, now)
	l.tracks[i].out.handleFeedback(pkts, now)
	return nil
}

// KeyframeRequested tells stream i that the remote asked for a keyframe
// by other means than RTCP (SIP INFO picture_fast_update, as Jami does).
func (l *PacketLeg) KeyframeRequested(i int) {
	if i >= 0 && i < len(l.tracks) {
		l.tracks[i].out.keyframeRequested()
	}
}

// Reports makes each stream's RTCP for now, to send on that stream: a
// sender report if we have sent on it, carrying a reception report of
// what it received, else a receiver report; nil for a stream with nothing
// to report. Call it from one goroutine, every few seconds (RFC 3550 asks
// for about 5; interval counts are kept between calls).
func (l *PacketLeg) Reports(now time.Time) [][]rtcp.Packet {
	out := make([][]rtcp.Packet, len(l.tracks))
	for i, t := range l.tracks {
		var blocks []rtcp.ReceptionReport
		if ssrc := t.remoteSSRC.Load(); ssrc != 0 {
			if b, ok := receptionReport(t.in, ssrc, &l.lastSRs, now); ok {
				blocks = append(blocks, b)
			}
		}
		out[i] = compoundReport([]*OutboundTrack{t.out}, blocks, l.reportSSRC, now)
	}
	return out
}
