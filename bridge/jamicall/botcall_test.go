//go:debug x509negativeserial=1

package jamicall_test

import (
	"context"
	"io"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/transport/v4/test"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/bridge/jamicall"
	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/jami"
	"github.com/voipbot/voipbot/jami/dht"
	"github.com/voipbot/voipbot/voip"
)

// events records what a leg reports, in order.
type events struct {
	answered  chan struct{}
	media     chan voip.Leg
	connected chan struct{}
	receiving chan bool
	ended     chan leg.End
	dtmf      chan dtmfKey
	once      sync.Once
}

func newEvents() *events {
	return &events{answered: make(chan struct{}), media: make(chan voip.Leg, 1), connected: make(chan struct{}, 1),
		receiving: make(chan bool, 8), ended: make(chan leg.End, 1), dtmf: make(chan dtmfKey, 16)}
}

// waitMedia waits for the leg's media, failing the test if the call ends
// first or ctx is done.
func (e *events) waitMedia(t *testing.T, ctx context.Context) voip.Leg {
	t.Helper()
	select {
	case m := <-e.media:
		return m
	case end := <-e.ended:
		t.Fatalf("the call ended before its media came up: %+v", end)
	case <-ctx.Done():
		t.Fatal("the call's media never came up")
	}
	return nil
}

func (e *events) Answered(leg.Leg)                      { e.once.Do(func() { close(e.answered) }) }
func (e *events) MediaReady(_ leg.Leg, m voip.Leg)      { e.media <- m }
func (e *events) Preferred(leg.Leg, *voip.InboundTrack) {}
func (e *events) Connected(leg.Leg)                     { e.connected <- struct{}{} }
func (e *events) Receiving(_ leg.Leg, on bool)          { e.receiving <- on }
func (e *events) PeerMuted(leg.Leg, bool, bool)         {}
func (e *events) Ended(_ leg.Leg, end leg.End)          { e.ended <- end }
func (e *events) DTMF(_ leg.Leg, digit rune, d time.Duration) {
	select {
	case e.dtmf <- dtmfKey{digit, d}:
	default:
	}
}

// dtmfKey is a key a leg reported.
type dtmfKey struct {
	digit rune
	d     time.Duration
}

// echoHost answers every call, and echoes its media back (as the bridge
// does with route echo).
type echoHost struct {
	t      *testing.T
	ev     *events
	rang   chan *jamicall.Leg
	answer bool
	mu     sync.Mutex
	fwds   []*voip.Forwarder
}

func (h *echoHost) Ringing(l *jamicall.Leg) leg.Events {
	h.rang <- l
	if h.answer {
		l.Answer()
	}
	return echoEvents{h.ev, h}
}

func (h *echoHost) Text(*jamicall.Leg, string) {}

type echoEvents struct {
	*events
	h *echoHost
}

func (e echoEvents) MediaReady(l leg.Leg, m voip.Leg) {
	fw := voip.NewForwarder("echo", zerolog.Nop())
	_ = fw.Add(m)
	_ = fw.Add(voip.NewEchoLeg(string(l.ID())+"-echo", m))
	e.h.mu.Lock()
	e.h.fwds = append(e.h.fwds, fw)
	e.h.mu.Unlock()
	e.events.MediaReady(l, m)
}

func (h *echoHost) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.fwds {
		_ = f.Close()
	}
}

// bot is a Jami service and its leg manager.
type bot struct {
	svc  *jami.Service
	mgr  *jamicall.Manager
	host *echoHost
}

func newBot(t *testing.T, ctx context.Context, boot netip.AddrPort, answer bool) *bot {
	t.Helper()
	jami.KeyBits = 2048
	svc, err := jami.Start(ctx, jami.Config{
		Enabled: true, Listen: "127.0.0.1:0", Bootstrap: []string{boot.String()},
		ICEAddresses: []string{"127.0.0.1"}, Allow: []string{"*"},
	}, jami.NewMemStore(), zerolog.Nop())
	require.NoError(t, err)
	select {
	case <-svc.Ready():
	case <-ctx.Done():
		t.Fatal("the service did not join the DHT")
	}
	h := &echoHost{t: t, ev: newEvents(), rang: make(chan *jamicall.Leg, 4), answer: answer}
	mctx, cancel := context.WithCancel(context.Background())
	b := &bot{svc: svc, host: h, mgr: jamicall.New(mctx, jamicall.Config{}, svc, h, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel))}
	t.Cleanup(func() {
		b.mgr.Shutdown(context.Background())
		h.close()
		cancel()
		b.mgr.Wait()
		svc.Stop(context.Background())
	})
	return b
}

// probe is the test's end of the caller's media: packets it is given are
// what the caller's side sends, and what the caller receives comes out.
type probe struct {
	in  chan []byte
	out chan *rtp.Packet
	leg *voip.PacketLeg
}

func newProbe() *probe {
	p := &probe{in: make(chan []byte, 64), out: make(chan *rtp.Packet, 256)}
	opus := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}
	done := make(chan struct{})
	var once sync.Once
	p.leg = voip.NewPacketLeg("probe", []voip.PacketStream{{
		Kind: webrtc.RTPCodecTypeAudio, Codec: opus, SendPayloadType: 111,
		ReadRTP: func(b []byte) (int, error) {
			select {
			case pkt := <-p.in:
				return copy(b, pkt), nil
			case <-done:
				return 0, io.EOF
			}
		},
		WriteRTP: func(h *rtp.Header, payload []byte) error {
			select {
			case p.out <- &rtp.Packet{Header: *h, Payload: append([]byte(nil), payload...)}:
			default:
			}
			return nil
		},
		ID: "probe-audio", StreamID: "probe",
	}}, voip.WithCloser(func() error { once.Do(func() { close(done) }); return nil }))
	return p
}

func (p *probe) send(seq uint16, payload []byte) {
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 0xabc}, Payload: payload}
	b, _ := pkt.Marshal()
	p.in <- b
}

// TestBotCallsBot: one bot calls another's Jami account over a local DHT
// (both roles of every layer without jamid's quirks: connection request,
// ICE-TCP, TLS, the sip channel, INVITE/200/ACK, media ICE with two
// components, SDES-SRTP); the callee echoes, and what the caller sends
// comes back with its content; the caller hangs up and both legs end.
func TestBotCallsBot(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t)) // runs last: every goroutine of the call is gone
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	hub, err := dht.New(dht.Config{Listen4: "127.0.0.1:0", MaxPeerRequestsPerSec: -1}, zerolog.Nop())
	require.NoError(t, err)
	hub.Start(context.Background())
	defer func() { _ = hub.Close() }()

	callee := newBot(t, ctx, hub.Addr4(), true)
	caller := newBot(t, ctx, hub.Addr4(), false)
	ev := newEvents()
	l, err := caller.mgr.Place(callee.svc.AccountID().String(), false, ev)
	require.NoError(t, err)
	l.Start()

	var in *jamicall.Leg
	select {
	case in = <-callee.host.rang:
	case <-ctx.Done():
		t.Fatal("the callee was not rung")
	}
	require.Equal(t, caller.svc.AccountID().String(), in.Peer())
	require.Equal(t, leg.Inbound, in.Direction())
	for _, ch := range []chan struct{}{ev.answered} {
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatal("the caller's leg was not answered")
		}
	}
	m := ev.waitMedia(t, ctx)
	p := newProbe()
	fw := voip.NewForwarder("caller", zerolog.Nop())
	require.NoError(t, fw.Add(m))
	require.NoError(t, fw.Add(p.leg))

	// Packets go out until one comes back: its content is what was sent.
	got := map[byte]bool{}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for seq := uint16(1); len(got) < 10; seq++ {
		select {
		case <-tick.C:
			p.send(seq, []byte{0xf8, byte(seq), byte(seq >> 8), 0x55})
		case pkt := <-p.out:
			require.Len(t, pkt.Payload, 4)
			require.Equal(t, byte(0x55), pkt.Payload[3], "the payload came back as sent")
			got[pkt.Payload[1]] = true
		case <-ctx.Done():
			t.Fatalf("no media came back (%d packets so far)", len(got))
		}
	}

	l.Hangup(leg.Hangup, "test over")
	select {
	case e := <-ev.ended:
		require.Equal(t, leg.ByBot, e.By)
	case <-ctx.Done():
		t.Fatal("the caller's leg did not end")
	}
	select {
	case e := <-callee.host.ev.ended:
		require.Equal(t, leg.ByPeer, e.By, "the callee sees the caller's BYE")
		require.Equal(t, leg.Hangup, e.Reason)
	case <-ctx.Done():
		t.Fatal("the callee's leg did not end")
	}
	// The forwarder's readers stop once their legs are closed.
	require.NoError(t, p.leg.Close())
	require.NoError(t, fw.Close())
}
