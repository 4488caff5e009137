package qbclient_test

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/proc"
	"github.com/voipbot/voipbot/internal/testbed/prosody"
	"github.com/voipbot/voipbot/internal/testbed/qbclient"
)

// Two SDK users of application 77, each in a browser of its own with a
// tone of its own (never 440 Hz: the bot's), through one Prosody.
const (
	appID             = 77
	aliceID, bobID    = 1001, 1002
	aliceHz, bobHz    = 660.0, 880.0
	toneTolerance     = 15.0
	clientStartBudget = 10 * time.Minute // npm ci and npm pack on a cold machine
)

var (
	xmpp       *prosody.Server
	alice, bob *qbclient.Client
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), clientStartBudget)
	defer cancel()
	var err error
	// No prosody, chromium, node or npm is a failure, not a skip: CI
	// installs them.
	if xmpp, err = prosody.Start(ctx, prosody.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer xmpp.Close()
	start := time.Now()
	if alice, err = launch(ctx, aliceID, aliceHz); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer alice.Close()
	if bob, err = launch(ctx, bobID, bobHz); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer bob.Close()
	fmt.Fprintf(os.Stderr, "QuickBlox SDK %s (build %s) in Chromium %s: two users logged in in %s\n",
		alice.SDKVersion, alice.SDKBuild, alice.BrowserVersion, time.Since(start).Round(time.Millisecond))
	code := m.Run()
	for _, c := range []*qbclient.Client{alice, bob} {
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: closing a client:", err)
			code = 1
		}
	}
	return code
}

// launch registers user id and logs it in, in a browser of its own that
// plays a tone of hz.
func launch(ctx context.Context, id uint64, hz float64) (*qbclient.Client, error) {
	password := "pw" + strconv.FormatUint(id, 10)
	if err := xmpp.Register(ctx, prosody.QuickBloxNode(id, appID), password); err != nil {
		return nil, err
	}
	return qbclient.Launch(ctx, qbclient.Options{
		WebSocketURL: xmpp.WebSocketURL(), Domain: xmpp.Domain(), AppID: appID,
		UserID: id, Password: password, ToneHz: hz, Video: true,
	})
}

func ctxFor(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
	tb.Cleanup(cancel)
	return ctx
}

// setIncoming sets the callee's policy for the test.
func setIncoming(tb testing.TB, c *qbclient.Client, policy qbclient.IncomingPolicy) {
	tb.Helper()
	require.NoError(tb, c.SetIncoming(ctxFor(tb), policy, nil))
	tb.Cleanup(func() { _ = c.SetIncoming(context.Background(), qbclient.IncomingHold, nil) })
}

// connectedCall has caller call callee (IncomingAccept) and waits until
// both are connected; the sessions are hung up, if still open, at the end
// of the test, which waits until both have closed (a live session makes
// the SDK reject the next call as busy).
func connectedCall(tb testing.TB, caller, callee *qbclient.Client, video bool) (out, in *qbclient.Session) {
	tb.Helper()
	ctx := ctxFor(tb)
	setIncoming(tb, callee, qbclient.IncomingAccept)
	out, err := caller.Call(ctx, []uint64{callee.UserID()}, video, map[string]string{"name": caller.Name()})
	require.NoError(tb, err)
	in, err = callee.WaitIncoming(ctx)
	require.NoError(tb, err)
	tb.Cleanup(func() { endCall(tb, out, in) })
	require.Equal(tb, out.ID(), in.ID())
	_, err = out.WaitState(ctx, qbclient.StateConnected)
	require.NoError(tb, err)
	_, err = in.WaitState(ctx, qbclient.StateConnected)
	require.NoError(tb, err)
	return out, in
}

// endCall hangs up the first session still open (the peer's closes on its
// hangUp) and waits until every session has closed; one that does not
// within 10 s is hung up too.
func endCall(tb testing.TB, sessions ...*qbclient.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range sessions {
		if _, closed := s.Reached(qbclient.StateClosed); !closed {
			_ = s.Hangup(ctx, nil)
			break
		}
	}
	for _, s := range sessions {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := s.WaitState(wctx, qbclient.StateClosed)
		wcancel()
		if err != nil {
			_ = s.Hangup(ctx, nil)
			if _, err = s.WaitState(ctx, qbclient.StateClosed); err != nil {
				tb.Errorf("session of %s did not close: %v", s.Client().Name(), err)
			}
		}
	}
}

// TestAudioCallBothHearTheOther: alice calls bob, who answers at once;
// each hears the other's tone, not its own; alice's hangUp ends both.
func TestAudioCallBothHearTheOther(t *testing.T) {
	ctx := ctxFor(t)
	out, in := connectedCall(t, alice, bob, false)
	require.Equal(t, qbclient.Outgoing, out.Direction())
	require.Equal(t, qbclient.Incoming, in.Direction())
	require.Equal(t, qbclient.CallAudio, in.CallType())
	require.Equal(t, uint64(aliceID), in.InitiatorID())
	require.Equal(t, []uint64{bobID}, in.OpponentIDs())
	require.Equal(t, alice.Name(), in.CallInfo()["name"], "the call's userInfo reaches onCallListener")

	heard, err := out.WaitRemoteTone(ctx, bobHz, toneTolerance)
	require.NoError(t, err, "alice hears bob")
	t.Logf("alice hears %s", heard.Dominant)
	heard, err = in.WaitRemoteTone(ctx, aliceHz, toneTolerance)
	require.NoError(t, err, "bob hears alice")
	t.Logf("bob hears %s", heard.Dominant)
	_, last, err := in.WaitMedia(ctx, false)
	require.NoError(t, err)
	require.Equal(t, "audio/opus", last.Audio.InboundCodec)
	require.Zero(t, last.Video.PacketsReceived)

	times := out.Times()
	t.Logf("alice: placed→calling %s, →accepted %s, →connected %s; bob: ringing→accepted %s, →connected %s",
		times.Calling.Sub(times.Placed), times.Accepted.Sub(times.Placed), times.Setup(),
		in.Times().Accepted.Sub(in.Times().Ringing), in.Times().Setup())

	require.NoError(t, out.Hangup(ctx, map[string]string{"reason": "done"}))
	stop, err := in.WaitEvent(ctx, qbclient.EventStop)
	require.NoError(t, err, "bob hears of the hangUp")
	require.Equal(t, uint64(aliceID), stop.UserID)
	require.Equal(t, "done", stop.UserInfo["reason"])
	_, err = in.WaitState(ctx, qbclient.StateClosed)
	require.NoError(t, err)
	_, err = out.WaitState(ctx, qbclient.StateClosed)
	require.NoError(t, err)

	// The signals on the wire, as the bot will see them.
	call, err := bob.WaitSignal(ctx, qbclient.In, "call", in.ID())
	require.NoError(t, err)
	require.Equal(t, "headline", call.Type)
	require.True(t, strings.HasPrefix(call.From, alice.BareJID()+"/"), call.From)
	require.Equal(t, strconv.Itoa(aliceID), call.CallerID)
	require.Equal(t, []string{strconv.Itoa(bobID)}, call.OpponentIDs)
	require.Equal(t, "2", call.CallType)
	require.Contains(t, call.SDP, "m=audio")
	require.False(t, call.Delay)
	accept, err := bob.WaitSignal(ctx, qbclient.Out, "accept", in.ID())
	require.NoError(t, err)
	require.Equal(t, alice.BareJID(), accept.To, "signals go to the bare JID")
	hangup, err := alice.WaitSignal(ctx, qbclient.Out, "hangUp", out.ID())
	require.NoError(t, err)
	require.Equal(t, "done", hangup.UserInfo["reason"])
}

// TestVideoCallBothWays: bob calls alice with video; each decodes the
// other's camera and hears the other's tone; bob's hangUp ends both.
func TestVideoCallBothWays(t *testing.T) {
	ctx := ctxFor(t)
	out, in := connectedCall(t, bob, alice, true)
	require.Equal(t, qbclient.CallVideo, in.CallType())
	_, last, err := out.WaitMedia(ctx, true)
	require.NoError(t, err, "bob receives alice's audio and video")
	t.Logf("bob receives %s %dx%d, %d frames decoded", last.Video.InboundCodec, last.Video.FrameWidth, last.Video.FrameHeight, last.Video.FramesDecoded)
	_, last, err = in.WaitMedia(ctx, true)
	require.NoError(t, err, "alice receives bob's audio and video")
	require.Equal(t, "video/VP8", last.Video.InboundCodec, "the SDK puts VP8 first")
	_, err = out.WaitRemoteTone(ctx, aliceHz, toneTolerance)
	require.NoError(t, err)
	_, err = in.WaitRemoteTone(ctx, bobHz, toneTolerance)
	require.NoError(t, err)

	require.NoError(t, out.Hangup(ctx, nil))
	_, err = in.WaitEvent(ctx, qbclient.EventStop)
	require.NoError(t, err)
	_, err = in.WaitState(ctx, qbclient.StateClosed)
	require.NoError(t, err)
	_, err = out.WaitState(ctx, qbclient.StateClosed)
	require.NoError(t, err)
}

// TestRejectEndsTheCallersSession: bob holds the call, then rejects it.
func TestRejectEndsTheCallersSession(t *testing.T) {
	ctx := ctxFor(t)
	out, err := alice.Call(ctx, []uint64{bobID}, false, nil)
	require.NoError(t, err)
	in, err := bob.WaitIncoming(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { endCall(t, out, in) })
	_, err = in.WaitState(ctx, qbclient.StateRinging)
	require.NoError(t, err)
	require.NoError(t, in.Reject(ctx, map[string]string{"why": "busy"}))
	rej, err := out.WaitEvent(ctx, qbclient.EventReject)
	require.NoError(t, err)
	require.Equal(t, uint64(bobID), rej.UserID)
	require.Equal(t, "busy", rej.UserInfo["why"])
	_, err = out.WaitState(ctx, qbclient.StateClosed)
	require.NoError(t, err, "the reject closes the caller's session")
	_, err = in.WaitState(ctx, qbclient.StateClosed)
	require.NoError(t, err)
	_, connected := out.Reached(qbclient.StateConnected)
	require.False(t, connected)
}

// TestAutoReject: the IncomingReject policy ends the caller's session too.
func TestAutoReject(t *testing.T) {
	ctx := ctxFor(t)
	setIncoming(t, bob, qbclient.IncomingReject)
	out, err := alice.Call(ctx, []uint64{bobID}, false, nil)
	require.NoError(t, err)
	in, err := bob.WaitIncoming(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { endCall(t, out, in) })
	_, err = out.WaitEvent(ctx, qbclient.EventReject)
	require.NoError(t, err)
	_, err = out.WaitState(ctx, qbclient.StateClosed)
	require.NoError(t, err)
}

// TestUpdateMuteAndRawStanza: the SDK's update reaches the peer with its
// fields at the top level; mute silences the tone the peer hears; a
// hand-built update sent raw reaches the SDK's listener.
func TestUpdateMuteAndRawStanza(t *testing.T) {
	ctx := ctxFor(t)
	out, in := connectedCall(t, alice, bob, false)

	require.NoError(t, out.Update(ctx, map[string]any{"mood": "fine"}))
	up, err := in.WaitUpdate(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, uint64(aliceID), up.UserID)
	require.Equal(t, "fine", up.Extension["mood"])
	require.Empty(t, up.UserInfo, "the listener reads only userInfo, which update does not send")
	sig, err := bob.WaitSignal(ctx, qbclient.In, "update", in.ID())
	require.NoError(t, err)
	require.Equal(t, "fine", sig.Fields["mood"])
	require.Nil(t, sig.UserInfo)

	_, err = in.WaitRemoteTone(ctx, aliceHz, toneTolerance)
	require.NoError(t, err)
	require.NoError(t, out.Mute(ctx, true))
	_, err = in.WaitRemoteQuiet(ctx)
	require.NoError(t, err, "alice muted, bob hears nothing")
	require.NoError(t, out.Unmute(ctx, true))
	_, err = in.WaitRemoteTone(ctx, aliceHz, toneTolerance)
	require.NoError(t, err, "alice unmuted, bob hears her again")

	// bob's page sends alice an update built by hand, as the bot will.
	raw := fmt.Sprintf(`<message xmlns="jabber:client" to="%s" type="headline" id="raw-update-1">`+
		`<extraParams xmlns="jabber:client"><moduleIdentifier>WebRTCVideoChat</moduleIdentifier><signalType>update</signalType>`+
		`<sessionID>%s</sessionID><callType>2</callType><callerID>%d</callerID><opponentsIDs><opponentID>%d</opponentID></opponentsIDs>`+
		`<userInfo><note>by hand</note></userInfo></extraParams></message>`, alice.BareJID(), out.ID(), aliceID, bobID)
	require.NoError(t, bob.SendRaw(ctx, raw))
	up, err = out.WaitUpdate(ctx, func(e qbclient.Event) bool { return e.UserInfo["note"] == "by hand" })
	require.NoError(t, err)
	require.Equal(t, uint64(bobID), up.UserID)
	_, err = bob.WaitStanza(ctx, func(s qbclient.Stanza) bool { return s.Dir == qbclient.Out && strings.Contains(s.XML, "raw-update-1") })
	require.NoError(t, err, "the raw stanza is in the sender's log")
}

// TestNotAnswerAndClose: a third client, with the SDK's timers made
// short, calls a user nobody is logged in as: the call is re-sent every
// second (same session, new message ids) until the answer time is up, then
// the notAnswer listener fires and the session closes. Its browser is gone
// after Close.
func TestNotAnswerAndClose(t *testing.T) {
	ctx := ctxFor(t)
	require.NoError(t, xmpp.Register(ctx, prosody.QuickBloxNode(1003, appID), "pw1003"))
	c, err := qbclient.Launch(ctx, qbclient.Options{
		WebSocketURL: xmpp.WebSocketURL(), AppID: appID, UserID: 1003, Password: "pw1003",
		WebRTC: map[string]any{"answerTimeInterval": 4, "dialingTimeInterval": 1},
	})
	require.NoError(t, err)
	defer c.Close()
	require.True(t, strings.HasPrefix(c.JID, "1003-77@localhost/"), c.JID)
	require.Equal(t, "1003-77@localhost", c.BareJID())

	out, err := c.Call(ctx, []uint64{1009}, false, nil)
	require.NoError(t, err)
	na, err := out.WaitEvent(ctx, qbclient.EventNotAnswer)
	require.NoError(t, err)
	require.Equal(t, uint64(1009), na.UserID)
	_, err = out.WaitState(ctx, qbclient.StateClosed)
	require.NoError(t, err)
	// After 4 re-sends, 1 s apart, of the first call (made after a ping
	// of the server).
	calling, _ := out.Reached(qbclient.StateCalling)
	t.Logf("no answer %s after the call", na.At.Sub(calling))
	took := na.At.Sub(calling)
	require.True(t, took >= 3500*time.Millisecond && took < 8*time.Second, "no answer after answerTimeInterval, not %s", took)
	ids := map[string]bool{}
	for _, sig := range c.Signals(qbclient.Out) {
		if sig.SignalType == "call" {
			require.Equal(t, out.ID(), sig.SessionID)
			require.Equal(t, "1009-77@localhost", sig.To)
			ids[sig.ID] = true
		}
	}
	require.GreaterOrEqual(t, len(ids), 3, "the call is re-sent, each time with a new message id")
	for _, sig := range c.Signals(qbclient.Out) {
		require.NotEqual(t, "hangUp", sig.SignalType, "no hangUp after no answer")
	}

	started := map[int]uint64{}
	for _, pid := range c.PIDs() {
		if st, err := proc.ReadStat(pid); err == nil {
			started[pid] = st.StartTime
		}
	}
	require.Greater(t, len(started), 2, "the driver and its browser's processes")
	require.Equal(t, 3, goroutinesIn("qbclient.(*driver).reaped"), "a reaper per client, this one's too")
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "a second Close is harmless")
	for pid, start := range started {
		st, err := proc.ReadStat(pid)
		require.False(t, err == nil && st.StartTime == start && st.Alive(), "pid %d still runs", pid)
	}
	<-c.Done()
	_, err = c.Call(ctx, []uint64{aliceID}, false, nil)
	require.Error(t, err, "a closed client calls nobody")
	// Close waited for the driver to be reaped: what runs for a client
	// (its reaper, the process's waiter) is that of alice and bob only.
	require.Equal(t, 2, goroutinesIn("qbclient.(*driver).reaped"), "a reaper per client left")
	require.Equal(t, 3, goroutinesIn("proc.Start.func1"), "a process waiter for alice's, bob's and prosody's")
}

// goroutinesIn counts the goroutines whose stack has a function named so.
func goroutinesIn(fn string) int {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	n := 0
	for g := range strings.SplitSeq(b.String(), "\n\n") {
		if strings.Contains(g, fn+"(") {
			n++
		}
	}
	return n
}

// TestHeldCallAcceptedByTheTest: bob's page leaves the call ringing; the
// re-sent call (every 5 s) makes no second incoming session; the test
// accepts it; bob's hangUp ends alice's session.
func TestHeldCallAcceptedByTheTest(t *testing.T) {
	ctx := ctxFor(t)
	out, err := alice.Call(ctx, []uint64{bobID}, false, map[string]string{"name": "Alice"})
	require.NoError(t, err)
	in, err := bob.WaitIncoming(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { endCall(t, in, out) })
	require.Equal(t, "Alice", in.CallInfo()["name"])
	// The second copy of the call, 5 s after the first.
	_, err = bob.WaitStanza(ctx, func(s qbclient.Stanza) bool {
		sig, ok := s.Signal()
		return ok && s.Dir == qbclient.In && sig.SignalType == "call" && sig.SessionID == in.ID() && len(callIDs(bob, in.ID())) >= 2
	})
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = bob.WaitIncoming(short)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a re-sent call is no new session")

	require.NoError(t, in.Accept(ctx, map[string]string{"name": "Bob"}))
	acc, err := out.WaitEvent(ctx, qbclient.EventAccept)
	require.NoError(t, err)
	require.Equal(t, "Bob", acc.UserInfo["name"])
	_, err = out.WaitState(ctx, qbclient.StateConnected)
	require.NoError(t, err)
	_, err = out.WaitRemoteTone(ctx, bobHz, toneTolerance)
	require.NoError(t, err)

	require.NoError(t, in.Hangup(ctx, nil))
	_, err = out.WaitEvent(ctx, qbclient.EventStop)
	require.NoError(t, err)
	_, err = out.WaitState(ctx, qbclient.StateClosed)
	require.NoError(t, err)
}

// callIDs are the message ids of the call signals c received for a
// session.
func callIDs(c *qbclient.Client, session string) map[string]bool {
	ids := map[string]bool{}
	for _, sig := range c.Signals(qbclient.In) {
		if sig.SignalType == "call" && sig.SessionID == session {
			ids[sig.ID] = true
		}
	}
	return ids
}

// TestHandBuiltCall: a call signal built by hand, as the bot will send it
// (no platform, a session id of its own), reaches the SDK's onCallListener
// with its userInfo; the same with a <delay> element (as an offline replay
// has) reaches the page but the SDK ignores it. Session ids are new at each
// run: the SDK keeps every session, closed ones too, and a call with a
// known id makes no new one.
func TestHandBuiltCall(t *testing.T) {
	ctx := ctxFor(t)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	delayedID, plainID := "raw-delayed-"+run, "raw-plain-"+run
	call := func(session, extra string) string {
		return fmt.Sprintf(`<message xmlns="jabber:client" to="%s" type="headline" id="%s-msg">%s`+
			`<extraParams xmlns="jabber:client"><moduleIdentifier>WebRTCVideoChat</moduleIdentifier><signalType>call</signalType>`+
			`<sessionID>%s</sessionID><callType>2</callType><callerID>%d</callerID><opponentsIDs><opponentID>%d</opponentID></opponentsIDs>`+
			`<userInfo><name>Hand</name><bandwidth>0</bandwidth></userInfo><sdp>v=0&#10;o=- 1 2 IN IP4 127.0.0.1&#10;s=-&#10;t=0 0&#10;</sdp>`+
			`</extraParams></message>`, alice.BareJID(), session, extra, session, bobID, aliceID)
	}
	require.NoError(t, bob.SendRaw(ctx, call(delayedID, `<delay xmlns="urn:xmpp:delay" stamp="2024-01-01T00:00:00Z"/>`)))
	require.NoError(t, bob.SendRaw(ctx, call(plainID, "")))
	in, err := alice.WaitIncoming(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { endCall(t, in) })
	require.Equal(t, plainID, in.ID(), "the delayed call, sent first, made no session")
	require.Equal(t, uint64(bobID), in.InitiatorID())
	require.Equal(t, "Hand", in.CallInfo()["name"])
	require.Equal(t, "0", in.CallInfo()["bandwidth"], "every userInfo value is a string")
	delayed, err := alice.WaitSignal(ctx, qbclient.In, "call", delayedID)
	require.NoError(t, err, "the delayed call did reach the page")
	require.True(t, delayed.Delay)
	require.NoError(t, in.Reject(ctx, nil))
	_, err = in.WaitState(ctx, qbclient.StateClosed)
	require.NoError(t, err)
	rej, err := alice.WaitSignal(ctx, qbclient.Out, "reject", plainID)
	require.NoError(t, err)
	require.Equal(t, bob.BareJID(), rej.To, "the reply goes to <callerID>-<app id>@<domain>")
}
