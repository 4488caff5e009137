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
// recorder, a DTMF detector). It is called on the goroutine forwarding the
// packet and must not block or call the forwarder; it must not keep h or
// payload.
type Tap interface {
	Packet(t *InboundTrack, h *rtp.Header, payload []byte)
	// Close is called once, when the forwarder closes.
	Close() error
}

// ErrLegInUse is returned by Add for a leg that is already in a forwarder:
// a track has one reader (see Leg).
var ErrLegInUse = errors.New("the leg is already in a forwarder")

// members is which forwarder each leg is in.
var members sync.Map // Leg -> *Forwarder

// Forwarder carries media between legs without decoding it: each inbound
// track is forwarded as RTP to the outbound track of the same kind on every
// other leg. An outbound track takes one source at a time (the first leg
// that joined, unless one is selected); when its source changes the stream
// stays continuous.
//
// It is mechanics only: which legs meet, who is heard and when is its
// user's to decide. Echo is a leg like any other (NewEchoLeg). A leg is in
// one forwarder at a time, which reads its inbound tracks.
type Forwarder struct {
	id  string
	log zerolog.Logger

	mu       sync.Mutex
	legs     []*fwdLeg
	selected map[*OutboundTrack]*InboundTrack
	taps     []fwdTap
	closed   bool
	onError  func(error)
	readers  sync.WaitGroup
}

type fwdTap struct {
	leg Leg // nil: every leg
	tap Tap
}

type fwdLeg struct {
	leg       Leg
	receiving atomic.Bool // false: muted or on hold, nothing is forwarded into it
	tracks    []*trackForwarder
}

// trackForwarder moves one inbound track's packets.
type trackForwarder struct {
	fwd      *Forwarder
	track    *InboundTrack
	from     *fwdLeg
	dests    atomic.Pointer[[]*destination]
	taps     atomic.Pointer[[]Tap]
	detached atomic.Bool // the leg left the forwarder: its reader stops
}

type destination struct {
	out *OutboundTrack
	to  *fwdLeg
}

// ForwarderOption changes a forwarder.
type ForwarderOption func(*Forwarder)

// OnError sets what to call when the forwarder cannot carry media between
// two legs (no common codec); the default logs it.
func OnError(fn func(error)) ForwarderOption { return func(f *Forwarder) { f.onError = fn } }

// NewForwarder makes an empty forwarder.
func NewForwarder(id string, log zerolog.Logger, opts ...ForwarderOption) *Forwarder {
	f := &Forwarder{id: id, log: log.With().Str("forwarder", id).Logger(), selected: map[*OutboundTrack]*InboundTrack{}}
	f.onError = func(err error) { f.log.Error().Err(err).Msg("Forwarder cannot forward media") }
	for _, opt := range opts {
		opt(f)
	}
	return f
}

// Add puts a leg into the forwarder. Media starts flowing to and from it
// as its tracks appear. A leg whose outbound track cannot carry a source's
// format fails loudly through OnError with the reason. A leg already in a
// forwarder (this one or another) is refused with ErrLegInUse: take it out
// of the other first.
func (f *Forwarder) Add(leg Leg) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return fmt.Errorf("adding leg %s: forwarder %s is closed", leg.ID(), f.id)
	}
	if other, taken := members.LoadOrStore(leg, f); taken {
		f.mu.Unlock()
		return fmt.Errorf("adding leg %s to forwarder %s: %w (%s)", leg.ID(), f.id, ErrLegInUse, other.(*Forwarder).id)
	}
	fl := &fwdLeg{leg: leg}
	fl.receiving.Store(true)
	f.legs = append(f.legs, fl)
	f.mu.Unlock()
	leg.OnInbound(func(t *InboundTrack) { f.addTrack(fl, t) })
	f.mu.Lock()
	err := f.route()
	f.mu.Unlock()
	if err != nil {
		f.onError(err)
	}
	return err
}

// Remove takes a leg out of the forwarder (it is not closed), for another
// forwarder to take. Outbound tracks it fed switch to another source. Its
// tracks' readers stop at their next packet, which is counted but not
// forwarded; a forwarder the leg joins next reads from then on.
func (f *Forwarder) Remove(leg Leg) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.legs = slices.DeleteFunc(f.legs, func(fl *fwdLeg) bool {
		if fl.leg != leg {
			return false
		}
		for _, tf := range fl.tracks {
			tf.detach()
		}
		members.CompareAndDelete(leg, f)
		return true
	})
	if err := f.route(); err != nil {
		f.onError(err)
	}
}

// SetReceiving stops (false) or resumes (true) forwarding into a leg, as for
// mute or hold, without tearing anything down.
func (f *Forwarder) SetReceiving(leg Leg, receiving bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range f.legs {
		if fl.leg == leg {
			fl.receiving.Store(receiving)
		}
	}
}

// Select makes src the source of every outbound track of its kind on the
// other legs (the speaker everyone hears, the camera everyone sees).
func (f *Forwarder) Select(src *InboundTrack) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range f.legs {
		if out := fl.leg.Outbound(src.Kind); out != nil && fl.leg.ID() != src.Leg {
			f.selected[out] = src
		}
	}
	return f.route()
}

// Tap attaches t to every inbound track of the leg (all legs if nil), now
// and later.
func (f *Forwarder) Tap(leg Leg, t Tap) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range f.legs {
		if leg != nil && fl.leg != leg {
			continue
		}
		for _, tf := range fl.tracks {
			taps := append(slices.Clone(*tf.taps.Load()), t)
			tf.taps.Store(&taps)
		}
	}
	f.taps = append(f.taps, fwdTap{leg: leg, tap: t})
}

func (f *Forwarder) addTrack(fl *fwdLeg, t *InboundTrack) {
	f.mu.Lock()
	if f.closed || !slices.Contains(f.legs, fl) || slices.ContainsFunc(fl.tracks, func(tf *trackForwarder) bool { return tf.track == t }) {
		f.mu.Unlock()
		return
	}
	tf := &trackForwarder{fwd: f, track: t, from: fl}
	tf.dests.Store(&[]*destination{})
	taps := []Tap{}
	for _, ft := range f.taps {
		if ft.leg == nil || ft.leg == fl.leg {
			taps = append(taps, ft.tap)
		}
	}
	tf.taps.Store(&taps)
	fl.tracks = append(fl.tracks, tf)
	err := f.route()
	if t.push != nil {
		t.push.attach(tf)
	} else {
		f.readers.Add(1)
		go f.read(tf)
	}
	f.mu.Unlock()
	if err != nil {
		f.onError(err)
	}
}

// route recomputes which source feeds each outbound track and publishes the
// result to the track forwarders. It runs under f.mu whenever legs or
// tracks come or go; the forwarding path reads its destinations without
// locking.
func (f *Forwarder) route() error {
	var errs []error
	next := map[*trackForwarder][]*destination{}
	for _, to := range f.legs {
		for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			out := to.leg.Outbound(kind)
			if out == nil {
				continue
			}
			src := f.sourceFor(to, out, kind)
			if src == nil {
				continue
			}
			if !sameFormat(src.track.Codec.RTPCodecCapability, out.Codec()) {
				errs = append(errs, &NoCommonCodecError{Kind: kind, Have: src.track.Codec.RTPCodecCapability, Leg: to.leg.ID(),
					Takes: []webrtc.RTPCodecCapability{out.Codec()}})
				continue
			}
			if prev := f.selected[out]; prev != src.track {
				f.selected[out] = src.track
				src.track.RequestKeyframe() // a new viewer of a video stream needs a keyframe
			}
			out.OnKeyframeRequest(src.track.RequestKeyframe)
			next[src] = append(next[src], &destination{out: out, to: to})
		}
	}
	for _, from := range f.legs {
		for _, tf := range from.tracks {
			dests := next[tf]
			tf.dests.Store(&dests)
		}
	}
	return errors.Join(errs...)
}

// sourceFor picks the inbound track that feeds out: the selected one if it
// is still in the forwarder, else the first of its kind from another leg.
func (f *Forwarder) sourceFor(to *fwdLeg, out *OutboundTrack, kind webrtc.RTPCodecType) *trackForwarder {
	var first *trackForwarder
	for _, from := range f.legs {
		if from == to {
			continue
		}
		for _, tf := range from.tracks {
			if tf.track.Kind != kind {
				continue
			}
			if f.selected[out] == tf.track {
				return tf
			}
			if first == nil {
				first = tf
			}
		}
	}
	return first
}

// read is a track's reader: it reads packets one at a time into one buffer
// and hands each to handle, until the track ends or its leg leaves the
// forwarder. It waits for the reader of another forwarder the leg was in
// to stop first.
func (f *Forwarder) read(tf *trackForwarder) {
	defer f.readers.Done()
	t := tf.track
	t.reader.Lock()
	defer t.reader.Unlock()
	buf := make([]byte, maxPacket)
	var h rtp.Header
	for !tf.detached.Load() {
		n, err := t.Read(buf)
		if err != nil {
			return
		}
		payload, ok := ParseRTP(&h, buf[:n])
		if !ok {
			continue
		}
		tf.handle(&h, payload, n, time.Now())
	}
}

// ParseRTP reads an RTP packet's header into h and returns its payload
// without padding (h then says it has none); false for a packet that does
// not parse or whose padding is longer than its payload. Nothing is
// copied or allocated.
func ParseRTP(h *rtp.Header, pkt []byte) ([]byte, bool) {
	hl, err := h.Unmarshal(pkt)
	if err != nil {
		return nil, false
	}
	payload := pkt[hl:]
	if h.Padding && len(payload) > 0 {
		pad := int(payload[len(payload)-1])
		if pad > len(payload) {
			return nil, false
		}
		payload = payload[:len(payload)-pad]
		h.Padding, h.PaddingSize = false, 0
	}
	return payload, true
}

// handle is the per-packet hot path: receive statistics and the duplicate
// check, then the packet rewritten for each destination, then the taps.
// The payload is never copied here (the destinations' senders encrypt it
// into their own buffers), and nothing is allocated. size is the packet's
// size on the wire.
func (tf *trackForwarder) handle(h *rtp.Header, payload []byte, size int, now time.Time) {
	t := tf.track
	if t.followSSRC {
		t.follow(h, now)
	}
	// A track fed in process (an echo) has no loss, jitter or duplicates
	// to count: its numbers are those of our own outbound track.
	if t.push == nil && !t.recordArrival(h.SequenceNumber, h.Timestamp, now) {
		return // a duplicate: the receivers have it
	}
	t.packets.Add(1)
	t.bytes.Add(uint64(size))
	for _, d := range *tf.dests.Load() {
		if !d.to.receiving.Load() {
			continue
		}
		if err := d.out.forward(t, h, payload, now); err != nil && !errors.Is(err, errNotBound) {
			tf.fwd.log.Debug().Err(err).Str("to", d.to.leg.ID()).Msg("Forwarding failed")
		}
	}
	for _, tap := range *tf.taps.Load() {
		tap.Packet(t, h, payload)
	}
}

// detach stops forwarding a track: it has no destinations or taps any
// more, and its reader stops. A pushed track is detached at once (after
// the packet being handled, if any).
func (tf *trackForwarder) detach() {
	tf.dests.Store(&[]*destination{})
	tf.taps.Store(&[]Tap{})
	tf.detached.Store(true)
	if p := tf.track.push; p != nil {
		p.detach(tf)
	}
}

// Close stops forwarding, lets the legs go (they are not closed) and closes
// the taps. It returns once every track's reader has stopped, each at its
// track's next packet or end: close legs that may send nothing first, or
// concurrently.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	for _, fl := range f.legs {
		for _, tf := range fl.tracks {
			tf.detach()
		}
		members.CompareAndDelete(fl.leg, f)
	}
	taps := f.taps
	f.mu.Unlock()
	f.readers.Wait()
	var errs []error
	for _, ft := range taps {
		if err := ft.tap.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing tap: %w", err))
		}
	}
	return errors.Join(errs...)
}
