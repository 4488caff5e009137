package media

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/transport/v4/test"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

var loopback = []netip.Addr{netip.MustParseAddr("127.0.0.1")}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// goroutineCheck fails the test if goroutines it started outlive it;
// registered first, it runs after every other cleanup.
func goroutineCheck(t *testing.T) { t.Cleanup(test.CheckRoutines(t)) }

func newTestSession(t *testing.T, o Options) *Session {
	t.Helper()
	if o.IPs == nil {
		o.IPs = loopback
	}
	s, err := NewSession(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// negotiate runs offer/answer from a to b and connects both.
func negotiate(t *testing.T, a, b *Session) {
	t.Helper()
	ctx := testCtx(t)
	offer, err := a.Offer(ctx)
	require.NoError(t, err)
	answer, err := b.Answer(ctx, offer)
	require.NoError(t, err, "offer:\n%s", offer)
	require.NoError(t, a.SetAnswer(answer), "answer:\n%s", answer)
	connectBoth(t, a, b)
}

func connectBoth(t *testing.T, a, b *Session) {
	t.Helper()
	var g errgroup.Group
	g.Go(func() error { return a.Connect(testCtx(t)) })
	g.Go(func() error { return b.Connect(testCtx(t)) })
	require.NoError(t, g.Wait())
}

// exchange sends n packets of RTP from one stream to the other and
// checks they arrive decrypted, as sent.
func exchangeRTP(t *testing.T, from, to *Stream, n int) {
	t.Helper()
	base := nextSeq[from] // replay protection drops numbers seen before
	nextSeq[from] += uint16(n)
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		for i := range n {
			k, err := to.ReadRTP(buf)
			if err != nil {
				got <- err
				return
			}
			var p rtp.Packet
			if err := p.Unmarshal(buf[:k]); err != nil {
				got <- err
				return
			}
			if p.SequenceNumber != base+uint16(i) || p.PayloadType != from.SendPayloadType || len(p.Payload) != 3 || p.Payload[0] != byte(i) {
				got <- &mismatch{i, p}
				return
			}
		}
		got <- nil
	}()
	for i := range n {
		h := rtp.Header{Version: 2, PayloadType: from.SendPayloadType, SequenceNumber: base + uint16(i), Timestamp: uint32(960 * i), SSRC: 0xabcd}
		require.NoError(t, from.WriteRTP(&h, []byte{byte(i), 0x55, 0xaa}))
	}
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: packets did not arrive", to.Label)
	}
}

// nextSeq is each sending stream's next sequence number in the tests.
var nextSeq = map[*Stream]uint16{}

type mismatch struct {
	i int
	p rtp.Packet
}

func (m *mismatch) Error() string { return fmt.Sprintf("packet %d differs: %s", m.i, m.p.String()) }

func exchangeRTCP(t *testing.T, from, to *Stream) {
	t.Helper()
	got := make(chan []rtcp.Packet, 1)
	go func() {
		pkts, err := to.ReadRTCP(make([]byte, 1500))
		if err != nil {
			got <- nil
			return
		}
		got <- pkts
	}()
	rr := &rtcp.ReceiverReport{SSRC: 7, Reports: []rtcp.ReceptionReport{{SSRC: 0xabcd, LastSequenceNumber: 4242, Jitter: 12}}}
	require.NoError(t, from.WriteRTCP([]rtcp.Packet{rr, &rtcp.PictureLossIndication{SenderSSRC: 7, MediaSSRC: 0xabcd}}))
	select {
	case pkts := <-got:
		require.Len(t, pkts, 2)
		got, ok := pkts[0].(*rtcp.ReceiverReport)
		require.True(t, ok)
		require.Equal(t, rr.Reports, got.Reports)
		require.IsType(t, &rtcp.PictureLossIndication{}, pkts[1])
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: RTCP did not arrive", to.Label)
	}
}

func bothWays(t *testing.T, a, b *Session) {
	t.Helper()
	as, bs := a.Streams(), b.Streams()
	require.Equal(t, len(as), len(bs))
	for i := range as {
		if as[i].Rejected() {
			continue
		}
		exchangeRTP(t, as[i], bs[i], 20)
		exchangeRTP(t, bs[i], as[i], 20)
		exchangeRTCP(t, as[i], bs[i])
		exchangeRTCP(t, bs[i], as[i])
	}
}

func TestAudioAndVideoBothWays(t *testing.T) {
	goroutineCheck(t)
	for _, suite := range []string{"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"} {
		t.Run(suite, func(t *testing.T) {
			a := newTestSession(t, Options{Audio: true, Video: true, Suite: suite})
			b := newTestSession(t, Options{Audio: true, Video: true})
			negotiate(t, a, b)
			as, bs := a.Streams(), b.Streams()
			require.Len(t, as, 2)
			require.Equal(t, "audio_0", as[0].Label)
			require.Equal(t, "video_0", bs[1].Label)
			require.Equal(t, "opus", bs[0].Codec.Name)
			require.EqualValues(t, 111, bs[0].Codec.PayloadType)
			require.EqualValues(t, 101, as[0].SendDTMFPayloadType)
			require.Equal(t, "VP8", as[1].Codec.Name)
			require.Equal(t, webrtc.RTPCodecTypeVideo, as[1].Kind)
			require.Equal(t, suite, bs[0].local.suite.name, "the answer keeps the offered suite")
			require.NotEqual(t, as[0].local.key, bs[0].local.key, "each side has its own key")
			bothWays(t, a, b)
			require.NoError(t, a.Close())
			require.NoError(t, b.Close())
			_, err := as[0].ReadRTP(make([]byte, 1500))
			require.Error(t, err, "reads end with the session")
		})
	}
}

func TestOfferFromTheOtherSide(t *testing.T) {
	goroutineCheck(t)
	a := newTestSession(t, Options{Audio: true})
	b := newTestSession(t, Options{Audio: true, Video: true})
	negotiate(t, b, a) // b offers video, a takes audio only
	as := a.Streams()
	require.Len(t, as, 2)
	require.True(t, as[1].Rejected())
	require.True(t, b.Streams()[1].Rejected(), "the offerer learns the rejection from port 0")
	bothWays(t, b, a)
	_, err := as[1].ReadRTP(make([]byte, 10))
	require.ErrorIs(t, err, ErrRejected)
}

func TestRTCPMux(t *testing.T) {
	goroutineCheck(t)
	a := newTestSession(t, Options{Audio: true, Video: true, RTCPMux: true})
	b := newTestSession(t, Options{Audio: true, Video: true})
	negotiate(t, a, b)
	for _, st := range append(a.Streams(), b.Streams()...) {
		require.True(t, st.Mux)
		require.Len(t, st.comps, 1)
	}
	bothWays(t, a, b)
}

// TestHoldAndResume: our re-offers (hold, resume) keep the ICE session, as
// jamid's to a peer of 11.0.2 or later do: no credentials or candidates in
// the offer nor in the answer, the same components, keys and streams.
func TestHoldAndResume(t *testing.T) {
	goroutineCheck(t)
	a := newTestSession(t, Options{Audio: true})
	b := newTestSession(t, Options{Audio: true})
	negotiate(t, a, b)
	connectBoth(t, a, b)
	as, bs := a.Streams()[0], b.Streams()[0]
	key, conn := as.local, as.comps[0].conn
	ctx := testCtx(t)
	var lastAnswer []byte
	for _, step := range []struct {
		ours, theirs Direction
	}{{SendOnly, RecvOnly}, {SendRecv, SendRecv}} {
		a.SetDirection(as, step.ours)
		offer, err := a.Offer(ctx)
		require.NoError(t, err)
		require.Contains(t, string(offer), "a="+step.ours.String())
		require.NotContains(t, string(offer), "a=ice-ufrag")
		require.NotContains(t, string(offer), "a=candidate")
		answer, err := b.Answer(ctx, offer)
		require.NoError(t, err)
		require.NotContains(t, string(answer), "a=ice-ufrag")
		require.Contains(t, string(answer), "a="+step.theirs.String())
		require.NoError(t, a.SetAnswer(answer))
		lastAnswer = answer
		require.False(t, a.NeedsConnect())
		require.False(t, b.NeedsConnect())
		require.Same(t, conn, as.comps[0].conn)
		require.Equal(t, step.ours, as.Direction())
		require.Equal(t, step.theirs, bs.Direction())
		exchangeRTP(t, as, bs, 5)
	}
	require.Equal(t, key, as.local)
	bothWays(t, a, b)

	// An answer without credentials to a re-offer that restarts ICE is
	// refused (our new components would have nothing to check), and the
	// call stays on its session.
	_, err := a.OfferICERestart(ctx)
	require.NoError(t, err)
	_, err = a.Offer(ctx)
	require.Error(t, err, "one offer at a time")
	require.ErrorContains(t, a.SetAnswer(lastAnswer), "no ICE credentials")
	a.AbandonOffer()
	require.Same(t, conn, as.comps[0].conn)
	bothWays(t, a, b)
}

// TestHoldAndResumeRestartingICE: re-offers that restart ICE (for peers
// before 11.0.2) while the call goes on: the old components carry media
// until the answer, the streams and keys stay, and the new components
// connect.
func TestHoldAndResumeRestartingICE(t *testing.T) {
	goroutineCheck(t)
	a := newTestSession(t, Options{Audio: true})
	b := newTestSession(t, Options{Audio: true})
	negotiate(t, a, b)
	as, bs := a.Streams()[0], b.Streams()[0]
	key, conn := as.local, as.comps[0].conn

	a.SetDirection(as, SendOnly) // a holds b
	ctx := testCtx(t)
	offer, err := a.OfferICERestart(ctx)
	require.NoError(t, err)
	require.Contains(t, string(offer), "a=sendonly")
	require.NotContains(t, string(offer), "a=ice-ufrag:"+a.ufrag, "new credentials")
	exchangeRTP(t, as, bs, 5) // the old session carries the call meanwhile
	answer, err := b.Answer(ctx, offer)
	require.NoError(t, err)
	require.Contains(t, string(answer), "a=recvonly")
	require.NoError(t, a.SetAnswer(answer))
	require.True(t, a.NeedsConnect())
	require.True(t, b.NeedsConnect())
	connectBoth(t, a, b)
	require.Equal(t, RecvOnly, bs.Direction())
	require.Equal(t, SendOnly, as.Direction())
	require.NotSame(t, conn, as.comps[0].conn)
	exchangeRTP(t, as, bs, 5)
	h := rtp.Header{Version: 2, SequenceNumber: 1, SSRC: 1}
	require.NoError(t, bs.WriteRTP(&h, []byte{1}), "b's writes are dropped, not refused")

	a.SetDirection(as, SendRecv)
	offer, err = a.OfferICERestart(ctx)
	require.NoError(t, err)
	answer, err = b.Answer(ctx, offer)
	require.NoError(t, err)
	require.NoError(t, a.SetAnswer(answer))
	connectBoth(t, a, b)
	require.Equal(t, SendRecv, bs.Direction())
	require.Equal(t, key, as.local)
	require.Same(t, as, a.Streams()[0])
	bothWays(t, a, b)

	// A re-offer the peer refuses is abandoned: the call stays on its
	// session, and the gathered components are closed.
	conn = as.comps[0].conn
	_, err = a.OfferICERestart(ctx)
	require.NoError(t, err)
	pending := a.pending
	require.NotNil(t, pending)
	a.AbandonOffer()
	require.Nil(t, a.pending)
	require.Same(t, conn, as.comps[0].conn)
	require.False(t, a.NeedsConnect())
	bothWays(t, a, b)

	// A re-offer with other sections is a new session's.
	c := newTestSession(t, Options{Audio: true, Video: true})
	fresh, err := c.Offer(ctx)
	require.NoError(t, err)
	_, err = b.Answer(ctx, fresh)
	require.ErrorIs(t, err, ErrNewSession)
	bothWays(t, a, b) // and the call goes on
}

// TestReofferOnTheSameICE: a peer's re-offer that keeps its ICE
// credentials (hold) is answered on the same transport.
func TestReofferOnTheSameICE(t *testing.T) {
	goroutineCheck(t)
	a := newTestSession(t, Options{Audio: true})
	b := newTestSession(t, Options{Audio: true})
	ctx := testCtx(t)
	offer, err := a.Offer(ctx)
	require.NoError(t, err)
	answer, err := b.Answer(ctx, offer)
	require.NoError(t, err)
	require.NoError(t, a.SetAnswer(answer))
	connectBoth(t, a, b)
	bs := b.Streams()[0]
	conn := bs.comps[0].conn

	hold := strings.Replace(string(offer), "a=sendrecv", "a=sendonly", 1)
	answer, err = b.Answer(ctx, []byte(hold))
	require.NoError(t, err)
	require.Contains(t, string(answer), "a=recvonly")
	require.False(t, b.NeedsConnect())
	require.Same(t, conn, bs.comps[0].conn)
	require.Equal(t, RecvOnly, bs.Direction())
	exchangeRTP(t, a.Streams()[0], bs, 5)
}

// TestReofferWithoutICE: jamid's re-offer to a peer of 11.0.2 or later
// that keeps the ICE session has no credentials and no candidates
// (SIPCall::isNewIceMediaRequired). It is taken on the same components
// and answered the same way, without credentials; a first offer like it
// is refused.
func TestReofferWithoutICE(t *testing.T) {
	goroutineCheck(t)
	a := newTestSession(t, Options{Audio: true})
	b := newTestSession(t, Options{Audio: true})
	negotiate(t, a, b)
	connectBoth(t, a, b)
	ctx := testCtx(t)
	bs := b.Streams()[0]
	conn := bs.comps[0].conn

	offer, err := a.Offer(ctx)
	require.NoError(t, err)
	a.AbandonOffer() // the offer is only a text to edit here
	hold := withoutICE(strings.Replace(string(offer), "a=sendrecv", "a=sendonly", 1))
	answer, err := b.Answer(ctx, []byte(hold))
	require.NoError(t, err)
	require.NotContains(t, string(answer), "a=ice-ufrag")
	require.NotContains(t, string(answer), "a=candidate")
	require.Contains(t, string(answer), "a=recvonly")
	require.False(t, b.NeedsConnect())
	require.Same(t, conn, bs.comps[0].conn)
	require.Equal(t, RecvOnly, bs.Direction())
	exchangeRTP(t, a.Streams()[0], bs, 5)

	c := newTestSession(t, Options{Audio: true})
	_, err = c.Answer(ctx, []byte(hold))
	require.ErrorIs(t, err, errSDP)
	require.ErrorContains(t, err, "no ICE credentials")
}

func withoutICE(sdp string) string {
	var out []string
	for _, l := range strings.Split(sdp, "\r\n") {
		if !strings.HasPrefix(l, "a=ice-") && !strings.HasPrefix(l, "a=candidate:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\r\n")
}

// TestICERestartKeepsStreams: the peer re-offers with new ICE credentials
// and new keys (jamid does on a media change; a new session stands in for
// its new ICE session here). The answerer's streams stay the same objects,
// a reader blocked across the restart gets the new session's packets, and
// the old components are closed.
func TestICERestartKeepsStreams(t *testing.T) {
	goroutineCheck(t)
	for _, mux := range []bool{false, true} {
		t.Run(fmt.Sprintf("rtcp-mux=%v", mux), func(t *testing.T) {
			a := newTestSession(t, Options{Audio: true})
			b := newTestSession(t, Options{Audio: true, RTCPMux: true})
			negotiate(t, a, b)
			bs := b.Streams()[0]
			oldConn := bs.comps[0].conn
			exchangeRTP(t, a.Streams()[0], bs, 5)

			blocked := make(chan error, 1)
			go func() {
				buf := make([]byte, 1500)
				n, err := bs.ReadRTP(buf)
				if err == nil && n < 13 {
					err = fmt.Errorf("a packet of %d bytes", n)
				}
				blocked <- err
			}()

			c := newTestSession(t, Options{Audio: true, RTCPMux: mux})
			ctx := testCtx(t)
			offer, err := c.Offer(ctx)
			require.NoError(t, err)
			answer, err := b.Answer(ctx, offer)
			require.NoError(t, err)
			require.True(t, b.NeedsConnect())
			h := rtp.Header{Version: 2, SequenceNumber: 1, SSRC: 1}
			require.NoError(t, bs.WriteRTP(&h, []byte{1}), "sends while reconnecting are dropped, not refused")
			require.NoError(t, c.SetAnswer(answer))
			connectBoth(t, c, b)
			require.False(t, b.NeedsConnect())
			require.Same(t, bs, b.Streams()[0])
			require.NotSame(t, oldConn, bs.comps[0].conn)
			require.Equal(t, mux, bs.Mux)

			cs := c.Streams()[0]
			h = rtp.Header{Version: 2, PayloadType: cs.SendPayloadType, SequenceNumber: 1000, SSRC: 7}
			require.NoError(t, cs.WriteRTP(&h, make([]byte, 20)))
			select {
			case err := <-blocked:
				require.NoError(t, err, "the reader blocked across the restart")
			case <-ctx.Done():
				t.Fatal("the blocked reader got nothing after the restart")
			}
			bothWays(t, c, b)
			require.NoError(t, a.Close())
		})
	}
}

func TestConnectTimesOut(t *testing.T) {
	goroutineCheck(t)
	a := newTestSession(t, Options{Audio: true})
	b := newTestSession(t, Options{Audio: true})
	ctx := testCtx(t)
	offer, err := a.Offer(ctx)
	require.NoError(t, err)
	answer, err := b.Answer(ctx, offer)
	require.NoError(t, err)
	require.NoError(t, a.SetAnswer(answer))
	require.NoError(t, b.Close()) // nobody answers a's checks
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err = a.Connect(short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "no ICE connectivity in time")
	require.Contains(t, err.Error(), "audio_0")
}

// TestRTCPProtection: by default RTCP goes out in the clear and what comes
// in is taken either way, as with jami-daemon (no SRTCP); with
// Options.SRTCP it is protected, and plain RTCP is refused.
func TestRTCPProtection(t *testing.T) {
	goroutineCheck(t)
	strict := newTestSession(t, Options{Audio: true, SRTCP: true})
	jami := newTestSession(t, Options{Audio: true})
	negotiate(t, strict, jami)
	s, j := strict.Streams()[0], jami.Streams()[0]
	exchangeRTCP(t, s, j) // SRTCP that authenticates is taken by a plain side
	exchangeRTP(t, j, s, 5)

	// The plain side's RTCP is not SRTCP (the strict side, which has its
	// key, does not authenticate it) and is dropped, not delivered.
	read := make(chan error, 1)
	go func() {
		_, err := s.ReadRTCP(make([]byte, 1500))
		read <- err
	}()
	before := s.dropped.Load()
	require.NoError(t, j.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{SenderSSRC: 7, MediaSSRC: 0xabcd}}))
	require.Eventually(t, func() bool { return s.dropped.Load() > before }, 10*time.Second, 5*time.Millisecond)
	select {
	case err := <-read:
		t.Fatalf("plain RTCP was delivered to the SRTCP side (err %v)", err)
	default:
	}
	require.NoError(t, strict.Close())
	require.Error(t, <-read, "the read ends with the session")
}
