package voip

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/transport/v4/test"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// testConfig keeps test traffic on loopback.
func testConfig() Config {
	return Config{
		Interfaces:      []string{"lo"},
		IncludeLoopback: true,
		ICEDisconnected: 5 * time.Second,
		ICEFailed:       10 * time.Second,
		ICEKeepalive:    time.Second,
		RecordDir:       "recordings",
	}
}

// leakCheck fails the test if goroutines it started outlive it; registered
// first, it runs after every other cleanup.
func leakCheck(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
}

func testEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := NewEngine(testConfig(), zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// recvHandler collects what a session reports.
type recvHandler struct {
	tracks     chan *InboundTrack
	connected  chan struct{}
	once       sync.Once
	candidates chan candidateBatch
	negotiate  chan struct{}
}

type candidateBatch struct {
	candidates []webrtc.ICECandidateInit
	done       bool
}

func newRecvHandler() *recvHandler {
	return &recvHandler{
		tracks: make(chan *InboundTrack, 4), connected: make(chan struct{}),
		candidates: make(chan candidateBatch, 16), negotiate: make(chan struct{}, 1),
	}
}

func (h *recvHandler) OnTrack(t *InboundTrack) { h.tracks <- t }

func (h *recvHandler) OnLocalCandidates(c []webrtc.ICECandidateInit, done bool) {
	select {
	case h.candidates <- candidateBatch{c, done}:
	default: // a test that does not look at them
	}
}

func (h *recvHandler) OnNegotiationNeeded() {
	select {
	case h.negotiate <- struct{}{}:
	default:
	}
}

func (h *recvHandler) OnConnectionState(s webrtc.PeerConnectionState) {
	if s == webrtc.PeerConnectionStateConnected {
		h.once.Do(func() { close(h.connected) })
	}
}

// peer is one end of a test call: a session, the track it sends (if any),
// and what it receives.
type peer struct {
	s   *Session
	out map[webrtc.RTPCodecType]*OutboundTrack
	h   *recvHandler
}

// newPeer makes a session sending the given formats.
func newPeer(t *testing.T, e *Engine, id string, opts SessionOptions, sends ...webrtc.RTPCodecCapability) *peer {
	t.Helper()
	h := newRecvHandler()
	s, err := e.NewSession(id, h, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() }) // closing twice is harmless
	p := &peer{s: s, out: map[webrtc.RTPCodecType]*OutboundTrack{}, h: h}
	for _, c := range sends {
		o := NewOutboundTrack(c, id+"-"+c.MimeType, id)
		require.NoError(t, s.AddOutbound(ctx(t), o))
		p.out[o.Kind()] = o
	}
	return p
}

// connect runs offer/answer between an offering peer and an answering leg,
// with candidates in the descriptions (loopback gathers at once). The
// answering side adds outbound tracks for the kinds it was offered, in the
// format negotiated, as a bridge leg does.
func connect(t *testing.T, offerer, answerer *peer) {
	t.Helper()
	c := ctx(t)
	offer, err := offerer.s.CreateOffer(c, OfferOptions{GatherWait: 5 * time.Second})
	require.NoError(t, err)
	require.NoError(t, answerer.s.SetRemoteDescription(c, offer))
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		codecs := answerer.s.NegotiatedCodecs(kind)
		if len(codecs) == 0 || answerer.out[kind] != nil {
			continue
		}
		o := NewOutboundTrack(codecs[0].RTPCodecCapability, answerer.s.ID()+"-"+kind.String(), answerer.s.ID())
		require.NoError(t, answerer.s.AddOutbound(c, o))
		answerer.out[kind] = o
	}
	answer, err := answerer.s.CreateAnswer(c, 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, offerer.s.SetRemoteDescription(c, answer))
	for _, p := range []*peer{offerer, answerer} {
		select {
		case <-p.h.connected:
		case <-c.Done():
			t.Fatalf("%s did not connect", p.s.ID())
		}
	}
}

func (p *peer) close(t *testing.T) {
	t.Helper()
	require.NoError(t, p.s.Close())
}

// fakeSource is the source a test writes packets as.
var fakeSource = &InboundTrack{Kind: webrtc.RTPCodecTypeAudio, Codec: webrtc.RTPCodecParameters{RTPCodecCapability: AudioCodecs[0].RTPCodecCapability}}

// send writes numbered packets on a peer's outbound track; the payload's
// first byte is the number.
func send(t *testing.T, o *OutboundTrack, from, n int, tsStep uint32) {
	t.Helper()
	for i := from; i < from+n; i++ {
		h := rtp.Header{Version: 2, SequenceNumber: uint16(1000 + i), Timestamp: uint32(i) * tsStep, SSRC: 42, PayloadType: 111}
		require.NoError(t, o.forward(fakeSource, &h, []byte{byte(i), 0xAB, 0xCD}, time.Now()))
	}
}

type received struct {
	h       rtp.Header
	payload []byte
}

// readN reads n packets from an inbound track.
func readN(t *testing.T, in *InboundTrack, n int) []received {
	t.Helper()
	out := make([]received, 0, n)
	buf := make([]byte, maxPacket)
	done := make(chan error, 1)
	go func() {
		for len(out) < n {
			k, err := in.Read(buf)
			if err != nil {
				done <- err
				return
			}
			var r received
			hl, err := r.h.Unmarshal(buf[:k])
			if err != nil {
				done <- err
				return
			}
			r.payload = append([]byte(nil), buf[hl:k]...)
			out = append(out, r)
		}
		done <- nil
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatalf("only %d of %d packets arrived", len(out), n)
	}
	return out
}

func waitTrack(t *testing.T, p *peer) *InboundTrack {
	t.Helper()
	select {
	case tr := <-p.h.tracks:
		return tr
	case <-time.After(15 * time.Second):
		t.Fatalf("%s got no track", p.s.ID())
		return nil
	}
}
