package prosody_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/proc"
	"github.com/voipbot/voipbot/internal/testbed/prosody"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// start runs a server for the test. No prosody installed is a failure,
// not a skip: CI installs it.
func start(t *testing.T, opts prosody.Options) *prosody.Server {
	t.Helper()
	opts.Test = t
	srv, err := prosody.Start(ctxFor(t), opts)
	require.NoError(t, err)
	return srv
}

func TestStartRegisterLoginC2S(t *testing.T) {
	srv := start(t, prosody.Options{})
	ctx := ctxFor(t)
	require.Equal(t, "localhost", srv.Domain())
	require.True(t, strings.HasPrefix(srv.C2SAddr(), "127.0.0.1:"))
	require.True(t, strings.HasPrefix(srv.WebSocketURL(), "ws://127.0.0.1:"))
	require.True(t, strings.HasSuffix(srv.WebSocketURL(), "/xmpp-websocket"))

	node := prosody.QuickBloxNode(1001, 77)
	require.Equal(t, "1001-77", node)
	require.NoError(t, srv.Register(ctx, node, "pw1001"))

	tr, err := dialTCP(ctx, srv.C2SAddr(), srv.Domain())
	require.NoError(t, err)
	defer tr.close()
	s, mechs, err := login(tr, srv.Domain(), node, "pw1001", false)
	require.NoError(t, err)
	require.Contains(t, mechs, "SCRAM-SHA-1")
	require.NotContains(t, mechs, "PLAIN", "PLAIN is not offered over plain c2s by default")
	require.True(t, strings.HasPrefix(s.jid, "1001-77@localhost/"), s.jid)
	rtt, err := s.ping(srv.Domain())
	require.NoError(t, err, "mod_ping answers (the SDK reconnects after 3 missed pings)")
	t.Logf("logged in as %s over c2s; ping %s", s.jid, rtt)
}

func TestWrongPasswordFails(t *testing.T) {
	srv := start(t, prosody.Options{})
	ctx := ctxFor(t)
	require.NoError(t, srv.Register(ctx, "1002-77", "right"))
	tr, err := dialTCP(ctx, srv.C2SAddr(), srv.Domain())
	require.NoError(t, err)
	defer tr.close()
	_, _, err = login(tr, srv.Domain(), "1002-77", "wrong", false)
	require.ErrorContains(t, err, "not-authorized")

	// Register again sets the password.
	require.NoError(t, srv.Register(ctx, "1002-77", "wrong"))
	tr2, err := dialTCP(ctx, srv.C2SAddr(), srv.Domain())
	require.NoError(t, err)
	defer tr2.close()
	_, _, err = login(tr2, srv.Domain(), "1002-77", "wrong", false)
	require.NoError(t, err)
}

// TestWebSocketHeadlineToBareJID is the SDK's path: two users over
// WebSocket (PLAIN and SCRAM), one sends a headline message to the other's
// bare JID, which reaches the other's available resource with from set to
// the sender's full JID.
func TestWebSocketHeadlineToBareJID(t *testing.T) {
	srv := start(t, prosody.Options{})
	ctx := ctxFor(t)
	for _, n := range []string{"1001-77", "1002-77"} {
		require.NoError(t, srv.Register(ctx, n, "pw-"+n))
	}
	ta, err := dialWS(ctx, srv.WebSocketURL(), srv.Domain())
	require.NoError(t, err)
	defer ta.close()
	a, mechs, err := login(ta, srv.Domain(), "1001-77", "pw-1001-77", true)
	require.NoError(t, err)
	require.Contains(t, mechs, "PLAIN", "WebSocket counts as secure (consider_websocket_secure)")
	tb, err := dialWS(ctx, srv.WebSocketURL(), srv.Domain())
	require.NoError(t, err)
	defer tb.close()
	b, _, err := login(tb, srv.Domain(), "1002-77", "pw-1002-77", false)
	require.NoError(t, err)
	// b's presence has been processed once its own ping comes back: the
	// server handles a session's stanzas in order.
	_, err = b.ping(srv.Domain())
	require.NoError(t, err)

	require.NoError(t, a.t.send(`<message to="1002-77@localhost" type="headline" id="m1" xmlns="jabber:client"><extraParams xmlns="jabber:client"><sessionID>s1</sessionID><signalType>call</signalType><moduleIdentifier>WebRTCVideoChat</moduleIdentifier></extraParams></message>`))
	got, err := waitFor(b.t, func(e *element) bool { return e.XMLName.Local == "message" })
	require.NoError(t, err)
	require.Equal(t, "m1", got.attr("id"))
	require.Equal(t, "headline", got.attr("type"))
	require.Equal(t, a.jid, got.attr("from"))
	require.Contains(t, got.Inner, "<sessionID>s1</sessionID>")
	require.NotContains(t, got.Inner, "delay", "a live message carries no <delay> (the SDK drops those)")
}

func TestPlainOverC2SWhenAllowed(t *testing.T) {
	srv := start(t, prosody.Options{AllowPlainAuth: true, Domain: "qb.test"})
	ctx := ctxFor(t)
	require.NoError(t, srv.Register(ctx, "7-1", "pw"))
	tr, err := dialTCP(ctx, srv.C2SAddr(), srv.Domain())
	require.NoError(t, err)
	defer tr.close()
	s, mechs, err := login(tr, srv.Domain(), "7-1", "pw", true)
	require.NoError(t, err)
	require.Contains(t, mechs, "PLAIN")
	require.True(t, strings.HasPrefix(s.jid, "7-1@qb.test/"), s.jid)
}

// TestCloseLeavesNothing: Close ends the process and removes the
// temporary directory; Start in a given directory leaves it.
func TestCloseLeavesNothing(t *testing.T) {
	srv, err := prosody.Start(ctxFor(t), prosody.Options{})
	require.NoError(t, err)
	pid, dir := srv.Process().PID(), srv.Dir()
	st, err := proc.ReadStat(pid)
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	require.NoError(t, srv.Close(), "a second Close is harmless")
	require.False(t, srv.Process().Running())
	if now, err := proc.ReadStat(pid); err == nil {
		require.False(t, now.StartTime == st.StartTime && now.Alive(), "prosody still runs")
	}
	require.Error(t, syscall.Kill(pid, 0), "the process is reaped")
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, os.ErrNotExist)

	own := t.TempDir()
	srv, err = prosody.Start(ctxFor(t), prosody.Options{Dir: own})
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	_, err = os.Stat(filepath.Join(own, "prosody.cfg.lua"))
	require.NoError(t, err, "a directory of the caller's is left")
	log, err := os.ReadFile(srv.LogPath())
	require.NoError(t, err)
	require.Contains(t, string(log), "Prosody version 0.12")
}

func TestTwoServersAtOnce(t *testing.T) {
	a := start(t, prosody.Options{})
	b := start(t, prosody.Options{})
	require.NotEqual(t, a.C2SAddr(), b.C2SAddr())
	require.NotEqual(t, a.WebSocketURL(), b.WebSocketURL())
}
