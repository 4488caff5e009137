package voip

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
)

// maxPacket is the largest RTP packet a forwarder reads (pion's receive MTU).
const maxPacket = 1460

// Tap receives a copy of every packet of the tracks it is attached to (a
// recorder, a DTMF detector). It is called on the forwarding goroutine and
// must not block; it must not keep h or payload.
type Tap interface {
	Packet(t *InboundTrack, h *rtp.Header, payload []byte)
	// Close is called once the tap is detached or the bridge closes.
	Close() error
}

// Bridge carries media between legs without decoding it: each inbound track
// is forwarded as RTP to the outbound track of the same kind on every other
// leg (on the same leg in echo mode). An outbound track takes one source at
// a time (the first leg that joined, unless one is selected); when its
// source changes the stream stays continuous.
type Bridge struct {
	id   string
	log  zerolog.Logger
	echo bool

	mu        sync.Mutex
	legs      []*bridgeLeg
	selected  map[*OutboundTrack]*InboundTrack
	taps      []bridgeTap
	closed    bool
	onError   func(error)
	forwarder sync.WaitGroup
}

type bridgeTap struct {
	leg Leg // nil: every leg
	tap Tap
}

type bridgeLeg struct {
	leg       Leg
	receiving atomic.Bool // false: muted or on hold, nothing is forwarded into it
	tracks    []*trackForwarder
}

// trackForwarder moves one inbound track's packets.
type trackForwarder struct {
	track *InboundTrack
	from  *bridgeLeg
	dests atomic.Pointer[[]*destination]
	taps  atomic.Pointer[[]Tap]
}

type destination struct {
	out *OutboundTrack
	to  *bridgeLeg
}

// BridgeOption changes a bridge.
type BridgeOption func(*Bridge)

// Echo makes a bridge send each leg its own media back (the echo source).
func Echo() BridgeOption { return func(b *Bridge) { b.echo = true } }

// OnError sets what to call when the bridge cannot carry media between two
// legs (no common codec); the default logs it.
func OnError(fn func(error)) BridgeOption { return func(b *Bridge) { b.onError = fn } }

// NewBridge makes an empty bridge.
func NewBridge(id string, log zerolog.Logger, opts ...BridgeOption) *Bridge {
	b := &Bridge{id: id, log: log.With().Str("bridge", id).Logger(), selected: map[*OutboundTrack]*InboundTrack{}}
	b.onError = func(err error) { b.log.Error().Err(err).Msg("Bridge cannot forward media") }
	for _, opt := range opts {
		opt(b)
	}
	return b
}

// Add puts a leg into the bridge. Media starts flowing to and from it as its
// tracks appear. A leg whose outbound track cannot carry a source's format
// fails loudly through OnError with the reason.
func (b *Bridge) Add(leg Leg) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("bridge closed")
	}
	bl := &bridgeLeg{leg: leg}
	bl.receiving.Store(true)
	b.legs = append(b.legs, bl)
	b.mu.Unlock()
	leg.OnInbound(func(t *InboundTrack) { b.addTrack(bl, t) })
	b.mu.Lock()
	err := b.route()
	b.mu.Unlock()
	if err != nil {
		b.onError(err)
	}
	return err
}

// Remove takes a leg out of the bridge (it is not closed). Outbound tracks
// it fed switch to another source.
func (b *Bridge) Remove(leg Leg) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.legs = slices.DeleteFunc(b.legs, func(bl *bridgeLeg) bool {
		if bl.leg != leg {
			return false
		}
		for _, tf := range bl.tracks {
			tf.dests.Store(&[]*destination{})
		}
		return true
	})
	if err := b.route(); err != nil {
		b.onError(err)
	}
}

// SetReceiving stops (false) or resumes (true) forwarding into a leg, as for
// mute or hold, without tearing anything down.
func (b *Bridge) SetReceiving(leg Leg, receiving bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, bl := range b.legs {
		if bl.leg == leg {
			bl.receiving.Store(receiving)
		}
	}
}

// Select makes src the source of every outbound track of its kind on the
// other legs (the speaker everyone hears, the camera everyone sees).
func (b *Bridge) Select(src *InboundTrack) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, bl := range b.legs {
		if out := bl.leg.Outbound(src.Kind); out != nil && (b.echo || bl.leg.ID() != src.Leg) {
			b.selected[out] = src
		}
	}
	return b.route()
}

// Tap attaches t to every inbound track of the leg (all legs if nil), now
// and later.
func (b *Bridge) Tap(leg Leg, t Tap) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, bl := range b.legs {
		if leg != nil && bl.leg != leg {
			continue
		}
		for _, tf := range bl.tracks {
			taps := append(slices.Clone(*tf.loadTaps()), t)
			tf.taps.Store(&taps)
		}
	}
	b.taps = append(b.taps, bridgeTap{leg: leg, tap: t})
}

func (tf *trackForwarder) loadTaps() *[]Tap {
	if p := tf.taps.Load(); p != nil {
		return p
	}
	return &[]Tap{}
}

func (b *Bridge) addTrack(bl *bridgeLeg, t *InboundTrack) {
	b.mu.Lock()
	if b.closed || !slices.Contains(b.legs, bl) {
		b.mu.Unlock()
		return
	}
	tf := &trackForwarder{track: t, from: bl}
	tf.dests.Store(&[]*destination{})
	var taps []Tap
	for _, bt := range b.taps {
		if bt.leg == nil || bt.leg == bl.leg {
			taps = append(taps, bt.tap)
		}
	}
	tf.taps.Store(&taps)
	bl.tracks = append(bl.tracks, tf)
	err := b.route()
	b.forwarder.Add(1)
	b.mu.Unlock()
	if err != nil {
		b.onError(err)
	}
	go b.forward(tf)
}

// route recomputes which source feeds each outbound track and publishes the
// result to the forwarders. It runs under b.mu whenever legs or tracks come
// or go; forwarders read their destinations without locking.
func (b *Bridge) route() error {
	var errs []error
	next := map[*trackForwarder][]*destination{}
	for _, to := range b.legs {
		for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			out := to.leg.Outbound(kind)
			if out == nil {
				continue
			}
			src := b.sourceFor(to, out, kind)
			if src == nil {
				continue
			}
			if !sameFormat(src.track.Codec.RTPCodecCapability, out.Codec()) {
				errs = append(errs, &NoCommonCodecError{Kind: kind, Have: src.track.Codec.RTPCodecCapability, Leg: to.leg.ID(),
					Takes: []webrtc.RTPCodecCapability{out.Codec()}})
				continue
			}
			if prev := b.selected[out]; prev != src.track {
				b.selected[out] = src.track
				src.track.RequestKeyframe() // a new viewer of a video stream needs a keyframe
			}
			track := src.track
			out.OnKeyframeRequest(track.RequestKeyframe)
			next[src] = append(next[src], &destination{out: out, to: to})
		}
	}
	for _, from := range b.legs {
		for _, tf := range from.tracks {
			dests := next[tf]
			tf.dests.Store(&dests)
		}
	}
	return errors.Join(errs...)
}

// sourceFor picks the inbound track that feeds out: the selected one if it
// is still in the bridge, else the first of its kind from another leg (the
// same leg in echo mode).
func (b *Bridge) sourceFor(to *bridgeLeg, out *OutboundTrack, kind webrtc.RTPCodecType) *trackForwarder {
	var first *trackForwarder
	for _, from := range b.legs {
		if (from == to) != b.echo {
			continue
		}
		for _, tf := range from.tracks {
			if tf.track.Kind != kind {
				continue
			}
			if b.selected[out] == tf.track {
				return tf
			}
			if first == nil {
				first = tf
			}
		}
	}
	return first
}

// forward is the per-track hot path: read a packet, rewrite it for each
// destination and write it. It allocates nothing per packet.
func (b *Bridge) forward(tf *trackForwarder) {
	defer b.forwarder.Done()
	buf := make([]byte, maxPacket)
	var h rtp.Header
	t := tf.track
	for {
		n, err := t.Read(buf)
		if err != nil {
			return
		}
		hl, err := h.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		payload := buf[hl:n]
		if h.Padding && len(payload) > 0 {
			pad := int(payload[len(payload)-1])
			if pad > len(payload) {
				continue
			}
			payload = payload[:len(payload)-pad]
			h.Padding = false
			h.PaddingSize = 0
		}
		now := time.Now()
		if !t.recordArrival(h.SequenceNumber, h.Timestamp, now) {
			continue // a duplicate: the receivers have it
		}
		t.packets.Add(1)
		t.bytes.Add(uint64(n))
		if dests := *tf.dests.Load(); len(dests) > 0 {
			for _, d := range dests {
				if !d.to.receiving.Load() {
					continue
				}
				if err := d.out.forward(t, &h, payload, now); err != nil && !errors.Is(err, errNotBound) {
					b.log.Debug().Err(err).Str("to", d.to.leg.ID()).Msg("Forwarding failed")
				}
			}
		}
		if taps := tf.taps.Load(); taps != nil {
			for _, tap := range *taps {
				tap.Packet(t, &h, payload)
			}
		}
	}
}

// Close stops forwarding and closes the taps; the legs are not closed. It
// returns once every forwarder has stopped, which needs the legs' tracks to
// end: close the legs first, or concurrently.
func (b *Bridge) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	for _, bl := range b.legs {
		for _, tf := range bl.tracks {
			tf.dests.Store(&[]*destination{})
			tf.taps.Store(&[]Tap{})
		}
	}
	taps := b.taps
	b.mu.Unlock()
	b.forwarder.Wait()
	var errs []error
	for _, bt := range taps {
		if err := bt.tap.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing tap: %w", err))
		}
	}
	return errors.Join(errs...)
}
