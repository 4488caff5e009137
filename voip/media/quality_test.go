package media

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/transport/v4/test"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/impair"
	"github.com/voipbot/voipbot/voip"
)

// impairedLinks are the networks the issue asks for: 5 % random loss and
// 30 ms jitter (delays of 40 ± 30 ms) on both hops of a bridged call and in
// both directions. "queue" keeps datagrams in order, as a router's queue,
// where jitter comes from, does; "netem" reorders them as netem's "loss 5%
// delay 40ms 30ms" does, which makes each burst of a video frame arrive
// shuffled: the worst case for NACK, which cannot tell a late packet from
// a lost one.
var impairedLinks = []struct {
	name string
	link impair.Link
}{
	{"queue", impair.Link{Loss: 0.05, Delay: 40 * time.Millisecond, Jitter: 30 * time.Millisecond}},
	{"netem", impair.Link{Loss: 0.05, Delay: 40 * time.Millisecond, Jitter: 30 * time.Millisecond, Reorder: true}},
}

// playoutDelay is how long the receiver model waits for a frame's missing
// packets (NACK retransmissions over two hops) before it gives the frame up.
const playoutDelay = 300 * time.Millisecond

// TestImpairedBridgedCall sends audio (Opus tone) and video (a webcam-shaped
// VP8 stream) from alice through a bridge to carol, both hops through a
// relay that loses 5 % and jitters 30 ms. Audio must keep flowing; video
// must recover: NACK repairs most losses per hop, keyframe requests end the
// freezes the rest cause.
func TestImpairedBridgedCall(t *testing.T) {
	for _, l := range impairedLinks {
		t.Run(l.name, func(t *testing.T) {
			t.Cleanup(test.CheckRoutines(t))
			rep := runImpairedCall(t, l.link, 300, 1)
			t.Log(rep)

			// Audio keeps flowing: what is lost is about what the two hops
			// lose (audio is not retransmitted), never a long gap.
			require.Greater(t, rep.audioReceived, rep.audioSent*3/4, "audio arrives")
			require.Less(t, rep.audioLoss, 2*rep.pathLoss+0.02, "audio loss is the network's, not the bridge's")
			require.LessOrEqual(t, rep.audioMaxGap, 6, "no audio gap longer than 120 ms")
			require.Positive(t, rep.audioJitter, "jitter is measured")

			// Video recovers: NACK repairs most lost packets, on each hop,
			// and keyframe requests end every freeze but maybe one still
			// running. (How many frames are shown in time depends on how
			// busy the machine is: reported, not asserted.)
			require.Positive(t, rep.requested[0], "the bridge asks alice for retransmissions")
			require.Positive(t, rep.requested[1], "carol asks the bridge for retransmissions")
			require.Less(t, rep.videoLoss, rep.pathLoss/2, "NACK repairs most of the video loss")
			require.Positive(t, rep.framesDecoded, "frames are shown")
			require.LessOrEqual(t, rep.freezes-rep.freezesEnded, 1, "freezes end")
			if rep.freezesEnded > 0 {
				require.Positive(t, rep.keyframes, "a keyframe ended them")
			}
		})
	}
}

// BenchmarkImpairedBridgedCall reports the same calls' quality numbers
// (make bench): 10 s of media per iteration and network.
func BenchmarkImpairedBridgedCall(b *testing.B) {
	for _, l := range impairedLinks {
		b.Run(l.name, func(b *testing.B) {
			var seed uint64
			for b.Loop() {
				seed++
				rep := runImpairedCall(b, l.link, 300, seed)
				b.ReportMetric(100*rep.pathLoss, "path-loss-%")
				b.ReportMetric(100*rep.audioLoss, "audio-loss-%")
				b.ReportMetric(float64(rep.audioJitter.Microseconds())/1000, "audio-jitter-ms")
				b.ReportMetric(100*rep.videoLoss, "video-loss-%")
				b.ReportMetric(100*rep.recovered(), "video-recovered-%")
				b.ReportMetric(float64(rep.videoJitter.Microseconds())/1000, "video-jitter-ms")
				b.ReportMetric(100*float64(rep.requested[0]+rep.requested[1])/float64(2*rep.videoSent), "nacked-%")
				b.ReportMetric(float64(rep.freezes), "freezes")
				b.ReportMetric(float64(rep.frozen.Milliseconds()), "frozen-ms")
				b.ReportMetric(100*float64(rep.framesDecoded)/float64(rep.framesTotal), "frames-shown-%")
			}
		})
	}
}

// qualityReport is what the receiving side saw.
type qualityReport struct {
	hopLoss  [2]float64 // measured drop rate of each hop towards carol
	pathLoss float64    // what the two hops lose together

	audioSent, audioReceived int
	audioLoss                float64 // packets never received at carol / expected
	audioMaxGap              int     // longest run of lost audio packets
	audioJitter              time.Duration

	videoSent, videoReceived int
	videoDuplicates          int     // packets that came more than once (retransmitted needlessly)
	videoLoss                float64 // packets never received at carol / expected
	videoJitter              time.Duration
	nacksFromCarol           uint32 // NACKs the bridge received from carol
	nacksToAlice             uint32 // NACKs the bridge sent to alice
	plisFromCarol            uint32
	requested, duplicates    [2]uint64 // per hop: packets asked for again, and those that came twice

	framesTotal, framesDecoded int
	keyframes                  int
	freezes, freezesEnded      int
	frozen, longestFreeze      time.Duration
}

// recovered is the share of the video the network lost that retransmission
// brought back.
func (r qualityReport) recovered() float64 {
	if r.pathLoss == 0 {
		return 1
	}
	return 1 - r.videoLoss/r.pathLoss
}

func (r qualityReport) String() string {
	return fmt.Sprintf("hops lose %.1f %% and %.1f %% (path %.1f %%)\n"+
		"audio: %d sent, %d received, loss %.1f %%, longest gap %d packets, jitter %s\n"+
		"video: %d packets sent, %d received (%d twice), residual loss %.2f %% (%.0f %% of the path's loss recovered), jitter %s\n"+
		"       NACKs carol->bridge %d, bridge->alice %d; packets asked for %d and %d, came twice %d and %d; PLIs carol->bridge %d\n"+
		"frames: %d, shown %d (%.1f %%), keyframes %d; freezes %d (ended %d), frozen %s in all, longest %s",
		100*r.hopLoss[0], 100*r.hopLoss[1], 100*r.pathLoss,
		r.audioSent, r.audioReceived, 100*r.audioLoss, r.audioMaxGap, r.audioJitter.Round(10*time.Microsecond),
		r.videoSent, r.videoReceived, r.videoDuplicates, 100*r.videoLoss, 100*r.recovered(), r.videoJitter.Round(10*time.Microsecond),
		r.nacksFromCarol, r.nacksToAlice, r.requested[0], r.requested[1], r.duplicates[0], r.duplicates[1], r.plisFromCarol,
		r.framesTotal, r.framesDecoded, 100*float64(r.framesDecoded)/float64(max(r.framesTotal, 1)), r.keyframes,
		r.freezes, r.freezesEnded, r.frozen.Round(time.Millisecond), r.longestFreeze.Round(time.Millisecond))
}

// runImpairedCall runs alice -> relay -> bridge -> relay -> carol until
// carol has played (or given up) frames video frames.
func runImpairedCall(t testing.TB, link impair.Link, frames int, seed uint64) qualityReport {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	engine, err := voip.NewEngine(voip.Config{
		Interfaces: []string{"lo"}, IncludeLoopback: true,
		ICEDisconnected: 5 * time.Second, ICEFailed: 30 * time.Second, ICEKeepalive: time.Second,
		RecordDir: t.TempDir(),
	}, zerolog.Nop())
	require.NoError(t, err)
	defer func() { require.NoError(t, engine.Close()) }()

	// Legs close first: a forwarder's Close waits for its legs' tracks to end.
	var legs, bridges, relays []func() error
	defer func() {
		for _, close := range append(append(legs, bridges...), relays...) {
			require.NoError(t, close())
		}
	}()
	session := func(id string) (*voip.Session, *callHandler) {
		h := &callHandler{connected: make(chan struct{})}
		s, err := engine.NewSession(id, h, voip.SessionOptions{Interceptors: voip.Interceptors{PionStats: true}})
		require.NoError(t, err)
		legs = append(legs, s.Close)
		return s, h
	}
	relay := func(s uint64) *impair.Relay {
		r, err := impair.NewRelay(link, link, s)
		require.NoError(t, err)
		relays = append(relays, r.Close)
		return r
	}
	bridge := func(id string, legs ...voip.Leg) *voip.Forwarder {
		b := voip.NewForwarder(id, zerolog.Nop(), voip.OnError(func(err error) { t.Errorf("bridge %s: %v", id, err) }))
		bridges = append(bridges, b.Close)
		for _, l := range legs {
			require.NoError(t, b.Add(l))
		}
		return b
	}

	// alice: a tone and a camera, sent on her session.
	tone, err := Tone("alice-tone", voip.AudioCodecs[0], 440)
	require.NoError(t, err)
	legs = append(legs, tone.Close)
	camera := syntheticCamera("alice-camera")
	legs = append(legs, camera.Close)
	alice, aliceH := session("alice")
	for _, c := range []voip.Codec{voip.AudioCodecs[0], voip.VideoCodecs[0]} {
		require.NoError(t, alice.AddOutbound(ctx, voip.NewOutboundTrack(c.RTPCodecCapability, "alice-"+c.MimeType, "alice")))
	}

	// The bridge: alice's call comes in on one leg, carol's goes out on the other.
	in, inH := session("bridge-in")
	out, outH := session("bridge-out")
	for _, c := range []voip.Codec{voip.AudioCodecs[0], voip.VideoCodecs[0]} {
		require.NoError(t, out.AddOutbound(ctx, voip.NewOutboundTrack(c.RTPCodecCapability, "out-"+c.MimeType, "bridge")))
	}
	carol, carolH := session("carol")
	rx := newQualityTap(frames)

	hop1, hop2 := relay(seed), relay(seed+1000)
	connectVia(t, ctx, alice, in, hop1)
	connectVia(t, ctx, out, carol, hop2)
	for _, h := range []*callHandler{aliceH, inH, outH, carolH} {
		select {
		case <-h.connected:
		case <-ctx.Done():
			t.Fatal("the sessions did not connect")
		}
	}
	bridge("alice", tone, camera, alice)
	bridge("server", in, out)
	carolTone, err := Tone("carol-tone", voip.AudioCodecs[0], 330)
	require.NoError(t, err)
	legs = append(legs, carolTone.Close)
	bridge("carol", carolTone, carol).Tap(carol, rx)

	select {
	case <-rx.finished:
	case <-ctx.Done():
		t.Fatalf("carol played %d of %d frames", rx.report().framesTotal, frames)
	}

	rep := rx.report()
	for i, hop := range []impair.Counts{hop1.AToB(), hop2.AToB()} {
		rep.hopLoss[i] = float64(hop.Dropped) / float64(hop.Dropped+hop.Forwarded)
	}
	rep.pathLoss = 1 - (1-rep.hopLoss[0])*(1-rep.hopLoss[1])
	for _, st := range tone.Stats().Inbound {
		rep.audioSent = int(st.Packets)
	}
	for _, st := range camera.Stats().Inbound {
		rep.videoSent = int(st.Packets)
	}
	for _, st := range carol.Stats().Inbound {
		switch st.Kind {
		case webrtc.RTPCodecTypeAudio:
			rep.audioJitter = st.Jitter
		case webrtc.RTPCodecTypeVideo:
			rep.videoJitter = st.Jitter
		}
	}
	for _, st := range out.Stats().Outbound {
		if st.Kind == webrtc.RTPCodecTypeVideo {
			rep.nacksFromCarol, rep.plisFromCarol = st.NACKs, st.PLIs
		}
	}
	for _, st := range in.Stats().Inbound {
		if st.Kind == webrtc.RTPCodecTypeVideo {
			rep.nacksToAlice = st.NACKs
			rep.requested[0], rep.duplicates[0] = st.Requested, st.Duplicates
		}
	}
	for _, st := range carol.Stats().Inbound {
		if st.Kind == webrtc.RTPCodecTypeVideo {
			rep.requested[1], rep.duplicates[1] = st.Requested, st.Duplicates
		}
	}
	return rep
}

// callHandler notices when a session connects.
type callHandler struct {
	voip.UnimplementedHandler
	connected chan struct{}
	once      sync.Once
}

func (h *callHandler) OnConnectionState(s webrtc.PeerConnectionState) {
	if s == webrtc.PeerConnectionStateConnected {
		h.once.Do(func() { close(h.connected) })
	}
}

// connectVia runs offer/answer between two sessions with each told only
// the relay's address as the other's candidate, so that all their traffic
// crosses it. The answerer sends what it was offered.
func connectVia(t testing.TB, ctx context.Context, offerer, answerer *voip.Session, r *impair.Relay) {
	t.Helper()
	offer, err := offerer.CreateOffer(ctx, voip.OfferOptions{GatherWait: 5 * time.Second})
	require.NoError(t, err)
	offer.SDP = impair.OnlyCandidate(offer.SDP, r.AddrForB())
	require.NoError(t, answerer.SetRemoteDescription(ctx, offer))
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if c := answerer.NegotiatedCodecs(kind); len(c) > 0 && answerer.Outbound(kind) == nil {
			require.NoError(t, answerer.AddOutbound(ctx, voip.NewOutboundTrack(c[0].RTPCodecCapability, answerer.ID()+"-"+kind.String(), answerer.ID())))
		}
	}
	answer, err := answerer.CreateAnswer(ctx, 5*time.Second)
	require.NoError(t, err)
	answer.SDP = impair.OnlyCandidate(answer.SDP, r.AddrForA())
	require.NoError(t, offerer.SetRemoteDescription(ctx, answer))
}

// syntheticCamera is VP8 shaped like a webcam's without an encoder: 30
// frames a second of 4 KB (four packets), 12 KB keyframes, a keyframe only
// at the start and when a receiver asks for one, as WebRTC encoders do. Only
// the first byte's keyframe bit means anything; nobody decodes it.
func syntheticCamera(id string) *voip.SourceLeg {
	stream := voip.NewPacketized(webrtc.RTPCodecTypeVideo, voip.VideoCodecs[0], id+"-vp8", id)
	payloader := &codecs.VP8Payloader{EnablePictureID: true}
	frame := make([]byte, 12000)
	return play(id, stream, nil, func(done <-chan struct{}) error {
		p := newPacer()
		key := true
		var step uint32
		for p.wait(time.Second/30, done) {
			select {
			case <-stream.KeyframeRequests():
				key = true
			default:
			}
			size := 4000
			frame[0] = 1 // VP8 frame tag: P (inter frame)
			if key {
				size, frame[0] = len(frame), 0
			}
			pkts := payloader.Payload(mtu, frame[:size])
			for i, pl := range pkts {
				if stream.Write(pl, i == len(pkts)-1, step) != nil {
					return nil
				}
				step = 0
			}
			key, step = false, 90000/30
		}
		return nil
	})
}

// qualityTap is carol's player, modelled: audio packets are counted; video
// packets are assembled into frames, a frame is shown when it is complete
// and its predecessor was shown (or it is a keyframe), and given up
// playoutDelay after its first packet arrived. A frame given up freezes the
// picture until a keyframe is shown, and asks for one.
type qualityTap struct {
	mu     sync.Mutex
	target int
	done   bool
	// finished is closed once target frames were shown or given up.
	finished chan struct{}

	audioSeq  unwrapper
	audioSeen map[int64]bool

	videoSeq, videoTS unwrapper
	videoSeen         map[int64]bool
	pending           map[int64]*rxFrame // by unwrapped timestamp
	shownSeq          int64              // last sequence number of the last frame shown
	shownAny          bool
	lastTS            int64 // timestamp of the last frame shown or given up
	frozen            bool
	freezeStart       time.Time

	rep qualityReport
}

type rxFrame struct {
	first, last int64 // sequence numbers of its first and last packet, -1 until seen
	packets     int
	key         bool
	arrived     time.Time
}

func newQualityTap(target int) *qualityTap {
	return &qualityTap{
		target: target, finished: make(chan struct{}),
		audioSeen: map[int64]bool{}, videoSeen: map[int64]bool{}, pending: map[int64]*rxFrame{},
		lastTS: -1 << 62,
	}
}

// unwrapper extends 16- or 32-bit RTP counters.
type unwrapper struct {
	started bool
	max     int64
}

func (u *unwrapper) extend(v uint32, bits uint) int64 {
	if !u.started {
		u.started, u.max = true, int64(v)
		return u.max
	}
	mod := int64(1) << bits
	d := (int64(v) - u.max) % mod
	if d >= mod/2 {
		d -= mod
	} else if d < -mod/2 {
		d += mod
	}
	x := u.max + d
	u.max = max(u.max, x)
	return x
}

// Packet implements voip.Tap.
func (q *qualityTap) Packet(t *voip.InboundTrack, h *rtp.Header, payload []byte) {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if t.Kind == webrtc.RTPCodecTypeAudio {
		q.audio(h)
		return
	}
	seq := q.videoSeq.extend(uint32(h.SequenceNumber), 16)
	ts := q.videoTS.extend(h.Timestamp, 32)
	if q.videoSeen[seq] {
		q.rep.videoDuplicates++ // a retransmission of what already came
		return
	}
	q.videoSeen[seq] = true
	q.rep.videoReceived++
	if ts > q.lastTS {
		f := q.pending[ts]
		if f == nil {
			f = &rxFrame{first: -1, last: -1, arrived: now}
			q.pending[ts] = f
		}
		f.packets++
		var vp8 codecs.VP8Packet
		if _, err := vp8.Unmarshal(payload); err == nil && vp8.S == 1 && vp8.PID == 0 {
			f.first = seq
			f.key = len(vp8.Payload) > 0 && vp8.Payload[0]&1 == 0
		}
		if h.Marker {
			f.last = seq
		}
	}
	q.play(t, now)
}

func (q *qualityTap) audio(h *rtp.Header) {
	seq := q.audioSeq.extend(uint32(h.SequenceNumber), 16)
	if q.audioSeen[seq] {
		return
	}
	q.audioSeen[seq] = true
	q.rep.audioReceived++
}

// play shows or gives up the frames that are due, oldest first.
func (q *qualityTap) play(t *voip.InboundTrack, now time.Time) {
	for len(q.pending) > 0 {
		ts := int64(1) << 62
		for k := range q.pending {
			ts = min(ts, k)
		}
		f := q.pending[ts]
		complete := f.first >= 0 && f.last >= f.first && f.packets == int(f.last-f.first+1)
		follows := !q.shownAny || f.first == q.shownSeq+1
		switch {
		case complete && (f.key || (follows && !q.frozen)):
			q.show(f, now)
		case complete && q.frozen:
			q.giveUp(t, now) // a frame we cannot decode without a keyframe
		case now.Sub(f.arrived) >= playoutDelay:
			q.giveUp(t, now)
		default:
			return // wait for the rest of it
		}
		delete(q.pending, ts)
		q.lastTS = ts
		q.rep.framesTotal++
		if q.rep.framesTotal >= q.target && !q.done {
			q.done = true
			close(q.finished)
		}
	}
}

func (q *qualityTap) show(f *rxFrame, now time.Time) {
	q.rep.framesDecoded++
	if f.key {
		q.rep.keyframes++
	}
	if q.frozen {
		q.frozen = false
		d := now.Sub(q.freezeStart)
		q.rep.freezesEnded++
		q.rep.frozen += d
		q.rep.longestFreeze = max(q.rep.longestFreeze, d)
	}
	q.shownAny, q.shownSeq = true, f.last
}

func (q *qualityTap) giveUp(t *voip.InboundTrack, now time.Time) {
	if !q.frozen && q.shownAny {
		q.frozen, q.freezeStart = true, now
		q.rep.freezes++
	}
	t.RequestKeyframe() // repeated while frozen; the session rate-limits it
}

func (q *qualityTap) report() qualityReport {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.rep
	r.audioLoss, r.audioMaxGap = lossAndGap(q.audioSeen)
	r.videoLoss, _ = lossAndGap(q.videoSeen)
	if q.frozen {
		r.frozen += time.Since(q.freezeStart)
	}
	return r
}

// lossAndGap is the share of the sequence numbers between the first and
// the last seen that never came, and the longest run of them.
func lossAndGap(seen map[int64]bool) (float64, int) {
	if len(seen) == 0 {
		return 0, 0
	}
	seqs := slices.Sorted(maps.Keys(seen))
	gap := 0
	for i := 1; i < len(seqs); i++ {
		gap = max(gap, int(seqs[i]-seqs[i-1]-1))
	}
	expected := seqs[len(seqs)-1] - seqs[0] + 1
	return float64(expected-int64(len(seqs))) / float64(expected), gap
}

// Close implements voip.Tap.
func (q *qualityTap) Close() error { return nil }
