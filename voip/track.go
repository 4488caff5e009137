package voip

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// InboundTrack is media arriving on a leg: from the network, or made by a
// source. Read returns one RTP packet at a time.
type InboundTrack struct {
	Kind  webrtc.RTPCodecType
	Codec webrtc.RTPCodecParameters
	// DTMFPayloadType is the payload type of RFC 4733 events on this
	// stream, 0 if none was negotiated.
	DTMFPayloadType uint8
	ID              string
	// StreamID is the sender's MediaStream id (the SDP's msid), by which
	// Matrix stream metadata names what a stream is for.
	StreamID string
	Leg      string
	ssrc     uint32

	// followSSRC is set for a packet leg's track (a whole m-line of a
	// peer that is not WebRTC): a new SSRC on it is the sender's new
	// stream, numbered anew (see follow). WebRTC tracks are one SSRC each.
	followSSRC bool
	// What follow keeps, touched by the track's reader only.
	srcSSRC  uint32
	seqShift uint16
	tsShift  uint32
	lastTS   uint32 // shifted
	lastAt   time.Time
	restarts atomic.Uint64

	read     func(b []byte) (int, error)
	keyframe func() // asks the sender for a keyframe; nil if it cannot
	// reader is held by the goroutine reading the track, so that a leg
	// moved between forwarders is never read by two (see Leg).
	reader sync.Mutex
	// push is set for a track fed in process (an echo): its writer hands
	// packets to the forwarder, and nothing reads it.
	push *pushed

	// Counted by the track's reader, read by Stats.
	packets, bytes atomic.Uint64
	duplicates     atomic.Uint64
	rx             receiveStats
	nack           *nackTracker // video from a session: asks for lost packets
}

// receiveStats is what RFC 3550 (appendix A.3, A.8) has a receiver count:
// loss from the extended highest sequence number, and interarrival jitter.
// The track's reader updates it; Stats reads the results.
type receiveStats struct {
	started     bool
	start       time.Time
	base, max   uint32 // extended sequence numbers
	received    uint32
	lastTransit int64
	jitter      float64 // in RTP timestamp units

	seen [seqWindow / 64]uint64 // which of the last seqWindow sequence numbers came

	// Published for Stats and the RTCP reporter: the highest sequence
	// number and the count received in one word, so that they are read
	// together (a torn pair would show loss that is not there); the base
	// once; the jitter. Two atomic stores a packet.
	pubBase    atomic.Uint32
	pubMaxRecv atomic.Uint64 // max<<32 | received
	pubJitter  atomic.Uint32 // in timestamp units
	// The counts at the reporter's last report (it alone touches them).
	priorExpected, priorReceived uint32
}

// follow makes a new SSRC on a packet leg's track continue the stream
// before it. RFC 3550 (8.2) has a new SSRC start new sequence number and
// timestamp spaces, and jamid starts one each time it restarts its media
// (a new encoder after a hold, a resume, an ICE restart: ffmpeg picks a
// random SSRC and sequence number). Without this the new numbers would
// look like old duplicates (dropped) or a jump to every receiver. The
// packet's numbers are shifted to follow the last packet's, the
// timestamp by the time that passed, before the statistics, the
// destinations and the taps see them.
func (t *InboundTrack) follow(h *rtp.Header, now time.Time) {
	if h.SSRC != t.srcSSRC {
		if t.srcSSRC != 0 && t.rx.started {
			t.seqShift = uint16(t.rx.max) + 1 - h.SequenceNumber
			t.tsShift = t.lastTS + ticks(now.Sub(t.lastAt), t.Codec.ClockRate) - h.Timestamp
			t.restarts.Add(1)
		}
		t.srcSSRC = h.SSRC
	}
	h.SequenceNumber += t.seqShift
	h.Timestamp += t.tsShift
	if int32(h.Timestamp-t.lastTS) > 0 || t.lastAt.IsZero() {
		t.lastTS, t.lastAt = h.Timestamp, now
	}
}

// seqWindow is how far back a packet is still told apart from a duplicate.
const seqWindow = 1024

// recordArrival updates the receive statistics with one packet, and the
// NACK tracker of streams that have one. It reports false for a duplicate
// (a retransmission of a packet that came after all) or a packet older
// than the window: the forwarder drops those.
func (t *InboundTrack) recordArrival(seq uint16, ts uint32, now time.Time) bool {
	r := &t.rx
	clock := int64(t.Codec.ClockRate)
	if !r.started {
		r.start = now
	}
	arrival := now.Sub(r.start).Nanoseconds() * clock / 1e9 // in timestamp units
	retransmitted := false
	if !r.started {
		r.started = true
		r.base, r.max = uint32(seq), uint32(seq)
		r.pubBase.Store(r.base)
		r.lastTransit = arrival - int64(ts)
		r.mark(r.max)
	} else {
		ext := r.max&^0xffff | uint32(seq)
		switch diff := int16(seq - uint16(r.max)); {
		case diff > 0 && uint16(r.max) > seq:
			ext += 1 << 16 // wrapped
		case diff < 0 && uint16(r.max) < seq:
			ext -= 1 << 16 // reordered across a wrap
		}
		switch d := int32(ext - r.max); {
		case d > 0:
			r.advance(ext)
			if d > 1 && t.nack != nil {
				t.nack.gap(r.max+1, ext-1, now)
			}
			r.max = ext
		case -d >= seqWindow || r.mark(ext):
			t.duplicates.Add(1)
			return false
		case t.nack != nil:
			retransmitted = t.nack.arrived(ext)
		}
	}
	r.received++
	if !retransmitted {
		// A retransmission's delay is the NACK's round trip, not the
		// network's jitter.
		transit := arrival - int64(ts)
		d := transit - r.lastTransit
		r.lastTransit = transit
		if d < 0 {
			d = -d
		}
		r.jitter += (float64(d) - r.jitter) / 16
	}
	r.pubMaxRecv.Store(uint64(r.max)<<32 | uint64(r.received))
	r.pubJitter.Store(uint32(r.jitter))
	return true
}

// published reads what recordArrival published: the first and highest
// (extended) sequence numbers, the packets received, and the jitter in
// timestamp units.
func (r *receiveStats) published() (base, highest, received, jitter uint32) {
	mr := r.pubMaxRecv.Load()
	return r.pubBase.Load(), uint32(mr >> 32), uint32(mr), r.pubJitter.Load()
}

// lost is the cumulative loss as RFC 3550 counts it: expected minus
// received (negative with duplicates, which the forwarder drops).
func (t *InboundTrack) lost() int64 {
	base, highest, received, _ := t.rx.published()
	if received == 0 {
		return 0
	}
	return int64(highest-base+1) - int64(received)
}

// jitter is the interarrival jitter estimate.
func (t *InboundTrack) jitter() time.Duration {
	_, _, _, j := t.rx.published()
	if t.Codec.ClockRate == 0 {
		return 0
	}
	return time.Duration(uint64(j) * uint64(time.Second) / uint64(t.Codec.ClockRate))
}

// mark records that ext came and reports whether it had come before.
func (r *receiveStats) mark(ext uint32) bool {
	word, bit := ext/64%(seqWindow/64), uint64(1)<<(ext%64)
	had := r.seen[word]&bit != 0
	r.seen[word] |= bit
	return had
}

// advance moves the window to a new highest sequence number: the numbers
// skipped have not come yet.
func (r *receiveStats) advance(ext uint32) {
	if ext-r.max >= seqWindow {
		r.seen = [seqWindow / 64]uint64{}
	} else {
		for s := r.max + 1; s != ext; s++ {
			r.seen[s/64%(seqWindow/64)] &^= 1 << (s % 64)
		}
	}
	r.mark(ext)
}

// Read reads one RTP packet into b.
func (t *InboundTrack) Read(b []byte) (int, error) { return t.read(b) }

// RequestKeyframe asks the track's sender for a keyframe (a PLI on the
// network); it does nothing for audio or senders that cannot.
func (t *InboundTrack) RequestKeyframe() {
	if t.keyframe != nil && t.Kind == webrtc.RTPCodecTypeVideo {
		t.keyframe()
	}
}

// OutboundTrack is media a leg sends. It is a pion TrackLocal bound to one
// sender; WriteRTP rewrites each packet for that sender (SSRC, payload type)
// and keeps the sequence numbers and timestamps continuous whichever source
// feeds it.
type OutboundTrack struct {
	id, streamID string
	codec        webrtc.RTPCodecCapability

	mu     sync.Mutex // one writer at a time; guards the binding and munger
	writer webrtc.TrackLocalWriter
	ssrc   uint32
	pt     uint8
	dtmfPT uint8
	munger munger
	header rtp.Header // scratch, to rewrite without allocating

	// pushTo is set on an echo's track: what is forwarded to it goes
	// straight to the echo's inbound track, with the arrival time it came
	// with (writer still says whether the track takes packets).
	pushTo *pushed

	onKeyframeRequest atomic.Pointer[func()]
	packets, bytes    atomic.Uint64
	remote            remoteReport // what the receiver's reports say
}

// ssrcNow is the SSRC the track sends with, 0 before it is bound.
func (o *OutboundTrack) ssrcNow() uint32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ssrc
}

var _ webrtc.TrackLocal = (*OutboundTrack)(nil)

// errNotBound is returned by writes before the track is negotiated; a
// forwarder drops the packet.
var errNotBound = errors.New("outbound track not negotiated yet")

// NewOutboundTrack makes a track sending the given format.
func NewOutboundTrack(codec webrtc.RTPCodecCapability, id, streamID string) *OutboundTrack {
	return &OutboundTrack{id: id, streamID: streamID, codec: codec}
}

// Bind implements webrtc.TrackLocal: it picks the negotiated payload type of
// the track's format (and of telephone-event at its clock rate).
func (o *OutboundTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var found *webrtc.RTPCodecParameters
	var dtmf uint8
	for _, c := range ctx.CodecParameters() {
		switch {
		case found == nil && sameFormat(c.RTPCodecCapability, o.codec):
			found = &c
		case strings.EqualFold(c.MimeType, MimeTypeTelephoneEvent) && c.ClockRate == o.codec.ClockRate:
			dtmf = uint8(c.PayloadType)
		}
	}
	if found == nil {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	o.writer = ctx.WriteStream()
	o.ssrc = uint32(ctx.SSRC())
	o.pt = uint8(found.PayloadType)
	o.dtmfPT = dtmf
	return *found, nil
}

// Unbind implements webrtc.TrackLocal.
func (o *OutboundTrack) Unbind(webrtc.TrackLocalContext) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.writer = nil
	return nil
}

// ID implements webrtc.TrackLocal.
func (o *OutboundTrack) ID() string { return o.id }

// RID implements webrtc.TrackLocal.
func (o *OutboundTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal.
func (o *OutboundTrack) StreamID() string { return o.streamID }

// Kind implements webrtc.TrackLocal.
func (o *OutboundTrack) Kind() webrtc.RTPCodecType {
	if strings.HasPrefix(strings.ToLower(o.codec.MimeType), "video/") {
		return webrtc.RTPCodecTypeVideo
	}
	return webrtc.RTPCodecTypeAudio
}

// Codec is the format the track sends.
func (o *OutboundTrack) Codec() webrtc.RTPCodecCapability { return o.codec }

// OnKeyframeRequest sets what to do when the receiver asks for a keyframe
// (PLI or FIR); the forwarder points it at the current source.
func (o *OutboundTrack) OnKeyframeRequest(fn func()) { o.onKeyframeRequest.Store(&fn) }

func (o *OutboundTrack) keyframeRequested() {
	if fn := o.onKeyframeRequest.Load(); fn != nil {
		(*fn)()
	}
}

// forward writes a packet from src, rewritten for this track's sender.
// Telephone events are sent with this sender's telephone-event payload type,
// or dropped if it negotiated none.
func (o *OutboundTrack) forward(src *InboundTrack, h *rtp.Header, payload []byte, now time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.writer == nil {
		return errNotBound
	}
	pt := o.pt
	if src.DTMFPayloadType != 0 && h.PayloadType == src.DTMFPayloadType {
		if o.dtmfPT == 0 {
			return nil
		}
		pt = o.dtmfPT
	}
	out := &o.header
	*out = *h
	out.SSRC = o.ssrc
	out.PayloadType = pt
	out.SequenceNumber, out.Timestamp = o.munger.apply(src, h.SequenceNumber, h.Timestamp, now, o.codec.ClockRate)
	if o.pushTo != nil {
		o.pushTo.deliver(out, payload, now)
	} else if _, err := o.writer.WriteRTP(out, payload); err != nil {
		return err
	}
	o.packets.Add(1)
	o.bytes.Add(uint64(len(payload)))
	return nil
}

// inject writes a packet that comes from no source (a telephone event):
// it takes the next sequence number, shifting the current source's packets
// by one to make room, and the given timestamp. dtmf selects the
// telephone-event payload type.
func (o *OutboundTrack) inject(payload []byte, marker, dtmf bool, ts uint32) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.writer == nil {
		return errNotBound
	}
	pt := o.pt
	if dtmf {
		if o.dtmfPT == 0 {
			return ErrNoDTMF
		}
		pt = o.dtmfPT
	}
	o.header = rtp.Header{Version: 2, Marker: marker, PayloadType: pt, SequenceNumber: o.munger.nextSeq(), Timestamp: ts, SSRC: o.ssrc}
	if _, err := o.writer.WriteRTP(&o.header, payload); err != nil {
		return err
	}
	o.packets.Add(1)
	o.bytes.Add(uint64(len(payload)))
	return nil
}

// timestampNow is the RTP timestamp the stream has reached now: the last
// packet's, advanced by the wall time since.
func (o *OutboundTrack) timestampNow(now time.Time) uint32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.munger.started {
		o.munger.start()
	}
	return o.munger.lastTS + ticks(now.Sub(o.munger.lastAt), o.codec.ClockRate) - 1
}

// munger maps each source's sequence numbers and timestamps onto one
// continuous outbound stream. Within a source, gaps and reordering are kept
// as they are (the receiver needs them for loss detection and NACK); when
// the source changes, the new one continues right after the last packet
// sent, its timestamps advanced by the wall time that passed.
type munger struct {
	src     *InboundTrack
	started bool
	seqOff  uint16
	tsOff   uint32
	lastSeq uint16
	lastTS  uint32
	lastAt  time.Time
}

func (m *munger) apply(src *InboundTrack, seq uint16, ts uint32, now time.Time, clockRate uint32) (uint16, uint32) {
	switch {
	case !m.started:
		m.started = true
		m.src = src
		m.seqOff = uint16(rand.Uint32()) - seq
		m.tsOff = rand.Uint32() - ts
		m.lastSeq = seq + m.seqOff - 1
		m.lastTS = ts + m.tsOff
		m.lastAt = now
	case src != m.src:
		m.src = src
		m.seqOff = m.lastSeq + 1 - seq
		m.tsOff = m.lastTS + ticks(now.Sub(m.lastAt), clockRate) - ts
	}
	outSeq, outTS := seq+m.seqOff, ts+m.tsOff
	if int16(outSeq-m.lastSeq) > 0 {
		m.lastSeq, m.lastTS, m.lastAt = outSeq, outTS, now
	}
	return outSeq, outTS
}

// start begins the outbound stream at random numbers (RFC 3550).
func (m *munger) start() {
	m.started = true
	m.lastSeq = uint16(rand.Uint32())
	m.lastTS = rand.Uint32()
	m.lastAt = time.Now()
}

// nextSeq allocates the sequence number of an injected packet; packets of
// the current source that follow are shifted by one to make room.
func (m *munger) nextSeq() uint16 {
	if !m.started {
		m.start()
	} else {
		m.lastSeq++
		m.seqOff++
	}
	return m.lastSeq
}

// ticks converts a duration to RTP clock ticks, at least one.
func ticks(d time.Duration, clockRate uint32) uint32 {
	t := uint32(d.Seconds() * float64(clockRate))
	if t == 0 {
		t = 1
	}
	return t
}
