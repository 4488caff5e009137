package voip

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The payload types an echo's streams carry between its outbound and
// inbound tracks. They never reach the network: the peer's sender rewrites
// them to its own.
const (
	echoPayloadType = 96
	echoDTMFType    = 101
)

// EchoLeg sends a peer its own media back. In a forwarder beside the peer,
// it takes what the forwarder sends it (the peer's media) on its outbound
// tracks and gives it back unchanged on its inbound tracks, which the
// forwarder sends to the peer. Telephone events are echoed too. A keyframe
// request from the peer (PLI or FIR on the peer's sender) goes through the
// echo to the peer's own video stream.
//
// Nothing is copied and no goroutine is added: a packet read from the peer
// goes through the echo to the peer's sender on the goroutine that read
// it.
type EchoLeg struct {
	id     string
	tracks []echoTrack
	done   chan struct{}
	once   sync.Once
}

// echoTrack is one kind of media echoed: the forwarder writes into out,
// whose writer hands each packet to in.
type echoTrack struct {
	out *OutboundTrack
	in  *InboundTrack
}

var _ Leg = (*EchoLeg)(nil)

// NewEchoLeg makes an echo of each kind of media peer sends to, in the
// format it was negotiated to receive (its outbound track's codec): so make
// it once the peer's outbound tracks are added (a session's are added
// before its offer or answer). A kind the peer receives none of is not
// echoed.
func NewEchoLeg(id string, peer Leg) *EchoLeg {
	l := &EchoLeg{id: id, done: make(chan struct{})}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		po := peer.Outbound(kind)
		if po == nil {
			continue
		}
		codec := po.Codec()
		trackID := id + "-" + kind.String()
		in := &InboundTrack{
			Kind:     kind,
			Codec:    webrtc.RTPCodecParameters{RTPCodecCapability: codec, PayloadType: echoPayloadType},
			ID:       trackID,
			StreamID: id,
			Leg:      id,
			ssrc:     rand.Uint32(),
			read:     func([]byte) (int, error) { return 0, errPushedTrack },
		}
		out := NewOutboundTrack(codec, trackID, id)
		in.push = &pushed{mu: &out.mu}
		out.writer = echoWriter{in}
		out.pushTo = in.push
		out.ssrc = in.ssrc
		out.pt = echoPayloadType
		if kind == webrtc.RTPCodecTypeAudio {
			out.dtmfPT = echoDTMFType
			in.DTMFPayloadType = echoDTMFType
		}
		// The peer's keyframe requests for what the echo sends are for what
		// the echo is sent: the forwarder points out's at the peer's stream.
		in.keyframe = out.keyframeRequested
		l.tracks = append(l.tracks, echoTrack{out: out, in: in})
	}
	return l
}

// errPushedTrack is what reading an echo's track gives: the forwarder gets
// its packets pushed, nobody reads them.
var errPushedTrack = errors.New("the track is fed in process and cannot be read")

// echoWriter is what an echo's outbound track writes to in place of a
// sender: the inbound track of the echo. Forwarded packets skip it (see
// OutboundTrack.pushTo); injected ones (telephone events) go through it.
type echoWriter struct{ in *InboundTrack }

// WriteRTP implements webrtc.TrackLocalWriter; the caller holds the
// outbound track's lock.
func (w echoWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.in.push.deliver(h, payload, time.Now())
	return len(payload), nil
}

// Write implements webrtc.TrackLocalWriter, for a marshalled packet.
func (w echoWriter) Write(b []byte) (int, error) {
	var h rtp.Header
	n, err := h.Unmarshal(b)
	if err != nil {
		return 0, err
	}
	return w.WriteRTP(&h, b[n:])
}

// ID implements Leg.
func (l *EchoLeg) ID() string { return l.id }

// OnInbound implements Leg.
func (l *EchoLeg) OnInbound(fn func(*InboundTrack)) {
	for _, t := range l.tracks {
		fn(t.in)
	}
}

// Outbound implements Leg.
func (l *EchoLeg) Outbound(kind webrtc.RTPCodecType) *OutboundTrack {
	for _, t := range l.tracks {
		if t.in.Kind == kind {
			return t.out
		}
	}
	return nil
}

// Stats implements Leg: what the echo was given (outbound) and gave back
// (inbound).
func (l *EchoLeg) Stats() LegStats {
	st := LegStats{Leg: l.id}
	for _, t := range l.tracks {
		in, out := t.in, t.out
		st.Inbound = append(st.Inbound, TrackStats{ID: in.ID, Kind: in.Kind, Codec: in.Codec.MimeType, SSRC: in.ssrc,
			Packets: in.packets.Load(), Bytes: in.bytes.Load(), Duplicates: in.duplicates.Load()})
		st.Outbound = append(st.Outbound, TrackStats{ID: out.id, Kind: out.Kind(), Codec: out.codec.MimeType, SSRC: in.ssrc,
			Packets: out.packets.Load(), Bytes: out.bytes.Load()})
	}
	return st
}

// Done implements Leg: closed by Close.
func (l *EchoLeg) Done() <-chan struct{} { return l.done }

// Close implements Leg: the echo takes nothing more (what the forwarder
// writes to it is dropped).
func (l *EchoLeg) Close() error {
	l.once.Do(func() {
		for _, t := range l.tracks {
			t.out.mu.Lock()
			t.out.writer = nil
			t.out.mu.Unlock()
		}
		close(l.done)
	})
	return nil
}

// pushed connects a track fed in process to the forwarder that has it, in
// place of a reader: the writer's goroutine runs the forwarder's hot path.
// Every packet is delivered under the writing track's lock (mu), which is
// what detach waits on.
type pushed struct {
	mu *sync.Mutex
	tf atomic.Pointer[trackForwarder]
}

func (p *pushed) attach(tf *trackForwarder) { p.tf.Store(tf) }

// detach returns once no packet is being handled by tf.
func (p *pushed) detach(tf *trackForwarder) {
	p.tf.CompareAndSwap(tf, nil)
	p.mu.Lock()
	p.mu.Unlock() //nolint:staticcheck // an empty critical section: waits for the packet being delivered
}

// deliver hands one packet to the track's forwarder, if it is in one. The
// caller holds p.mu.
func (p *pushed) deliver(h *rtp.Header, payload []byte, now time.Time) {
	if tf := p.tf.Load(); tf != nil {
		tf.handle(h, payload, h.MarshalSize()+len(payload), now)
	}
}
