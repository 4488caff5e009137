package voip

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// stunServer answers STUN binding requests on loopback after delay, or
// never if answer is false (a server that is down or blackholed). It
// returns the server's URL.
func stunServer(tb testing.TB, delay time.Duration, answer bool) string {
	tb.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(tb, err)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if err := m.Decode(); err != nil || m.Type != stun.BindingRequest || !answer {
				continue
			}
			addr := from.(*net.UDPAddr)
			resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: addr.IP, Port: addr.Port}, stun.Fingerprint)
			if err != nil {
				continue
			}
			wg.Add(1)
			go func() { // the server's distance
				defer wg.Done()
				select {
				case <-time.After(delay):
					_, _ = conn.WriteTo(resp.Raw, from)
				case <-stop:
				}
			}()
		}
	}()
	tb.Cleanup(func() {
		close(stop)
		_ = conn.Close()
		wg.Wait()
	})
	return "stun:" + conn.LocalAddr().String()
}

// candidateTypes counts the candidates of an SDP by type (host, srflx …).
// pion writes each candidate for components 1 and 2 (RTP and RTCP) though
// RTCP is multiplexed: only component 1 is counted.
func candidateTypes(sdp string) map[string]int {
	out := map[string]int{}
	for _, l := range candidateLines(sdp) {
		f := strings.Fields(l)
		if len(f) < 2 || f[1] != "1" {
			continue
		}
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "typ" {
				out[f[i+1]]++
			}
		}
	}
	return out
}

// answering makes a session that has taken an offer and is ready to
// answer it.
func answering(tb testing.TB, c context.Context, e *Engine, opts SessionOptions) (*Session, *recvHandler) {
	tb.Helper()
	offerer, err := e.NewSession("offerer", nil, SessionOptions{Video: []Codec{}})
	require.NoError(tb, err)
	defer func() { require.NoError(tb, offerer.Close()) }()
	require.NoError(tb, offerer.AddOutbound(c, NewOutboundTrack(opus, "a", "a")))
	offer, err := offerer.CreateOffer(c, OfferOptions{})
	require.NoError(tb, err)
	h := newRecvHandler()
	s, err := e.NewSession("answerer", h, opts)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = s.Close() })
	require.NoError(tb, s.SetRemoteDescription(c, offer))
	return s, h
}

func TestProbeCountsTheHostCandidatesASessionGathers(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	require.Zero(t, e.HostCandidates(), "not known before the first gathering")
	n, err := e.ProbeHostCandidates(ctx(t))
	require.NoError(t, err)
	require.Positive(t, n)
	require.Equal(t, n, e.HostCandidates())

	s, _ := answering(t, ctx(t), e, SessionOptions{Video: []Codec{}})
	answer, err := s.CreateAnswer(ctx(t), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"host": n}, candidateTypes(answer.SDP))
}

// TestGatherHostsAnswersWithoutWaitingForSTUN: with GatherHosts, an answer
// is ready once the host candidates are in, whether the STUN server is
// slow or dead; the server-reflexive candidate trickles after it. Without,
// the answer waits for the server.
func TestGatherHostsAnswersWithoutWaitingForSTUN(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	const stunDelay = time.Second
	slow := []webrtc.ICEServer{{URLs: []string{stunServer(t, stunDelay, true)}}}
	dead := []webrtc.ICEServer{{URLs: []string{stunServer(t, 0, false)}}}

	// The first such answer learns the host count with a probe.
	for _, tc := range []struct {
		name     string
		servers  []webrtc.ICEServer
		trickles bool
	}{{"slow", slow, true}, {"dead", dead, false}} {
		s, h := answering(t, ctx(t), e, SessionOptions{Video: []Codec{}, ICEServers: tc.servers, GatherUntil: GatherHosts})
		start := time.Now()
		answer, err := s.CreateAnswer(ctx(t), 3*time.Second)
		took := time.Since(start)
		require.NoError(t, err)
		require.Less(t, took, stunDelay/2, "%s: the answer waited for the STUN server", tc.name)
		require.Positive(t, e.HostCandidates())
		require.Equal(t, map[string]int{"host": e.HostCandidates()}, candidateTypes(answer.SDP), tc.name)
		if tc.trickles {
			select {
			case b := <-h.candidates:
				require.Len(t, b.candidates, 1)
				require.Contains(t, b.candidates[0].Candidate, "typ srflx", "the server-reflexive candidate trickles")
			case <-time.After(5 * time.Second):
				t.Fatal("no server-reflexive candidate trickled")
			}
		}
		require.NoError(t, s.Close())
	}

	s, _ := answering(t, ctx(t), e, SessionOptions{Video: []Codec{}, ICEServers: slow})
	start := time.Now()
	answer, err := s.CreateAnswer(ctx(t), 3*time.Second)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), stunDelay, "GatherComplete waits for the server")
	require.Equal(t, 1, candidateTypes(answer.SDP)["srflx"])
}

// TestHostCountFollowsTheLastCompleteGathering: a count that is too high
// (an interface went away) makes an answer wait for gathering to complete,
// as without GatherHosts, and is corrected by it.
func TestHostCountFollowsTheLastCompleteGathering(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	n, err := e.ProbeHostCandidates(ctx(t))
	require.NoError(t, err)
	e.noteHosts(n + 5)
	s, _ := answering(t, ctx(t), e, SessionOptions{Video: []Codec{}, GatherUntil: GatherHosts})
	answer, err := s.CreateAnswer(ctx(t), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"host": n}, candidateTypes(answer.SDP))
	require.Equal(t, n, e.HostCandidates())
}

// TestProbeOutlastingTheWaitIsNotWaitedFor: a wait that ends before the
// engine knows the host count gets none (the description is made as
// without GatherHosts); the probe goes on for later calls. A machine
// without a host candidate on the configured interfaces says so.
func TestProbeOutlastingTheWaitIsNotWaitedFor(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	require.Zero(t, e.hostCandidates(c))
	require.Eventually(t, func() bool { return e.HostCandidates() > 0 }, 5*time.Second, time.Millisecond, "the probe goes on for later calls")

	cfg := testConfig()
	cfg.Interfaces = []string{"no-such-interface"}
	none, err := NewEngine(cfg, zerolog.Nop())
	require.NoError(t, err)
	_, err = none.ProbeHostCandidates(ctx(t))
	require.ErrorContains(t, err, "no host candidate")
	require.NoError(t, none.Close())
}

// BenchmarkAnswerReady is the time from CreateAnswer to the answer in
// hand, with the Matrix runner's 200 ms bound on the wait for candidates:
// GatherComplete (old: the wait lasts until gathering completes) against
// GatherHosts (new: until the host candidates are in), with no STUN
// server, one 50 ms away, and one that never answers. The two alternate in
// each iteration, so that both see the same load: ns/op is one of each
// (and the sessions' setup); complete-ms and hosts-ms are each one's wait,
// hosts/complete their ratio, probe-ms what learning the host count took
// (once per engine, before the first call that needs it).
func BenchmarkAnswerReady(b *testing.B) {
	const gatherWait = 200 * time.Millisecond
	for _, sc := range []struct {
		name  string
		delay time.Duration
		alive bool
		none  bool
	}{{"no-stun", 0, false, true}, {"stun-50ms", 50 * time.Millisecond, true, false}, {"dead-stun", 0, false, false}} {
		b.Run(sc.name, func(b *testing.B) {
			e := testEngine(b)
			c, cancel := context.WithCancel(context.Background())
			defer cancel()
			probeStart := time.Now()
			if _, err := e.ProbeHostCandidates(c); err != nil {
				b.Fatal(err)
			}
			probe := time.Since(probeStart)
			var servers []webrtc.ICEServer
			if !sc.none {
				servers = []webrtc.ICEServer{{URLs: []string{stunServer(b, sc.delay, sc.alive)}}}
			}
			var took [2]time.Duration
			for b.Loop() {
				for i, until := range []GatherUntil{GatherComplete, GatherHosts} {
					s, _ := answering(b, c, e, SessionOptions{Video: []Codec{}, ICEServers: servers, GatherUntil: until})
					start := time.Now()
					if _, err := s.CreateAnswer(c, gatherWait); err != nil {
						b.Fatal(err)
					}
					took[i] += time.Since(start)
					if err := s.Close(); err != nil {
						b.Fatal(err)
					}
				}
			}
			n := float64(b.N)
			b.ReportMetric(float64(took[0].Microseconds())/1e3/n, "complete-ms")
			b.ReportMetric(float64(took[1].Microseconds())/1e3/n, "hosts-ms")
			b.ReportMetric(float64(took[1])/float64(took[0]), "hosts/complete")
			b.ReportMetric(float64(probe.Microseconds())/1e3, "probe-ms")
		})
	}
}
