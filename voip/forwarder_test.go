package voip

import (
	"errors"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

var (
	opus = AudioCodecs[0].RTPCodecCapability
	pcmu = AudioCodecs[1].RTPCodecCapability
	vp8  = VideoCodecs[0].RTPCodecCapability
)

// call is a client connected to a forwarder leg.
type call struct {
	client, leg *peer
}

func dial(t *testing.T, e *Engine, name string, clientOpts, legOpts SessionOptions, sends ...webrtc.RTPCodecCapability) *call {
	t.Helper()
	c := &call{
		client: newPeer(t, e, name+"-client", clientOpts, sends...),
		leg:    newPeer(t, e, name, legOpts),
	}
	connect(t, c.client, c.leg)
	return c
}

func (c *call) close(t *testing.T) {
	c.client.close(t)
	c.leg.close(t)
}

func audioOnly() SessionOptions { return SessionOptions{Video: []Codec{}} }

func TestForwarderForwardsBothWaysRewritingForEachLeg(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := dial(t, e, "a", audioOnly(), audioOnly(), opus)
	b := dial(t, e, "b", audioOnly(), audioOnly(), opus)
	fw := NewForwarder("ab", zerolog.Nop())
	require.NoError(t, fw.Add(a.leg.s))
	require.NoError(t, fw.Add(b.leg.s))

	send(t, a.client.out[webrtc.RTPCodecTypeAudio], 0, 50, 960)
	got := readN(t, waitTrack(t, b.client), 50)
	bOut := b.leg.out[webrtc.RTPCodecTypeAudio]
	for i, r := range got {
		require.Equal(t, byte(i), r.payload[0], "payloads arrive unchanged and in order")
		require.Equal(t, bOut.ssrc, r.h.SSRC, "SSRC of the receiving leg's sender")
		require.Equal(t, bOut.pt, r.h.PayloadType)
		if i > 0 {
			require.Equal(t, got[i-1].h.SequenceNumber+1, r.h.SequenceNumber)
			require.Equal(t, got[i-1].h.Timestamp+960, r.h.Timestamp)
		}
	}

	send(t, b.client.out[webrtc.RTPCodecTypeAudio], 0, 20, 960)
	back := readN(t, waitTrack(t, a.client), 20)
	require.Equal(t, byte(19), back[19].payload[0], "and the other way")

	st := b.leg.s.Stats()
	require.Len(t, st.Outbound, 1)
	require.EqualValues(t, 50, st.Outbound[0].Packets)
	require.EqualValues(t, 20, st.Inbound[0].Packets)

	a.close(t)
	b.close(t)
	require.NoError(t, fw.Close())
}

// TestSourceSwitchKeepsStreamContinuous: when the leg a receiver hears is
// switched, and when that leg is replaced, the receiver's sequence numbers
// and timestamps go on without a jump.
func TestSourceSwitchKeepsStreamContinuous(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := dial(t, e, "a", audioOnly(), audioOnly(), opus)
	c := dial(t, e, "c", audioOnly(), audioOnly(), opus)
	b := dial(t, e, "b", audioOnly(), audioOnly(), opus)
	fw := NewForwarder("abc", zerolog.Nop())
	for _, l := range []*call{a, c, b} {
		require.NoError(t, fw.Add(l.leg.s))
	}

	send(t, a.client.out[webrtc.RTPCodecTypeAudio], 0, 10, 960)
	bTrack := waitTrack(t, b.client)
	first := readN(t, bTrack, 10)
	require.Equal(t, byte(9), first[9].payload[0], "b hears a, the first leg")

	// c starts talking (its own numbering is unrelated to a's), and is
	// selected. c's first packet may reach the forwarder before or after the
	// switch: b gets c's packets from the switch on, continuing a's numbers.
	send(t, c.client.out[webrtc.RTPCodecTypeAudio], 100, 1, 480)
	cTrack := waitTrackOn(t, c.leg.s)
	require.NoError(t, fw.Select(cTrack))
	send(t, c.client.out[webrtc.RTPCodecTypeAudio], 101, 10, 480)
	var switched []received
	for len(switched) == 0 || switched[len(switched)-1].payload[0] != 110 {
		switched = append(switched, readN(t, bTrack, 1)...)
	}
	require.GreaterOrEqual(t, switched[0].payload[0], byte(100), "b hears only c after the switch")
	require.Equal(t, first[9].h.SequenceNumber+1, switched[0].h.SequenceNumber, "sequence continues across the switch")
	require.Greater(t, int32(switched[0].h.Timestamp-first[9].h.Timestamp), int32(0), "timestamps go forward")
	require.Equal(t, first[9].h.SSRC, switched[0].h.SSRC)
	for i := 1; i < len(switched); i++ {
		require.Equal(t, switched[i-1].h.SequenceNumber+1, switched[i].h.SequenceNumber)
		require.Equal(t, switched[i-1].h.Timestamp+480, switched[i].h.Timestamp)
	}

	// c's leg is replaced by a new leg d: b's stream continues again.
	fw.Remove(c.leg.s)
	c.close(t)
	d := dial(t, e, "d", audioOnly(), audioOnly(), opus)
	require.NoError(t, fw.Add(d.leg.s))
	fw.Remove(a.leg.s) // only d is left to hear
	send(t, d.client.out[webrtc.RTPCodecTypeAudio], 200, 5, 960)
	replaced := readN(t, bTrack, 5)
	require.Equal(t, byte(200), replaced[0].payload[0])
	require.Equal(t, switched[len(switched)-1].h.SequenceNumber+1, replaced[0].h.SequenceNumber)

	for _, l := range []*call{a, b, d} {
		l.close(t)
	}
	require.NoError(t, fw.Close())
}

// waitTrackOn returns the forwarder's inbound track from a leg once it exists.
func waitTrackOn(t *testing.T, leg Leg) *InboundTrack {
	t.Helper()
	got := make(chan *InboundTrack, 1)
	leg.OnInbound(func(tr *InboundTrack) {
		select {
		case got <- tr:
		default:
		}
	})
	select {
	case tr := <-got:
		return tr
	case <-time.After(15 * time.Second):
		t.Fatal("no inbound track")
		return nil
	}
}

func TestMuteStopsForwardingIntoALegOnly(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := dial(t, e, "a", audioOnly(), audioOnly(), opus)
	b := dial(t, e, "b", audioOnly(), audioOnly(), opus)
	fw := NewForwarder("ab", zerolog.Nop())
	require.NoError(t, fw.Add(a.leg.s))
	require.NoError(t, fw.Add(b.leg.s))

	send(t, a.client.out[webrtc.RTPCodecTypeAudio], 0, 5, 960)
	bTrack := waitTrack(t, b.client)
	readN(t, bTrack, 5)

	fw.SetReceiving(b.leg.s, false)
	seen := &seenTap{ch: make(chan byte, 100)}
	fw.Tap(a.leg.s, seen)
	send(t, a.client.out[webrtc.RTPCodecTypeAudio], 5, 20, 960)
	seen.waitFor(t, 24) // the forwarder has handled everything sent while muted
	// b, on hold, still sends: a hears it while b hears nothing.
	send(t, b.client.out[webrtc.RTPCodecTypeAudio], 0, 3, 960)
	readN(t, waitTrack(t, a.client), 3)
	fw.SetReceiving(b.leg.s, true)
	send(t, a.client.out[webrtc.RTPCodecTypeAudio], 25, 3, 960)
	resumed := readN(t, bTrack, 3)
	require.Equal(t, byte(25), resumed[0].payload[0], "nothing sent while muted reached b")

	a.close(t)
	b.close(t)
	require.NoError(t, fw.Close())
}

// TestKeyframeRequestCrossesTheForwarder: a PLI from the receiving client
// reaches the sending client as a PLI for its own stream.
func TestKeyframeRequestCrossesTheForwarder(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	videoOnly := SessionOptions{Audio: []Codec{AudioCodecs[0]}}
	a := dial(t, e, "a", videoOnly, videoOnly, vp8)
	b := dial(t, e, "b", videoOnly, videoOnly, vp8)
	plis := make(chan struct{}, 10)
	a.client.out[webrtc.RTPCodecTypeVideo].OnKeyframeRequest(func() { plis <- struct{}{} })
	a.leg.s.pliInterval = 0 // every request is passed on; the rate limit is tested on its own
	fw := NewForwarder("ab", zerolog.Nop())
	require.NoError(t, fw.Add(a.leg.s))
	require.NoError(t, fw.Add(b.leg.s))
	send(t, a.client.out[webrtc.RTPCodecTypeVideo], 0, 3, 3000)
	bTrack := waitTrack(t, b.client)
	readN(t, bTrack, 3)
	waitPLI := func(what string) {
		t.Helper()
		select {
		case <-plis:
		case <-time.After(10 * time.Second):
			t.Fatal(what)
		}
	}
	waitPLI("the forwarder did not ask for a keyframe when b started watching")

	require.NoError(t, b.client.s.PeerConnection().WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: bTrack.ssrc}}))
	waitPLI("b's keyframe request did not reach the sender")
	a.close(t)
	b.close(t)
	require.NoError(t, fw.Close())
}

// TestNoCommonCodecFailsLoudly: a leg that negotiated only PCMU cannot take
// Opus; the forwarder says so instead of sending garbage.
func TestNoCommonCodecFailsLoudly(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := dial(t, e, "a", audioOnly(), audioOnly(), opus)
	pcmuOnly := SessionOptions{Audio: []Codec{AudioCodecs[1]}, Video: []Codec{}}
	b := dial(t, e, "b", pcmuOnly, audioOnly(), pcmu)
	errs := make(chan error, 10)
	fw := NewForwarder("ab", zerolog.Nop(), OnError(func(err error) { errs <- err }))
	require.NoError(t, fw.Add(a.leg.s))
	require.NoError(t, fw.Add(b.leg.s))
	send(t, a.client.out[webrtc.RTPCodecTypeAudio], 0, 1, 960)
	var err error
	select {
	case err = <-errs:
	case <-time.After(10 * time.Second):
		t.Fatal("the forwarder did not report the codec mismatch")
	}
	var nc *NoCommonCodecError
	require.True(t, errors.As(err, &nc))
	require.Contains(t, err.Error(), "no common audio codec: the source sends opus/48000/2")
	require.Contains(t, err.Error(), "leg b takes only PCMU/8000")

	_, err = ChooseCodec(webrtc.RTPCodecTypeAudio, []webrtc.RTPCodecCapability{opus}, "b", []webrtc.RTPCodecCapability{pcmu, AudioCodecs[2].RTPCodecCapability})
	require.ErrorAs(t, err, &nc)
	chosen, err := ChooseCodec(webrtc.RTPCodecTypeAudio, []webrtc.RTPCodecCapability{opus, pcmu}, "b", []webrtc.RTPCodecCapability{pcmu})
	require.NoError(t, err)
	require.Equal(t, pcmu.MimeType, chosen.MimeType)
	a.close(t)
	b.close(t)
	require.NoError(t, fw.Close())
}

// TestEchoLegSendsAPeerItsOwnMedia: an echo leg beside a session sends the
// session's client its own audio back, telephone events too, in order and
// as one continuous stream of the session's sender.
func TestEchoLegSendsAPeerItsOwnMedia(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := dial(t, e, "a", audioOnly(), audioOnly(), opus)
	echo := NewEchoLeg("a-echo", a.leg.s)
	require.NotNil(t, echo.Outbound(webrtc.RTPCodecTypeAudio))
	require.Nil(t, echo.Outbound(webrtc.RTPCodecTypeVideo), "the session receives no video: none is echoed")
	fw := NewForwarder("echo", zerolog.Nop(), OnError(func(err error) { t.Error(err) }))
	require.NoError(t, fw.Add(a.leg.s))
	require.NoError(t, fw.Add(echo))
	send(t, a.client.out[webrtc.RTPCodecTypeAudio], 0, 10, 960)
	track := waitTrack(t, a.client)
	got := readN(t, track, 10)
	aOut := a.leg.out[webrtc.RTPCodecTypeAudio]
	for i, r := range got {
		require.Equal(t, byte(i), r.payload[0])
		require.Equal(t, aOut.ssrc, r.h.SSRC)
		require.Equal(t, aOut.pt, r.h.PayloadType)
		if i > 0 {
			require.Equal(t, got[i-1].h.SequenceNumber+1, r.h.SequenceNumber)
			require.Equal(t, got[i-1].h.Timestamp+960, r.h.Timestamp)
		}
	}

	require.NoError(t, SendDTMF(ctx(t), a.client.out[webrtc.RTPCodecTypeAudio], "5", DTMFOptions{Duration: 40 * time.Millisecond}))
	require.NotZero(t, track.DTMFPayloadType)
	tones := make(chan DTMF, 1)
	detector := NewDTMFDetector(func(d DTMF) { tones <- d })
	for len(tones) == 0 {
		r := readN(t, track, 1)[0]
		detector.Packet(track, &r.h, r.payload)
	}
	require.Equal(t, '5', (<-tones).Digit, "telephone events come back too")

	// Every packet the client sent (the DTMF end packet's two repeats too,
	// which may still be on their way when the tone is detected) reached the
	// session, went into the echo and came out again.
	var st LegStats
	require.NoError(t, waitUntil(10*time.Second, func() bool {
		st = echo.Stats()
		sent := a.client.s.Stats().Outbound[0].Packets
		return a.leg.s.Stats().Inbound[0].Packets == sent && st.Outbound[0].Packets == sent && st.Inbound[0].Packets == sent
	}), "echo stats %+v", st)
	require.Len(t, st.Inbound, 1)
	require.Greater(t, st.Inbound[0].Packets, uint64(10))

	// Out of the forwarder, the echo is given nothing more.
	fw.Remove(echo)
	before := a.leg.s.Stats().Inbound[0].Packets
	send(t, a.client.out[webrtc.RTPCodecTypeAudio], 100, 5, 960)
	require.NoError(t, waitUntil(10*time.Second, func() bool { return a.leg.s.Stats().Inbound[0].Packets >= before+5 }))
	require.Equal(t, st.Outbound[0].Packets, echo.Stats().Outbound[0].Packets)
	a.close(t)
	require.NoError(t, echo.Close())
	require.NoError(t, fw.Close())
}

// TestEchoLegPassesKeyframeRequestsBack: a PLI from the client for the video
// it gets back reaches the client's own sender, as a PLI for its stream.
func TestEchoLegPassesKeyframeRequestsBack(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	videoOnly := SessionOptions{Audio: []Codec{AudioCodecs[0]}}
	a := dial(t, e, "a", videoOnly, videoOnly, vp8)
	plis := make(chan struct{}, 10)
	a.client.out[webrtc.RTPCodecTypeVideo].OnKeyframeRequest(func() { plis <- struct{}{} })
	a.leg.s.pliInterval = 0
	fw := NewForwarder("echo", zerolog.Nop())
	echo := NewEchoLeg("a-echo", a.leg.s)
	require.NoError(t, fw.Add(a.leg.s))
	require.NoError(t, fw.Add(echo))
	send(t, a.client.out[webrtc.RTPCodecTypeVideo], 0, 3, 3000)
	track := waitTrack(t, a.client)
	readN(t, track, 3)
	waitPLI := func(what string) {
		t.Helper()
		select {
		case <-plis:
		case <-time.After(10 * time.Second):
			t.Fatal(what)
		}
	}
	waitPLI("no keyframe request when the echo started sending the video back")
	for len(plis) > 0 {
		<-plis
	}
	require.NoError(t, a.client.s.PeerConnection().WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: track.ssrc}}))
	waitPLI("the client's keyframe request did not come back to its sender")
	a.close(t)
	require.NoError(t, echo.Close())
	require.NoError(t, fw.Close())
}

// TestLegIsInOneForwarderAtATime: a leg in a forwarder is refused by
// another (and by the same one again); once removed, another forwarder
// takes it and its media flows there.
func TestLegIsInOneForwarderAtATime(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := dial(t, e, "a", audioOnly(), audioOnly(), opus)
	b := dial(t, e, "b", audioOnly(), audioOnly(), opus)
	c := dial(t, e, "c", audioOnly(), audioOnly(), opus)
	first := NewForwarder("first", zerolog.Nop())
	second := NewForwarder("second", zerolog.Nop())
	require.NoError(t, first.Add(a.leg.s))
	require.NoError(t, first.Add(b.leg.s))
	require.ErrorIs(t, second.Add(a.leg.s), ErrLegInUse)
	err := first.Add(a.leg.s)
	require.ErrorIs(t, err, ErrLegInUse)
	require.ErrorContains(t, err, "(first)")

	send(t, a.client.out[webrtc.RTPCodecTypeAudio], 0, 5, 960)
	readN(t, waitTrack(t, b.client), 5)

	first.Remove(a.leg.s)
	require.NoError(t, second.Add(a.leg.s))
	require.NoError(t, second.Add(c.leg.s))
	// The first forwarder's reader of a's track stops at the next packet
	// (counted, not forwarded); the second's reads from then on.
	send(t, a.client.out[webrtc.RTPCodecTypeAudio], 5, 10, 960)
	cTrack := waitTrack(t, c.client)
	var got []received
	for len(got) == 0 || got[len(got)-1].payload[0] != 14 {
		got = append(got, readN(t, cTrack, 1)...)
	}
	require.GreaterOrEqual(t, len(got), 9, "at most the packet in flight at the move is lost")
	require.EqualValues(t, 15, a.leg.s.Stats().Inbound[0].Packets, "every packet counted once")

	for _, l := range []*call{a, b, c} {
		l.close(t)
	}
	require.NoError(t, first.Close())
	require.NoError(t, second.Close())
	// A closed forwarder lets its legs go.
	third := NewForwarder("third", zerolog.Nop())
	require.NoError(t, third.Add(b.leg.s))
	require.NoError(t, third.Close())
}

func TestDTMFAcrossTheForwarder(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := dial(t, e, "a", audioOnly(), audioOnly(), opus)
	b := dial(t, e, "b", audioOnly(), audioOnly(), opus)
	fw := NewForwarder("ab", zerolog.Nop())
	tones := make(chan DTMF, 10)
	fw.Tap(nil, NewDTMFDetector(func(d DTMF) { tones <- d }))
	require.NoError(t, fw.Add(a.leg.s))
	require.NoError(t, fw.Add(b.leg.s))

	// Audio first, so the forwarder has a's track; then a sends tones.
	send(t, a.client.out[webrtc.RTPCodecTypeAudio], 0, 2, 960)
	bTrack := waitTrack(t, b.client)
	require.NoError(t, SendDTMF(ctx(t), a.client.out[webrtc.RTPCodecTypeAudio], "1#", DTMFOptions{Duration: 60 * time.Millisecond, Gap: 20 * time.Millisecond}))
	for _, want := range "1#" {
		select {
		case d := <-tones:
			require.Equal(t, want, d.Digit)
			require.Equal(t, "a", d.Leg)
			require.InDelta(t, 60*time.Millisecond, d.Duration, float64(25*time.Millisecond))
		case <-time.After(10 * time.Second):
			t.Fatal("tone not detected")
		}
	}

	// b's client gets the events too, with b's own telephone-event type.
	require.NotZero(t, bTrack.DTMFPayloadType)
	clientTones := make(chan DTMF, 10)
	clientDetector := NewDTMFDetector(func(d DTMF) { clientTones <- d })
	for len(clientTones) == 0 {
		r := readN(t, bTrack, 1)[0]
		clientDetector.Packet(bTrack, &r.h, r.payload)
	}
	require.Equal(t, '1', (<-clientTones).Digit)
	a.close(t)
	b.close(t)
	require.NoError(t, fw.Close())
}

func TestSendDTMFRejectsBadInput(t *testing.T) {
	o := NewOutboundTrack(opus, "x", "x")
	require.ErrorContains(t, SendDTMF(ctx(t), o, "12x", DTMFOptions{}), `"x" is not a DTMF digit`)
	require.ErrorContains(t, SendDTMF(ctx(t), o, "1", DTMFOptions{Volume: 99}), "volume")
}

// TestKeyframeRequestsAreRateLimited: requests within the interval are
// absorbed (one keyframe serves them all), later ones go out again.
func TestKeyframeRequestsAreRateLimited(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	videoOnly := SessionOptions{Audio: []Codec{AudioCodecs[0]}}
	a := dial(t, e, "a", videoOnly, videoOnly, vp8)
	plis := make(chan struct{}, 10)
	a.client.out[webrtc.RTPCodecTypeVideo].OnKeyframeRequest(func() { plis <- struct{}{} })
	send(t, a.client.out[webrtc.RTPCodecTypeVideo], 0, 1, 3000)
	in := waitTrackOn(t, a.leg.s)
	a.leg.s.pliInterval = time.Hour
	in.RequestKeyframe()
	in.RequestKeyframe()
	in.RequestKeyframe()
	<-plis
	a.leg.s.lastPLI.Range(func(k, _ any) bool { // as if the interval had passed
		a.leg.s.lastPLI.Store(k, time.Now().Add(-2*time.Hour))
		return true
	})
	in.RequestKeyframe()
	<-plis
	// RTCP of one connection arrives in order: had the second or third
	// request gone out, its PLI would have come before the last one.
	require.Empty(t, plis, "three requests in one interval make one PLI")
	a.close(t)
}

// seenTap reports the first payload byte of each packet it sees.
type seenTap struct{ ch chan byte }

func (s *seenTap) Packet(_ *InboundTrack, _ *rtp.Header, payload []byte) { s.ch <- payload[0] }
func (s *seenTap) Close() error                                          { return nil }

func (s *seenTap) waitFor(t *testing.T, b byte) {
	t.Helper()
	for {
		select {
		case got := <-s.ch:
			if got == b {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("packet %d never reached the forwarder", b)
		}
	}
}

// TestRTCPReportsGiveLossAndRTT: the engine's reporter sends sender reports
// on outbound streams and reception reports on inbound ones; the peer's
// reports give an outbound stream its round-trip time, and a receiver
// counts the loss and jitter of what it reads.
func TestRTCPReportsGiveLossAndRTT(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := dial(t, e, "a", audioOnly(), audioOnly(), opus)
	b := dial(t, e, "b", audioOnly(), audioOnly(), opus)
	fw := NewForwarder("ab", zerolog.Nop())
	require.NoError(t, fw.Add(a.leg.s))
	require.NoError(t, fw.Add(b.leg.s))
	// b's client reads what it gets through a forwarder of its own, so that
	// its receive statistics (and receiver reports) exist.
	sink := NewForwarder("sink", zerolog.Nop())
	require.NoError(t, sink.Add(b.client.s))

	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		ticker := time.NewTicker(20 * time.Millisecond)
		defer ticker.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-ticker.C:
			}
			if i == 10 {
				continue // one packet lost on the way
			}
			h := rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i) * 960, SSRC: 42, PayloadType: 111}
			_ = a.client.out[webrtc.RTPCodecTypeAudio].forward(fakeSource, &h, []byte{byte(i), 1, 2}, time.Now())
		}
	}()
	var legStats, clientStats LegStats
	err := waitUntil(15*time.Second, func() bool {
		legStats, clientStats = b.leg.s.Stats(), b.client.s.Stats()
		return len(legStats.Outbound) == 1 && legStats.Outbound[0].RTT > 0
	})
	close(stop)
	<-sent
	require.NoError(t, err, "b's leg got a reception report with round-trip time: %+v", legStats)
	require.Less(t, legStats.Outbound[0].RTT, time.Second)
	require.Len(t, clientStats.Inbound, 1)
	require.EqualValues(t, 1, clientStats.Inbound[0].Lost, "the receiver counted the missing packet")
	for _, c := range []*call{a, b} {
		c.close(t)
	}
	require.NoError(t, fw.Close())
	require.NoError(t, sink.Close())
}

// waitUntil polls cond: RTCP reports are sent on a timer, with no event to
// wait on.
func waitUntil(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("condition not met")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// TestPacketLegFollowsANewSSRC: a packet leg's peer restarts its stream
// with a new SSRC and unrelated numbers (jamid does after each media
// restart, a sequence number far behind the old one among them). Every
// packet of the new stream reaches the WebRTC side, numbered on from the
// old one, and the leg's statistics count no loss and no duplicates.
func TestPacketLegFollowsANewSSRC(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	b := dial(t, e, "b", audioOnly(), audioOnly(), opus)
	feed := make(chan []byte, 64)
	stop := make(chan struct{})
	pl := NewPacketLeg("jami", []PacketStream{{
		Kind: webrtc.RTPCodecTypeAudio, Codec: AudioCodecs[0], SendPayloadType: 111,
		ReadRTP: func(buf []byte) (int, error) {
			select {
			case p := <-feed:
				return copy(buf, p), nil
			case <-stop:
				return 0, errors.New("closed")
			}
		},
		WriteRTP: func(*rtp.Header, []byte) error { return nil },
	}}, WithCloser(func() error { close(stop); return nil }))
	fw := NewForwarder("jb", zerolog.Nop())
	require.NoError(t, fw.Add(pl))
	require.NoError(t, fw.Add(b.leg.s))

	packet := func(ssrc uint32, seq uint16, ts uint32, tag byte) []byte {
		h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}
		raw, err := h.Marshal()
		require.NoError(t, err)
		return append(raw, tag, 0xAB)
	}
	for i := range 10 { // the first stream
		feed <- packet(0x1111, 30000+uint16(i), 500000+uint32(i)*960, byte(i))
	}
	bTrack := waitTrack(t, b.client)
	first := readN(t, bTrack, 10)
	for i := range 10 { // the restarted stream, far "behind" the first
		feed <- packet(0x2222, 10+uint16(i), 7+uint32(i)*960, byte(100+i))
	}
	second := readN(t, bTrack, 10)
	require.Equal(t, byte(100), second[0].payload[0], "the new stream's first packet arrives")
	require.Equal(t, first[9].h.SequenceNumber+1, second[0].h.SequenceNumber, "numbered on from the old stream")
	require.Greater(t, int32(second[0].h.Timestamp-first[9].h.Timestamp), int32(0), "timestamps go forward")
	for i := 1; i < len(second); i++ {
		require.Equal(t, second[i-1].h.SequenceNumber+1, second[i].h.SequenceNumber)
		require.Equal(t, second[i-1].h.Timestamp+960, second[i].h.Timestamp)
	}
	st := pl.Stats()
	require.Len(t, st.Inbound, 1)
	require.EqualValues(t, 20, st.Inbound[0].Packets)
	require.EqualValues(t, 0, st.Inbound[0].Lost)
	require.EqualValues(t, 1, pl.tracks[0].in.restarts.Load())
	require.EqualValues(t, 0, pl.tracks[0].in.duplicates.Load())

	require.NoError(t, pl.Close())
	b.close(t)
	require.NoError(t, fw.Close())
}
