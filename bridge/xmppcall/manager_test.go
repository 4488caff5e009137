package xmppcall

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/xmpp"
	"github.com/voipbot/voipbot/xmpp/qbsignal"
)

type sent struct {
	to  string
	sig qbsignal.Signal
}

type fakeNet struct{ out chan sent }

func (f *fakeNet) Send(_ context.Context, to jid.JID, sig qbsignal.Signal) error {
	f.out <- sent{to: to.String(), sig: sig}
	return nil
}

// fakeHost rings nothing: it records the legs and what happens to them.
type fakeHost struct {
	rung  chan *Leg
	ended chan leg.End
}

func (h *fakeHost) Ringing(l *Leg) leg.Events { h.rung <- l; return h }

func (h *fakeHost) ICEServers() []webrtc.ICEServer { return nil }

func (h *fakeHost) Answered(leg.Leg)                      {}
func (h *fakeHost) MediaReady(leg.Leg, voip.Leg)          {}
func (h *fakeHost) Preferred(leg.Leg, *voip.InboundTrack) {}
func (h *fakeHost) Connected(leg.Leg)                     {}
func (h *fakeHost) Receiving(leg.Leg, bool)               {}
func (h *fakeHost) PeerMuted(leg.Leg, bool, bool)         {}
func (h *fakeHost) DTMF(leg.Leg, rune, time.Duration)     {}
func (h *fakeHost) Ended(_ leg.Leg, e leg.End)            { h.ended <- e }
func (h *fakeHost) wait(t *testing.T) *Leg                { t.Helper(); return recv(t, h.rung) }
func (h *fakeHost) waitEnd(t *testing.T) leg.End          { t.Helper(); return recv(t, h.ended) }
func (f *fakeNet) wait(t *testing.T) sent                 { t.Helper(); return recv(t, f.out) }
func none[T any](t *testing.T, c chan T) {
	t.Helper()
	select {
	case v := <-c:
		t.Fatalf("unexpected %+v", v)
	default:
	}
}

func recv[T any](t *testing.T, c chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("nothing came")
		var zero T
		return zero
	}
}

func newTestManager(t *testing.T, allow ...string) (*Manager, *fakeNet, *fakeHost, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	host := &fakeHost{rung: make(chan *Leg, 4), ended: make(chan leg.End, 4)}
	cfg := Config{Enabled: true, Config: xmpp.Config{JID: "1000-77@localhost", Password: "x"}, Allow: allow}
	m, err := New(ctx, cfg, nil, host, reg, zerolog.Nop())
	require.NoError(t, err)
	net := &fakeNet{out: make(chan sent, 8)}
	m.UseNetwork(net)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { m.Shutdown(context.Background()); cancel() }) })
	return m, net, host, reg
}

func from(t *testing.T, s string) jid.JID {
	j, err := jid.Parse(s)
	require.NoError(t, err)
	return j
}

func callFrom(caller uint64, session string) qbsignal.Signal {
	return qbsignal.Signal{Type: qbsignal.TypeCall, SessionID: session, CallType: qbsignal.CallAudio, CallerID: caller, OpponentIDs: []uint64{1000}, SDP: "v=0\r\n"}
}

func count(m *Manager, t qbsignal.Type, result string) float64 {
	return testutil.ToFloat64(m.signals.WithLabelValues(string(t), result))
}

// Every signal is taken, or counted and ignored as the SDK would ignore
// it: a re-sent call makes no second leg, a callerID that is not the
// sender's and a signal of someone else's session are spoofs, a caller
// outside xmpp.allow is rejected, delayed and malformed ones are dropped.
func TestHandleMessage(t *testing.T) {
	m, net, host, _ := newTestManager(t, "1002", "1003-77@localhost")
	ctx := context.Background()
	alice := from(t, "1002-77@localhost/web")

	m.HandleMessage(ctx, xmpp.Message{From: alice, Signal: callFrom(1002, "s1")})
	l := host.wait(t)
	assert.Equal(t, "1002", l.Peer())
	assert.Equal(t, leg.Inbound, l.Direction())
	m.HandleMessage(ctx, xmpp.Message{From: alice, Signal: callFrom(1002, "s1")})
	assert.Equal(t, 1.0, count(m, qbsignal.TypeCall, resultDuplicate))
	none(t, host.rung)

	carol := from(t, "1003-77@localhost/web")
	m.HandleMessage(ctx, xmpp.Message{From: carol, Signal: callFrom(1002, "s2")})
	assert.Equal(t, 1.0, count(m, qbsignal.TypeCall, resultSpoofed))
	m.HandleMessage(ctx, xmpp.Message{From: carol, Signal: qbsignal.Signal{Type: qbsignal.TypeHangUp, SessionID: "s1", CallerID: 1002}})
	assert.Equal(t, 1.0, count(m, qbsignal.TypeHangUp, resultSpoofed))
	m.HandleMessage(ctx, xmpp.Message{From: from(t, "1002-78@localhost/web"), Signal: callFrom(1002, "s3")})
	assert.Equal(t, 2.0, count(m, qbsignal.TypeCall, resultSpoofed), "another application's user")
	none(t, host.rung)

	m.HandleMessage(ctx, xmpp.Message{From: from(t, "1009-77@localhost/web"), Signal: callFrom(1009, "s4")})
	assert.Equal(t, 1.0, count(m, qbsignal.TypeCall, resultNotAllowed))
	reject := net.wait(t)
	assert.Equal(t, "1009-77@localhost", reject.to)
	assert.Equal(t, qbsignal.TypeReject, reject.sig.Type)
	assert.Equal(t, "s4", reject.sig.SessionID)

	m.HandleMessage(ctx, xmpp.Message{From: alice, Err: qbsignal.ErrDelayed, Signal: callFrom(1002, "s5")})
	assert.Equal(t, 1.0, count(m, qbsignal.TypeCall, resultDelayed))
	m.HandleMessage(ctx, xmpp.Message{From: alice, Err: qbsignal.ErrMalformed})
	assert.Equal(t, 1.0, count(m, "unknown", resultMalformed))
	m.HandleMessage(ctx, xmpp.Message{From: alice, Signal: qbsignal.Signal{Type: qbsignal.TypeICECandidates, SessionID: "nope", CallerID: 1002}})
	assert.Equal(t, 1.0, count(m, qbsignal.TypeICECandidates, resultUnknownSession))
	none(t, host.rung)

	// The caller hangs up: the leg ends, and its re-sent call later makes
	// no new one.
	m.HandleMessage(ctx, xmpp.Message{From: alice, Signal: qbsignal.Signal{Type: qbsignal.TypeHangUp, SessionID: "s1", CallerID: 1002}})
	end := host.waitEnd(t)
	assert.Equal(t, leg.End{Reason: leg.Hangup, By: leg.ByPeer, Detail: "the QuickBlox user hung up"}, end)
	<-l.Done()
	m.HandleMessage(ctx, xmpp.Message{From: alice, Signal: callFrom(1002, "s1")})
	assert.Equal(t, 2.0, count(m, qbsignal.TypeCall, resultDuplicate))
	none(t, host.rung)
	none(t, net.out) // the peer hung up: nothing to tell it
}

// The bot turning a ringing call down rejects it; the reject repeats the
// session's ids, as the SDK checks them.
func TestDeclineRejects(t *testing.T) {
	m, net, host, _ := newTestManager(t, "*")
	m.HandleMessage(context.Background(), xmpp.Message{From: from(t, "1002-77@localhost/web"), Signal: callFrom(1002, "s1")})
	l := host.wait(t)
	l.Hangup(leg.Busy, "busy")
	got := net.wait(t)
	assert.Equal(t, qbsignal.TypeReject, got.sig.Type)
	assert.Equal(t, uint64(1002), got.sig.CallerID)
	assert.Equal(t, []uint64{1000}, got.sig.OpponentIDs)
	assert.Equal(t, qbsignal.CallAudio, got.sig.CallType)
	assert.Equal(t, leg.Busy, host.waitEnd(t).Reason)
}

func TestParsePeerAndConfig(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	id, err := m.ParsePeer("1002-77@localhost")
	require.NoError(t, err)
	assert.Equal(t, uint64(1002), id)
	_, err = m.ParsePeer("1002-78@localhost")
	assert.ErrorContains(t, err, "the bot's application 77")
	_, err = m.ParsePeer("bob")
	assert.Error(t, err)

	bad := Config{Enabled: true, Config: xmpp.Config{JID: "bot@localhost", Password: "x"}, Allow: []string{"x y"}, DefaultRoom: "room"}
	err = bad.Validate()
	require.Error(t, err)
	for _, key := range []string{"xmpp.jid", "xmpp.allow", "xmpp.default_room"} {
		assert.ErrorContains(t, err, key)
	}
	assert.NoError(t, (&Config{}).Validate(), "off: nothing to check")
}
