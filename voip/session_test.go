package voip

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// candidateLines returns a description's candidates, without "a=".
func candidateLines(sdp string) []string {
	var out []string
	for line := range strings.SplitSeq(sdp, "\n") {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "a="); ok && strings.HasPrefix(c, "candidate:") {
			out = append(out, c)
		}
	}
	return out
}

// withoutCandidates strips a description's candidates.
func withoutCandidates(desc webrtc.SessionDescription) webrtc.SessionDescription {
	var b strings.Builder
	for line := range strings.SplitSeq(desc.SDP, "\n") {
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "a=candidate:") || t == "a=end-of-candidates" {
			continue
		}
		b.WriteString(line + "\n")
	}
	desc.SDP = strings.TrimSuffix(b.String(), "\n")
	return desc
}

// candidateAddr is a candidate's address and port.
func candidateAddr(t *testing.T, c string) (string, int) {
	t.Helper()
	f := strings.Fields(c) // candidate:foundation component protocol priority address port typ ...
	require.GreaterOrEqual(t, len(f), 8, c)
	port, err := strconv.Atoi(f[5])
	require.NoError(t, err)
	return f[4], port
}

func hostCandidate(port int) *webrtc.ICECandidate {
	return &webrtc.ICECandidate{Foundation: strconv.Itoa(port), Priority: 1, Address: "127.0.0.1", Protocol: webrtc.ICEProtocolUDP,
		Port: uint16(port), Typ: webrtc.ICECandidateTypeHost, Component: 1}
}

func TestLocalCandidatesAreHeldThenBatchedThenEnded(t *testing.T) {
	leakCheck(t)
	h := newRecvHandler()
	s, err := testEngine(t).NewSession("s", h, SessionOptions{})
	require.NoError(t, err)
	defer s.Close()
	c := ctx(t)
	require.NoError(t, s.SetCandidateBatch(c, 20*time.Millisecond))

	// Before a description was returned, candidates wait: the peer could
	// not use them.
	require.NoError(t, s.ops.Do(c, func() error {
		s.localCandidate(hostCandidate(1001))
		require.Len(t, s.localPending, 1)
		return nil
	}))
	// Released (as describeLocal does), they come; those gathered close
	// together come in one batch.
	require.NoError(t, s.ops.Do(c, func() error {
		s.localReleased = true
		s.localCandidate(hostCandidate(1002))
		s.scheduleLocal()
		return nil
	}))
	b := <-h.candidates
	require.False(t, b.done)
	require.Len(t, b.candidates, 2, "one batch")
	require.Contains(t, b.candidates[0].Candidate, "1001")
	require.Contains(t, b.candidates[1].Candidate, "1002")

	// The end of gathering hands out what is pending at once, with the end
	// marker, once.
	require.NoError(t, s.ops.Do(c, func() error {
		s.localCandidate(hostCandidate(1003))
		s.localCandidate(nil)
		s.localCandidate(nil)
		return nil
	}))
	b = <-h.candidates
	require.True(t, b.done)
	require.Len(t, b.candidates, 1)
	require.Contains(t, b.candidates[0].Candidate, "1003")
	require.NoError(t, s.Close())
	require.Empty(t, h.candidates, "no second end marker")
}

func TestTrickledCandidatesBeforeTheDescriptionAreKept(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := newPeer(t, e, "a", SessionOptions{}, AudioCodecs[0].RTPCodecCapability)
	b := newPeer(t, e, "b", SessionOptions{})
	c := ctx(t)
	offer, err := a.s.CreateOffer(c, OfferOptions{GatherWait: 5 * time.Second})
	require.NoError(t, err)
	lines := candidateLines(offer.SDP)
	require.NotEmpty(t, lines)

	// The candidates arrive first (to-device messages can overtake the
	// invite), with a bad one and the end marker among them.
	var trickled []webrtc.ICECandidateInit
	for _, l := range lines {
		trickled = append(trickled, webrtc.ICECandidateInit{Candidate: l})
	}
	trickled = append(trickled, webrtc.ICECandidateInit{Candidate: "candidate:garbage"}, webrtc.ICECandidateInit{Candidate: ""})
	require.NoError(t, b.s.AddRemoteCandidates(c, trickled))
	require.NoError(t, b.s.ops.Do(c, func() error {
		require.Len(t, b.s.pendingRemote, len(lines)+1, "kept until the description, the end marker skipped")
		return nil
	}))
	require.NoError(t, b.s.SetRemoteDescription(c, withoutCandidates(offer)))
	require.NoError(t, b.s.ops.Do(c, func() error {
		require.Empty(t, b.s.pendingRemote)
		return nil
	}))

	// b learnt a's candidates from the trickle alone. (pion's ICE agent
	// takes an added candidate in on a goroutine of its own: they show in
	// the stats soon after, not at once.)
	missing := func() []string {
		remote := map[string]bool{}
		for _, st := range b.s.pc.GetStats() {
			if cs, ok := st.(webrtc.ICECandidateStats); ok && cs.Type == webrtc.StatsTypeRemoteCandidate {
				remote[net.JoinHostPort(cs.IP, strconv.Itoa(int(cs.Port)))] = true
			}
		}
		var out []string
		for _, l := range lines {
			addr, port := candidateAddr(t, l)
			if !remote[net.JoinHostPort(addr, strconv.Itoa(port))] {
				out = append(out, l)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(missing()) == 0 }, 5*time.Second, 5*time.Millisecond, "remote candidates %q", missing())
}

func TestICERestartKeepsTheCallGoing(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := newPeer(t, e, "a", SessionOptions{}, AudioCodecs[0].RTPCodecCapability)
	b := newPeer(t, e, "b", SessionOptions{})
	connect(t, a, b)
	send(t, a.out[webrtc.RTPCodecTypeAudio], 0, 5, 960) // a track is reported with its first packet
	in := waitTrack(t, b)
	readN(t, in, 5)

	c := ctx(t)
	before := a.s.pc.LocalDescription().SDP
	offer, err := a.s.RestartICE(c, 5*time.Second)
	require.NoError(t, err)
	require.NotEqual(t, iceUfrag(before), iceUfrag(offer.SDP), "new ICE credentials")
	require.NoError(t, b.s.SetRemoteDescription(c, offer))
	answer, err := b.s.CreateAnswer(c, 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, a.s.SetRemoteDescription(c, answer))

	// Media flows on the same track once the new checks succeed: a
	// 20 ms stream, as a call sends, until a packet gets through.
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 5; ; i++ {
			h := rtp.Header{Version: 2, SequenceNumber: uint16(1000 + i), Timestamp: uint32(i) * 960, SSRC: 42, PayloadType: 111}
			_ = a.out[webrtc.RTPCodecTypeAudio].forward(fakeSource, &h, []byte{byte(i)}, time.Now())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	got := readN(t, in, 1)
	close(stop)
	<-sent
	require.GreaterOrEqual(t, got[0].payload[0], byte(5), "sent after the restart")
	// pion may report "connecting" while the new checks run, though media
	// already flows; what must not happen is a failed or closed connection.
	require.NotContains(t, []webrtc.PeerConnectionState{webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed},
		b.s.pc.ConnectionState())
}

func iceUfrag(sdp string) string {
	for line := range strings.SplitSeq(sdp, "\n") {
		if u, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return u
		}
	}
	return ""
}

func TestAddingVideoMidCallRenegotiates(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := newPeer(t, e, "a", SessionOptions{}, AudioCodecs[0].RTPCodecCapability)
	b := newPeer(t, e, "b", SessionOptions{})
	connect(t, a, b)
	send(t, a.out[webrtc.RTPCodecTypeAudio], 0, 1, 960)
	waitTrack(t, b)
	select {
	case <-a.h.negotiate: // the first offer's
	default:
	}

	c := ctx(t)
	video := NewOutboundTrack(VideoCodecs[0].RTPCodecCapability, "a-video", "a")
	require.NoError(t, a.s.AddOutbound(c, video))
	select {
	case <-a.h.negotiate:
	case <-c.Done():
		t.Fatal("no negotiation needed after adding a track")
	}
	offer, err := a.s.CreateOffer(c, OfferOptions{GatherWait: time.Second})
	require.NoError(t, err)
	require.NoError(t, b.s.SetRemoteDescription(c, offer))
	answer, err := b.s.CreateAnswer(c, time.Second)
	require.NoError(t, err)
	require.NoError(t, a.s.SetRemoteDescription(c, answer))

	send(t, video, 0, 3, 3000)
	tr := waitTrack(t, b)
	require.Equal(t, webrtc.RTPCodecTypeVideo, tr.Kind)
	require.Len(t, readN(t, tr, 3), 3)
}

// freeUDPPort finds a loopback UDP port nobody uses now.
func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	port := c.LocalAddr().(*net.UDPAddr).Port
	require.NoError(t, c.Close())
	return uint16(port)
}

func TestSinglePortServesSeveralCalls(t *testing.T) {
	leakCheck(t)
	cfg := testConfig()
	cfg.UDPMuxPort = freeUDPPort(t)
	server, err := NewEngine(cfg, zerolog.Nop())
	require.NoError(t, err)
	defer func() { require.NoError(t, server.Close()) }()
	clients := testEngine(t)

	// Two callers, each answered by a session on the one shared port.
	for i, id := range []string{"alice", "bob"} {
		caller := newPeer(t, clients, id, SessionOptions{}, AudioCodecs[0].RTPCodecCapability)
		leg := newPeer(t, server, id+"-leg", SessionOptions{})
		connect(t, caller, leg)
		for _, l := range candidateLines(leg.s.pc.LocalDescription().SDP) {
			_, port := candidateAddr(t, l)
			require.EqualValues(t, cfg.UDPMuxPort, port, "every candidate on the shared port")
		}
		send(t, caller.out[webrtc.RTPCodecTypeAudio], 10*i, 3, 960)
		got := readN(t, waitTrack(t, leg), 3)
		require.EqualValues(t, 10*i, got[0].payload[0], "each call gets its own media")
	}
}

func TestPortRangeAndPublicAddress(t *testing.T) {
	leakCheck(t)
	cfg := testConfig()
	cfg.UDPPortMin, cfg.UDPPortMax = 42000, 42049
	// A loopback address stands for the public one: no traffic leaves.
	cfg.PublicIPs = []string{"127.0.0.2"}
	e, err := NewEngine(cfg, zerolog.Nop())
	require.NoError(t, err)
	defer func() { require.NoError(t, e.Close()) }()
	p := newPeer(t, e, "p", SessionOptions{}, AudioCodecs[0].RTPCodecCapability)
	offer, err := p.s.CreateOffer(ctx(t), OfferOptions{GatherWait: 5 * time.Second})
	require.NoError(t, err)
	lines := candidateLines(offer.SDP)
	require.NotEmpty(t, lines)
	for _, l := range lines {
		addr, port := candidateAddr(t, l)
		if strings.Contains(addr, ":") {
			continue // the IPv6 loopback has no public address configured
		}
		require.Equal(t, "127.0.0.2", addr, "the public address replaces the host's")
		require.GreaterOrEqual(t, port, 42000)
		require.LessOrEqual(t, port, 42049)
	}
}

func TestConfigValidateNamesEveryBadKey(t *testing.T) {
	require.NoError(t, func() error { c := testConfig(); return c.Validate() }())
	c := Config{UDPPortMin: 5000, UDPMuxPort: 3478, PublicIPs: []string{"1.2.3.4", "nope"}, Interfaces: []string{""},
		ICEDisconnected: 10 * time.Second, ICEFailed: time.Second}
	err := c.Validate()
	require.Error(t, err)
	for _, want := range []string{
		"media.udp_port_min, media.udp_port_max: set both or neither",
		`media.public_ips[1]: "nope" is not an IP address`,
		"media.interfaces[0]: empty interface name",
		"media.ice_keepalive_interval: 0s is not a positive duration",
		"media.ice_failed_timeout: must not be shorter",
		"media.record_dir: must not be empty",
	} {
		require.ErrorContains(t, err, want)
	}
	c = testConfig()
	c.UDPPortMin, c.UDPPortMax = 6000, 5000
	require.ErrorContains(t, c.Validate(), "media.udp_port_min: 6000 is above media.udp_port_max 5000")
	c = testConfig()
	c.UDPPortMin, c.UDPPortMax, c.UDPMuxPort = 5000, 6000, 3478
	require.ErrorContains(t, c.Validate(), "exclude each other")
}

func TestEngineDescribesWhereMediaGoes(t *testing.T) {
	leakCheck(t)
	require.Equal(t, "any free UDP port on lo", testEngine(t).Describe())
	cfg := testConfig()
	cfg.UDPPortMin, cfg.UDPPortMax, cfg.PublicIPs = 40000, 40099, []string{"192.0.2.7"}
	e, err := NewEngine(cfg, zerolog.Nop())
	require.NoError(t, err)
	require.Equal(t, "UDP ports 40000-40099 on lo, announced as 192.0.2.7", e.Describe())
	require.NoError(t, e.Close())
	cfg = testConfig()
	cfg.UDPMuxPort = freeUDPPort(t)
	e, err = NewEngine(cfg, zerolog.Nop())
	require.NoError(t, err)
	require.Contains(t, e.Describe(), "shared by all calls")
	_, err = NewEngine(cfg, zerolog.Nop())
	require.ErrorContains(t, err, "media.udp_mux_port", "the port is taken: a clear error")
	require.NoError(t, e.Close())
}

// TestAnswerKeepsTheDTLSRole: a called the first time and b answered
// active (a is the DTLS server); when b re-offers (actpass, as browsers
// do), a's answer says passive again, not pion's default active, which a
// browser refuses ("Failed to set SSL role for the transport").
func TestAnswerKeepsTheDTLSRole(t *testing.T) {
	leakCheck(t)
	e := testEngine(t)
	a := newPeer(t, e, "a", SessionOptions{}, AudioCodecs[0].RTPCodecCapability)
	b := newPeer(t, e, "b", SessionOptions{}, AudioCodecs[0].RTPCodecCapability)
	connect(t, a, b)
	c := ctx(t)
	first := b.s.pc.LocalDescription()
	require.Equal(t, "active", setupOf(first.SDP), "pion answers active")

	offer, err := b.s.CreateOffer(c, OfferOptions{GatherWait: time.Second})
	require.NoError(t, err)
	require.Equal(t, "actpass", setupOf(offer.SDP))
	require.NoError(t, a.s.SetRemoteDescription(c, offer))
	answer, err := a.s.CreateAnswer(c, time.Second)
	require.NoError(t, err)
	require.NotContains(t, answer.SDP, "a=setup:active")
	require.Equal(t, "passive", setupOf(answer.SDP))
	require.NoError(t, b.s.SetRemoteDescription(c, answer))

	// And b, which answered first, keeps active when it answers a's
	// re-offer.
	offer, err = a.s.CreateOffer(c, OfferOptions{GatherWait: time.Second})
	require.NoError(t, err)
	require.NoError(t, b.s.SetRemoteDescription(c, offer))
	answer, err = b.s.CreateAnswer(c, time.Second)
	require.NoError(t, err)
	require.Equal(t, "active", setupOf(answer.SDP))
}

func TestWithSetup(t *testing.T) {
	in := "v=0\r\nm=audio 9 X 111\r\na=setup:active\r\nm=video 9 X 96\r\na=setup:active\r\n"
	require.Equal(t, "v=0\r\nm=audio 9 X 111\r\na=setup:passive\r\nm=video 9 X 96\r\na=setup:passive\r\n", withSetup(in, "passive"))
	require.Equal(t, "passive", setupOf(withSetup(in, "passive")))
}
