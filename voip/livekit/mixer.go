package livekit

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/voipbot/voipbot/voip/media/opuscodec"
)

// The mixer gives a single-stream party everyone in the call at once:
// each participant's Opus is decoded, the voices are summed every 20 ms,
// and the sum is encoded once. It needs libopus (-tags opus); without it
// the leg carries the active speaker only (see Participant).

const (
	// mixFrame is the mixer's clock: one Opus frame.
	mixFrame = 20 * time.Millisecond
	// maxQueued frames wait per participant; beyond it the oldest go (a
	// burst after a stall is not worth the delay it adds).
	maxQueued = 5
	// concealFrames is how long a participant's lost or late packets are
	// concealed (libopus's PLC) before it counts as silent: DTX and
	// muting stop packets altogether.
	concealFrames = 5
	// mixBitrate is what the mixed voice is encoded at.
	mixBitrate = 48000
)

// mixer sums the accepted participants' audio.
type mixer struct {
	enc *opuscodec.Encoder
	out func(pkt []byte) // hands a mixed packet to the leg

	mu      sync.Mutex
	streams map[string]*mixStream // by identity
	accept  func(identity string) bool

	seq  uint16
	ts   uint32
	ssrc uint32
	sum  []int32
	pcm  []int16
	buf  []byte
	// decoded counts the frames decoded (for the CPU benchmark's
	// per-participant figure).
	decoded uint64
}

// mixStream is one participant's audio on its way into the mix.
type mixStream struct {
	dec     *opuscodec.Decoder
	queue   [][]byte // Opus payloads in arrival order
	pcm     []int16  // decoded, not yet mixed
	frame   []int16  // what one packet decodes into (up to 120 ms)
	missing int      // frames concealed in a row
}

func newMixer(out func([]byte), accept func(string) bool) (*mixer, error) {
	enc, err := opuscodec.NewEncoder(1, mixBitrate)
	if err != nil {
		return nil, err
	}
	return &mixer{
		enc: enc, out: out, accept: accept, streams: map[string]*mixStream{},
		seq: uint16(rand.Uint32()), ts: rand.Uint32(), ssrc: rand.Uint32(),
		sum: make([]int32, opuscodec.FrameSamples), pcm: make([]int16, opuscodec.FrameSamples),
		buf: make([]byte, 1500),
	}, nil
}

// push queues one packet's Opus payload from identity (a track reader's
// goroutine; the payload is copied).
func (x *mixer) push(identity string, payload []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.streams[identity]
	if s == nil {
		dec, err := opuscodec.NewDecoder(1)
		if err != nil {
			return
		}
		s = &mixStream{dec: dec, frame: make([]int16, opuscodec.FrameSamples*6)}
		x.streams[identity] = s
	}
	if len(s.queue) >= maxQueued {
		s.queue = s.queue[1:]
	}
	s.queue = append(s.queue, append([]byte(nil), payload...))
}

// drop forgets identity's stream (it left).
func (x *mixer) drop(identity string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if s := x.streams[identity]; s != nil {
		s.dec.Close()
		delete(x.streams, identity)
	}
}

// run mixes every 20 ms until done is closed.
func (x *mixer) run(done <-chan struct{}) {
	t := time.NewTicker(mixFrame)
	defer t.Stop()
	defer x.close()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			x.tick()
		}
	}
}

// tick makes one mixed frame: each accepted stream's next 20 ms (decoded,
// or concealed while its packets are late), summed and clipped. Nothing
// is sent while nobody speaks.
func (x *mixer) tick() {
	x.mu.Lock()
	clear(x.sum)
	voices := 0
	for identity, s := range x.streams {
		if x.accept != nil && !x.accept(identity) {
			s.queue, s.pcm = s.queue[:0], s.pcm[:0]
			continue
		}
		if !s.fill(&x.decoded) {
			continue
		}
		for i, v := range s.pcm[:opuscodec.FrameSamples] {
			x.sum[i] += int32(v)
		}
		s.pcm = s.pcm[opuscodec.FrameSamples:]
		voices++
	}
	x.mu.Unlock()
	x.ts += opuscodec.FrameSamples
	if voices == 0 {
		return
	}
	for i, v := range x.sum {
		x.pcm[i] = int16(max(-32768, min(32767, v)))
	}
	n, err := x.enc.Encode(x.pcm, x.buf[12:])
	if err != nil {
		return
	}
	x.seq++
	h := rtp.Header{Version: 2, PayloadType: uint8(opus.PayloadType), SequenceNumber: x.seq, Timestamp: x.ts, SSRC: x.ssrc}
	pkt := make([]byte, 12+n)
	if _, err = h.MarshalTo(pkt); err != nil {
		return
	}
	copy(pkt[12:], x.buf[12:12+n])
	x.out(pkt)
}

// fill makes sure a frame of decoded audio is ready: from the queue, else
// concealed for a while; false if the stream is silent.
func (s *mixStream) fill(decoded *uint64) bool {
	frame := s.frame
	for len(s.pcm) < opuscodec.FrameSamples {
		var n int
		var err error
		switch {
		case len(s.queue) > 0:
			n, err = s.dec.Decode(s.queue[0], frame[:])
			s.queue = s.queue[1:]
			s.missing = 0
			*decoded++
		case s.missing < concealFrames:
			n, err = s.dec.Decode(nil, frame[:opuscodec.FrameSamples])
			s.missing++
		default:
			s.pcm = s.pcm[:0]
			return false
		}
		if err != nil {
			continue // a packet libopus cannot read is skipped
		}
		s.pcm = append(s.pcm, frame[:n]...)
	}
	return true
}

func (x *mixer) close() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for id, s := range x.streams {
		s.dec.Close()
		delete(x.streams, id)
	}
	x.enc.Close()
}
