package xmpp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/voipbot/voipbot/internal/testbed/prosody"
	"github.com/voipbot/voipbot/xmpp/qbsignal"
)

// Real Prosody 0.12 (Debian's, as the QuickBlox test bed runs it: c2s on
// loopback without TLS). Not installed is a failure: CI installs it.

const appID = 77

func startProsody(t *testing.T) *prosody.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := prosody.Start(ctx, prosody.Options{Test: t})
	require.NoError(t, err)
	return srv
}

// account registers user id and gives the config to log it in at addr.
func account(t *testing.T, srv *prosody.Server, id uint64, addr string) Config {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node := prosody.QuickBloxNode(id, appID)
	pw := "pw-" + node
	require.NoError(t, srv.Register(ctx, node, pw))
	return Config{
		JID: srv.JID(node), Password: pw, Server: addr, AllowPlaintext: true,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 400 * time.Millisecond,
		PingInterval: time.Second, PingTimeout: time.Second,
	}
}

func newClient(t *testing.T, cfg Config, h Handler) *Client {
	t.Helper()
	c, err := New(cfg, h)
	require.NoError(t, err)
	return c
}

// Two clients log in; a call sent to the other's bare JID arrives decoded,
// and so does the accept back; a delayed and a broken signal arrive as
// such.
func TestProsodyCallBetweenClients(t *testing.T) {
	checkLeaks(t)
	srv := startProsody(t)
	ctx := testCtx(t, time.Minute)
	ra, rb := newRecorder(), newRecorder()
	a := newClient(t, account(t, srv, 1001, srv.C2SAddr()), ra)
	// b answers a call from its handler, as a leg may (Send from
	// HandleMessage does not deadlock: the handler is off the read loop).
	var b *Client
	sendErr := make(chan error, 1)
	b = newClient(t, account(t, srv, 1002, srv.C2SAddr()), HandlerFuncs{
		Message: func(ctx context.Context, m Message) {
			if m.Err == nil && m.Signal.Type == qbsignal.TypeCall {
				accept := m.Signal
				accept.Type, accept.UserInfo = qbsignal.TypeAccept, nil
				sendErr <- b.Send(ctx, m.From, accept) // a full JID is sent to as bare
			}
			rb.HandleMessage(ctx, m)
		},
		State: rb.HandleState,
	})
	run(t, ctx, a)
	run(t, ctx, b)
	ra.waitState(t, true, 10*time.Second)
	rb.waitState(t, true, 10*time.Second)
	require.True(t, a.Connected())
	require.Equal(t, "1001-77@localhost", a.JID().Bare().String())
	require.NotEmpty(t, a.JID().Resourcepart(), "the server bound a resource")
	require.NoError(t, a.LastError())

	bob := jid.MustParse(qbsignal.UserJID(1002, appID, srv.Domain()))
	call := everySignal()
	require.NoError(t, a.Send(ctx, bob, call))
	m := rb.waitMessage(t, 10*time.Second)
	require.NoError(t, m.Err)
	require.Equal(t, call, m.Signal)
	require.Equal(t, stanza.HeadlineMessage, m.Type)
	require.Equal(t, a.JID().String(), m.From.String(), "from: the sender's full JID")
	require.Equal(t, "1002-77@localhost", m.To.Bare().String())
	require.Regexp(t, "^[0-9a-f]{24}$", m.ID)
	peer, err := qbsignal.UserID(m.From.String())
	require.NoError(t, err)
	require.Equal(t, uint64(1001), peer)

	require.NoError(t, <-sendErr)
	accept := call
	accept.Type, accept.UserInfo = qbsignal.TypeAccept, nil
	back := ra.waitMessage(t, 10*time.Second)
	require.NoError(t, back.Err)
	require.Equal(t, accept, back.Signal)

	// Raw stanzas: a replayed one (delay) and a broken one.
	hangup, err := qbsignal.Message(bob.String(), "", qbsignal.Signal{Type: qbsignal.TypeHangUp, SessionID: call.SessionID, CallerID: 1001})
	require.NoError(t, err)
	delayed := strings.Replace(string(hangup), "</message>", `<delay xmlns="urn:xmpp:delay" stamp="2026-11-30T10:00:00Z"/></message>`, 1)
	broken := strings.Replace(string(hangup), "<callerID>1001<", "<callerID>10o1<", 1)
	for _, raw := range []string{delayed, broken} {
		require.NoError(t, a.SendElement(ctx, decoderOf(raw)))
	}
	got := rb.waitMessage(t, 10*time.Second)
	require.ErrorIs(t, got.Err, qbsignal.ErrDelayed)
	require.NotErrorIs(t, got.Err, qbsignal.ErrMalformed)
	got = rb.waitMessage(t, 10*time.Second)
	require.ErrorIs(t, got.Err, qbsignal.ErrBadID)
	require.ErrorIs(t, got.Err, qbsignal.ErrMalformed)
	var fe *qbsignal.FieldError
	require.ErrorAs(t, got.Err, &fe)
	require.Equal(t, "callerID", fe.Field)
}

// A signal that cannot be delivered comes back as an error message with
// the id it was sent with: here to another domain (no s2s). (A headline
// to an offline or unknown user of the bot's own server is dropped
// without a word, as RFC 6121 8.5 lets a server do: no error then.)
func TestProsodyBounce(t *testing.T) {
	checkLeaks(t)
	srv := startProsody(t)
	ctx := testCtx(t, time.Minute)
	ra := newRecorder()
	a := newClient(t, account(t, srv, 1001, srv.C2SAddr()), ra)
	run(t, ctx, a)
	ra.waitState(t, true, 10*time.Second)

	raw, err := qbsignal.Message(qbsignal.UserJID(1003, appID, "elsewhere.example"), "6b1118aac222be12ba0000aa", everySignal())
	require.NoError(t, err)
	require.NoError(t, a.SendElement(ctx, decoderOf(string(raw))))
	m := ra.waitMessage(t, 10*time.Second)
	require.Equal(t, stanza.ErrorMessage, m.Type)
	require.Equal(t, "6b1118aac222be12ba0000aa", m.ID)
	require.ErrorIs(t, m.Err, ErrBounced)
	var be *BounceError
	require.ErrorAs(t, m.Err, &be)
	t.Logf("bounce: %v", m.Err)
	require.NotEmpty(t, be.Stanza.Condition)
}

// A cut connection is noticed at once and a new session made; signals
// flow on it. Then the server goes away: the state drops, and the client
// keeps trying with backoff.
func TestProsodyReconnectAfterCut(t *testing.T) {
	checkLeaks(t)
	srv := startProsody(t)
	p := startProxy(t, srv.C2SAddr())
	ctx := testCtx(t, time.Minute)
	ra, rb := newRecorder(), newRecorder()
	a := newClient(t, account(t, srv, 1001, p.Addr()), ra)
	b := newClient(t, account(t, srv, 1002, srv.C2SAddr()), rb)
	run(t, ctx, a)
	run(t, ctx, b)
	ra.waitState(t, true, 10*time.Second)
	rb.waitState(t, true, 10*time.Second)
	first := a.JID()

	p.Cut()
	ra.waitState(t, false, 5*time.Second)
	require.False(t, a.Connected())
	require.Error(t, a.LastError())
	ra.waitState(t, true, 5*time.Second)
	require.True(t, a.Connected())
	t.Logf("reconnected: %s, then %s", first, a.JID())

	bob := jid.MustParse(qbsignal.UserJID(1002, appID, srv.Domain()))
	require.NoError(t, a.Send(ctx, bob, everySignal()))
	require.NoError(t, rb.waitMessage(t, 10*time.Second).Err)
	alice := jid.MustParse(qbsignal.UserJID(1001, appID, srv.Domain()))
	require.NoError(t, b.Send(ctx, alice, everySignal()))
	require.NoError(t, ra.waitMessage(t, 10*time.Second).Err, "the new session is available: Prosody delivers to it")

	// The server shuts down: both see it.
	require.NoError(t, srv.Close())
	ra.waitState(t, false, 10*time.Second)
	rb.waitState(t, false, 10*time.Second)
	require.ErrorIs(t, b.Send(ctx, alice, everySignal()), ErrNotConnected)
	for range 3 {
		select {
		case <-p.accepted: // a tries again (the proxy's target refuses)
		case <-time.After(10 * time.Second):
			require.Fail(t, "no new try")
		}
	}
}

// A link that goes dead without closing (a frozen proxy) is found by the
// client's pings and replaced.
func TestProsodyDeadLinkFoundByPing(t *testing.T) {
	checkLeaks(t)
	srv := startProsody(t)
	p := startProxy(t, srv.C2SAddr())
	ctx := testCtx(t, time.Minute)
	ra := newRecorder()
	cfg := account(t, srv, 1001, p.Addr())
	cfg.PingInterval, cfg.PingTimeout = 300*time.Millisecond, 500*time.Millisecond
	a := newClient(t, cfg, ra)
	run(t, ctx, a)
	ra.waitState(t, true, 10*time.Second)

	p.Freeze()
	frozen := time.Now()
	ra.waitState(t, false, 5*time.Second)
	lost := time.Since(frozen)
	require.ErrorContains(t, a.LastError(), "pinging the server")
	require.Less(t, lost, cfg.PingInterval+cfg.PingTimeout+time.Second, "found within a ping")
	ra.waitState(t, true, 5*time.Second)
	t.Logf("dead link found after %s", lost)
}

// A wrong password is a clear error, retried with growing waits (not in a
// loop), and never a session.
func TestProsodyWrongPassword(t *testing.T) {
	checkLeaks(t)
	srv := startProsody(t)
	p := startProxy(t, srv.C2SAddr())
	ctx := testCtx(t, time.Minute)
	ra := newRecorder()
	cfg := account(t, srv, 1001, p.Addr())
	cfg.Password = "wrong"
	cfg.ReconnectMin, cfg.ReconnectMax = 100*time.Millisecond, 800*time.Millisecond
	a := newClient(t, cfg, ra)
	stop := run(t, ctx, a)

	// The first try finds no STARTTLS (one connection) and logs in in
	// plaintext (a second); later tries go plaintext at once.
	var at []time.Time
	for range 6 {
		select {
		case ts := <-p.accepted:
			at = append(at, ts)
		case <-time.After(10 * time.Second):
			require.Fail(t, "no new try")
		}
	}
	stop()
	err := a.LastError()
	require.ErrorIs(t, err, ErrAuthFailed)
	require.ErrorContains(t, err, "doesn't match", "Prosody's text of not-authorized")
	require.ErrorContains(t, err, "1001-77@localhost")
	require.NotContains(t, err.Error(), "wrong", "no password in the error")
	require.Empty(t, ra.states, "never connected")
	gaps := []time.Duration{}
	for i := 2; i < len(at); i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]))
	}
	t.Logf("gaps between tries: %v", gaps)
	// Waits of at least 100 ms, 100 ms (half of 200), 200, 400 ms.
	for i, least := range []time.Duration{100, 100, 200, 400} {
		require.GreaterOrEqual(t, gaps[i], least*time.Millisecond, "try %d", i+2)
	}
}

// Without AllowPlaintext a server that offers no STARTTLS is refused
// before any credential is sent.
func TestProsodyPlaintextRefused(t *testing.T) {
	checkLeaks(t)
	srv := startProsody(t)
	ctx := testCtx(t, time.Minute)
	ra := newRecorder()
	cfg := account(t, srv, 1001, "localhost:"+strings.TrimPrefix(srv.C2SAddr(), "127.0.0.1:"))
	cfg.AllowPlaintext = false
	a := newClient(t, cfg, ra)
	_, err := a.connect(ctx)
	require.ErrorIs(t, err, ErrPlaintextRefused)
	require.ErrorContains(t, err, "offers no STARTTLS")
	require.False(t, errors.Is(err, ErrAuthFailed))
}
