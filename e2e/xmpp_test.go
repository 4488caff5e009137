package e2e

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/jsclient"
	"github.com/voipbot/voipbot/internal/testbed/qbclient"
)

// The tests in this file have the real QuickBlox JS SDK (2.23.0, in
// Chromium: internal/testbed/qbclient) call the bot and be called by it
// over a real Prosody (xmpp_bed_test.go), alone and bridged to
// matrix-js-sdk users.

var qbSetupCalls = flag.Int("qb-setup-calls", 10, "calls of each kind BenchmarkQuickBloxSetup makes (at least; b.N if greater)")

// qbIDString is a QuickBlox user id as signals and routes write it.
func qbIDString(id uint64) string { return strconv.FormatUint(id, 10) }

// TestQuickBloxCallsBot: an SDK user calls the bot, whose default source
// is its 440 Hz tone, with an audio call and then a video call: each time
// the SDK gets the bot's accept (the session's ids repeated, the bot's
// name in its userInfo), connects, and hears 440 Hz; its hangUp ends the
// bot's leg. Then a Matrix user calls the bot in a room routed to the SDK
// user, whose SDK rejects: the Matrix call ends, never answered.
func TestQuickBloxCallsBot(t *testing.T) {
	xb := startXMPPBot(t, "tone", "")
	qb := newQBUser(t, toneQB)

	for i, video := range []bool{false, true} {
		ctx := jsCtx(t)
		s, err := qb.Call(ctx, []uint64{xb.id}, video, map[string]string{"name": "Caller"})
		require.NoError(t, err)
		t.Cleanup(func() { endQB(t, s) })
		acc, err := s.WaitEvent(ctx, qbclient.EventAccept)
		require.NoError(t, err, "the bot accepts")
		assert.Equal(t, xb.id, acc.UserID)
		assert.Equal(t, "voipbot", acc.UserInfo["name"], "xmpp.name is the userInfo name")
		sig, err := qb.WaitSignal(ctx, qbclient.In, "accept", s.ID())
		require.NoError(t, err)
		assert.Truef(t, strings.HasPrefix(sig.From, xb.jid()+"/"), "the accept comes from the bot's JID, not %s", sig.From)
		assert.Equal(t, "headline", sig.Type)
		assert.Equal(t, qbIDString(qb.UserID()), sig.CallerID, "the accept repeats the session's callerID")
		assert.Equal(t, []string{qbIDString(xb.id)}, sig.OpponentIDs)
		wantType := "2"
		if video {
			wantType = "1"
			assert.Contains(t, sig.SDP, "m=video")
		}
		assert.Equal(t, wantType, sig.CallType)
		assert.Contains(t, sig.SDP, "m=audio")
		assert.Contains(t, sig.SDP, "a=candidate:", "the bot's host candidates are in its SDP")

		waitQBConnected(t, s)
		requireQBHears(t, s, 440)
		waitMetric(t, xb.bot, `voipbot_bridges 1`)
		waitMetric(t, xb.bot, `voipbot_bridge_legs{kind="xmpp",state="connected"} 1`)
		if st, err := s.Stats(ctx); err == nil {
			t.Logf("%s call: audio in %d pkts (%s), video in %d pkts %d frames (%s)",
				callTypeName(s.CallType()), st.Audio.PacketsReceived, st.Audio.InboundCodec, st.Video.PacketsReceived, st.Video.FramesDecoded, st.Video.InboundCodec)
		}

		require.NoError(t, s.Hangup(ctx, nil))
		waitQBClosed(t, s)
		waitMetric(t, xb.bot, `voipbot_bridges 0`)
		waitSignals(t, xb.bot, "ok", "hangUp", float64(i+1))
	}
	metrics, err := xb.bot.Metrics()
	require.NoError(t, err)
	assert.Equal(t, 2.0, signalCount(metrics, "ok", "call"), "two calls, two legs:\n%s", xmppMetricLines(metrics))
	// The SDK re-sends a call unanswered for 5 s: each copy is a duplicate.
	assert.Equal(t, float64(sentCalls(qb, "")-2), signalCount(metrics, "duplicate", "call"), "only re-sent calls are duplicates")

	// The SDK user rejects the bot's call.
	ctx := jsCtx(t)
	a := newToneUser(t, "qbrej", toneMatrix, false, jsclient.IncomingNotify)
	room := jsRoomWithBot(t, a, xb.setup.UserID, false)
	reply := jsCommand(t, a, room, xb.setup.UserID, "!voip route xmpp:"+qbIDString(qb.UserID()))
	require.Contains(t, reply.Body, "now go to **xmpp:"+qbIDString(qb.UserID())+"**")
	require.NoError(t, qb.SetIncoming(ctx, qbclient.IncomingReject, nil))
	callA, err := a.PlaceCall(ctx, room, "", false)
	require.NoError(t, err)
	in, err := qb.WaitIncoming(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { endQB(t, in) })
	assert.Equal(t, xb.id, in.InitiatorID())
	assert.Equal(t, qbclient.CallAudio, in.CallType())
	waitQBClosed(t, in)
	rej, err := qb.WaitSignal(ctx, qbclient.Out, "reject", in.ID())
	require.NoError(t, err)
	assert.Equal(t, xb.jid(), rej.To)
	waitEnded(t, callA)
	t.Logf("the Matrix call ended: %s by the %s party", callA.HangupReason(), callA.HangupParty())
	_, connected := callA.StateTime(jsclient.StateConnected)
	assert.False(t, connected, "the Matrix caller was never answered")
	assert.Equal(t, "remote", callA.HangupParty(), "the bot ended the Matrix call")
	assert.Equal(t, "user_hangup", callA.HangupReason(), "a decline, not busy or a failure")
	assert.Empty(t, callA.Errors())
	waitMetric(t, xb.bot, `voipbot_bridges 0`)
	waitSignals(t, xb.bot, "ok", "reject", 1)
}

// TestQuickBloxBridgeMatrix: a Matrix user A (550 Hz) and an SDK user
// (700 Hz), bridged by the bot through a route `!voip route xmpp:<id>` in
// A's room with the bot.
//
// (a) A calls the bot: the SDK rings (the bot's call, from its id), its
// user accepts; each hears the other's tone; the SDK user's update
// audio_muted=true shows A the bot's stream muted, and false unmuted;
// A's mute reaches the SDK as an update with audio_muted at the top level
// and in userInfo; the SDK's hangUp ends A's call.
// (b) The SDK user calls the bot: A (who answers at once) is rung in the
// routed room; each hears the other; A's hangup closes the SDK's session.
// (c) `!voip call xmpp:<id>` rings A, then the SDK user, and bridges them;
// the SDK's hangUp ends A's call.
func TestQuickBloxBridgeMatrix(t *testing.T) {
	xb := startXMPPBot(t, "tone", "")
	qb := newQBUser(t, toneQB)
	a := newToneUser(t, "qbbra", toneMatrix, false, jsclient.IncomingAnswer)
	room := jsRoomWithBot(t, a, xb.setup.UserID, false)
	reply := jsCommand(t, a, room, xb.setup.UserID, "!voip route xmpp:"+qbIDString(qb.UserID()))
	require.Contains(t, reply.Body, "now go to **xmpp:"+qbIDString(qb.UserID())+"**")

	t.Run("MatrixCallsSDK", func(t *testing.T) {
		ctx := jsCtx(t)
		callA, err := a.PlaceCall(ctx, room, "", false)
		require.NoError(t, err)
		in, err := qb.WaitIncoming(ctx)
		require.NoError(t, err, "the SDK user rings")
		t.Cleanup(func() { endQB(t, in) })
		assert.Equal(t, xb.id, in.InitiatorID())
		assert.Equal(t, []uint64{qb.UserID()}, in.OpponentIDs())
		assert.Equal(t, qbclient.CallAudio, in.CallType())
		assert.Equal(t, "voipbot", in.CallInfo()["name"])
		call, err := qb.WaitSignal(ctx, qbclient.In, "call", in.ID())
		require.NoError(t, err)
		assert.Truef(t, strings.HasPrefix(call.From, xb.jid()+"/"), "the call comes from the bot's JID, not %s", call.From)
		assert.False(t, call.Delay)
		assert.NotEqual(t, jsclient.StateConnected, callA.State(), "A is not answered before the SDK user accepts")

		require.NoError(t, in.Accept(ctx, map[string]string{"name": "QB user"}))
		waitQBConnected(t, in)
		waitConnected(t, callA)
		requireHears(t, callA, toneQB)
		requireQBHears(t, in, toneMatrix)
		waitMetric(t, xb.bot, `voipbot_bridges 1`)
		waitMetric(t, xb.bot, `voipbot_bridge_legs{kind="xmpp",state="connected"} 1`)
		waitMetric(t, xb.bot, `voipbot_bridge_legs{kind="matrix",state="connected"} 1`)

		// The SDK user's mute, as an update of the bridge's fields (js-sdk
		// counts a voice call's absent camera as muted video).
		require.NoError(t, callA.WaitRemoteMuted(ctx, false, true), "A sees the other side's microphone on")
		require.NoError(t, in.Update(ctx, map[string]any{"audio_muted": "true"}))
		require.NoError(t, callA.WaitRemoteMuted(ctx, true, true), "A sees the SDK user's microphone muted")
		require.NoError(t, in.Update(ctx, map[string]any{"audio_muted": "false"}))
		require.NoError(t, callA.WaitRemoteMuted(ctx, false, true), "A sees the SDK user's microphone on again")

		// A's mute reaches the SDK's update listener.
		require.NoError(t, callA.SetMicrophoneMuted(ctx, true))
		up, err := in.WaitUpdate(ctx, func(e qbclient.Event) bool { return e.UserInfo["audio_muted"] == "true" })
		require.NoError(t, err, "the SDK's update listener hears of A's mute")
		assert.Equal(t, xb.id, up.UserID)
		assert.Equal(t, "true", up.Extension["audio_muted"], "the field is at the top level too")
		sig, err := qb.WaitSignal(ctx, qbclient.In, "update", in.ID())
		require.NoError(t, err)
		assert.Equal(t, "true", sig.Fields["audio_muted"])
		assert.Equal(t, "true", sig.UserInfo["audio_muted"])
		assert.Equal(t, qbIDString(xb.id), sig.CallerID, "the update repeats the session's ids")
		require.NoError(t, callA.SetMicrophoneMuted(ctx, false))
		_, err = in.WaitUpdate(ctx, func(e qbclient.Event) bool { return e.UserInfo["audio_muted"] == "false" })
		require.NoError(t, err, "the SDK hears of A's unmute")
		requireQBHears(t, in, toneMatrix)

		require.NoError(t, in.Hangup(ctx, nil))
		waitQBClosed(t, in)
		waitEnded(t, callA)
		assert.Equal(t, "user_hangup", callA.HangupReason())
		assert.Equal(t, "remote", callA.HangupParty())
		assert.Empty(t, callA.Errors())
		waitMetric(t, xb.bot, `voipbot_bridges 0`)
	})

	t.Run("SDKCallsMatrix", func(t *testing.T) {
		ctx := jsCtx(t)
		before := len(a.Calls())
		s, err := qb.Call(ctx, []uint64{xb.id}, false, map[string]string{"name": "QB user"})
		require.NoError(t, err)
		t.Cleanup(func() { endQB(t, s) })
		callA, err := a.WaitIncoming(ctx)
		require.NoError(t, err, "A rings")
		assert.Equal(t, room, callA.RoomID(), "A is rung in the room routed to the SDK user")
		assert.Equal(t, xb.setup.UserID.String(), callA.Opponent())
		waitConnected(t, callA)
		_, err = s.WaitEvent(ctx, qbclient.EventAccept)
		require.NoError(t, err)
		waitQBConnected(t, s)
		requireHears(t, callA, toneQB)
		requireQBHears(t, s, toneMatrix)
		assert.Len(t, a.Calls(), before+1, "A was rung once")
		waitMetric(t, xb.bot, `voipbot_bridge_legs{kind="xmpp",state="connected"} 1`)

		require.NoError(t, callA.Hangup(ctx, ""))
		waitEnded(t, callA)
		stop, err := s.WaitEvent(ctx, qbclient.EventStop)
		require.NoError(t, err, "the SDK hears the bot's hangUp")
		assert.Equal(t, xb.id, stop.UserID)
		waitQBClosed(t, s)
		waitMetric(t, xb.bot, `voipbot_bridges 0`)
	})

	t.Run("CallCommand", func(t *testing.T) {
		ctx := jsCtx(t)
		before := len(a.Calls())
		reply := jsCommand(t, a, room, xb.setup.UserID, "!voip call xmpp:"+qbIDString(qb.UserID()))
		require.Contains(t, reply.Body, "once you answer, the bot calls xmpp:"+qbIDString(qb.UserID()))
		callA, err := a.WaitIncoming(ctx)
		require.NoError(t, err, "the bot rings A first")
		require.Len(t, a.Calls(), before+1)
		waitConnected(t, callA)
		in, err := qb.WaitIncoming(ctx)
		require.NoError(t, err, "then the SDK user")
		t.Cleanup(func() { endQB(t, in) })
		assert.Equal(t, xb.id, in.InitiatorID())
		require.NoError(t, in.Accept(ctx, nil))
		waitQBConnected(t, in)
		requireHears(t, callA, toneQB)
		requireQBHears(t, in, toneMatrix)

		require.NoError(t, in.Hangup(ctx, nil))
		waitQBClosed(t, in)
		waitEnded(t, callA)
		waitMetric(t, xb.bot, `voipbot_bridges 0`)
	})
}

// TestQuickBloxBadInput: what the bot must not act on, sent by a second SDK
// user through its own XMPP connection (SendRaw): a call whose callerID
// names another user (spoofed), a call with a <delay> (delayed, as an
// offline replay: the SDK ignores those too), calls with a non-numeric
// callerID and without a sessionID (malformed), an iceCandidates and a
// hangUp of a session the bot has none of (unknown_session). Each is
// counted, none makes a leg or gets an answer; afterwards an ordinary SDK
// call to the bot still works. Then, with a route to a Matrix user who
// lets the bot's call ring until the SDK has re-sent its call (every 5 s
// while unanswered), the re-sent call is counted a duplicate and makes no
// second leg: the Matrix user was rung once, and one QuickBlox leg is
// connected.
func TestQuickBloxBadInput(t *testing.T) {
	xb := startXMPPBot(t, "tone", "")
	qb := newQBUser(t, toneQB)
	mallory := newQBUser(t, toneQB2)
	ctx := jsCtx(t)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	send := func(what, extra, fields string) {
		t.Helper()
		require.NoErrorf(t, mallory.SendRaw(ctx, qbSignal(xb.jid(), what+"-"+run, extra, fields)), "sending %s", what)
	}

	// Spoofed: mallory's call says it is the other user's.
	send("spoofed", "", qbCallFields("spoofed-"+run, qbIDString(qb.UserID()), xb.id))
	waitSignals(t, xb.bot, "spoofed", "call", 1)
	// Delayed: a replay of mallory's own call.
	send("delayed", `<delay xmlns="urn:xmpp:delay" from="localhost" stamp="2024-01-01T00:00:00Z"/>`,
		qbCallFields("delayed-"+run, qbIDString(mallory.UserID()), xb.id))
	waitSignals(t, xb.bot, "delayed", "", 1)
	// Malformed: a callerID that is no user id, a call without a session.
	send("badcaller", "", qbCallFields("badcaller-"+run, "12ab", xb.id))
	noSession := strings.Replace(qbCallFields("x", qbIDString(mallory.UserID()), xb.id), "<sessionID>x</sessionID>", "", 1)
	send("nosession", "", noSession)
	waitSignals(t, xb.bot, "malformed", "", 2)
	// Unknown sessions.
	ids := fmt.Sprintf(`<sessionID>nosuch-%s</sessionID><callType>2</callType><callerID>%d</callerID><opponentsIDs><opponentID>%d</opponentID></opponentsIDs>`,
		run, mallory.UserID(), xb.id)
	send("candidates", "", `<signalType>iceCandidates</signalType>`+ids+
		`<iceCandidates><iceCandidate><candidate>candidate:1 1 udp 2122260223 127.0.0.1 9 typ host</candidate><sdpMid>0</sdpMid><sdpMLineIndex>0</sdpMLineIndex></iceCandidate></iceCandidates>`)
	send("hangup", "", `<signalType>hangUp</signalType>`+ids+`<userInfo><name>Hand</name></userInfo>`)
	waitSignals(t, xb.bot, "unknown_session", "iceCandidates", 1)
	waitSignals(t, xb.bot, "unknown_session", "hangUp", 1)

	metrics, err := xb.bot.Metrics()
	require.NoError(t, err)
	t.Logf("after the bad input:\n%s", xmppMetricLines(metrics))
	assert.Zero(t, signalCount(metrics, "ok", ""), "nothing was taken")
	assert.Equal(t, 1.0, signalCount(metrics, "spoofed", ""))
	assert.Equal(t, 1.0, signalCount(metrics, "delayed", ""))
	assert.Equal(t, 2.0, signalCount(metrics, "malformed", ""))
	assert.Equal(t, 2.0, signalCount(metrics, "unknown_session", ""))
	assert.True(t, hasLine(metrics, "voipbot_bridges 0"), "no leg")

	// An ordinary call still works, and is the bot's only one.
	s, err := qb.Call(ctx, []uint64{xb.id}, false, nil)
	require.NoError(t, err)
	t.Cleanup(func() { endQB(t, s) })
	waitQBConnected(t, s)
	requireQBHears(t, s, 440)
	waitMetric(t, xb.bot, `voipbot_bridge_legs{kind="xmpp",state="connected"} 1`)
	require.NoError(t, s.Hangup(ctx, nil))
	waitQBClosed(t, s)
	waitMetric(t, xb.bot, `voipbot_bridges 0`)
	assert.Equal(t, 1.0, signalCountNow(t, xb.bot, "ok", "call"), "one call taken: the bad ones made no leg")
	for _, sig := range mallory.Signals(qbclient.In) {
		assert.Failf(t, "the bot answered bad input", "mallory received %s of session %s from %s", sig.SignalType, sig.SessionID, sig.From)
	}
	for _, sig := range qb.Signals(qbclient.In) {
		assert.Equalf(t, s.ID(), sig.SessionID, "the user mallory spoofed received %s of session %s", sig.SignalType, sig.SessionID)
	}

	// The SDK's re-sent call, while the Matrix side rings.
	m := newToneUser(t, "qbdup", toneMatrix, false, jsclient.IncomingNotify)
	room := jsRoomWithBot(t, m, xb.setup.UserID, false)
	reply := jsCommand(t, m, room, xb.setup.UserID, "!voip route xmpp:"+qb.BareJID())
	require.Contains(t, reply.Body, "now go to **xmpp:"+qbIDString(qb.UserID())+"**", "a JID is taken too")
	ctx = jsCtx(t)
	dups := signalCountNow(t, xb.bot, "duplicate", "call")
	s, err = qb.Call(ctx, []uint64{xb.id}, false, nil)
	require.NoError(t, err)
	t.Cleanup(func() { endQB(t, s) })
	callM, err := m.WaitIncoming(ctx)
	require.NoError(t, err, "the routed room rings")
	assert.Equal(t, room, callM.RoomID())
	waitSignals(t, xb.bot, "duplicate", "call", dups+1)
	assert.GreaterOrEqual(t, sentCalls(qb, s.ID()), 2, "the SDK re-sent its call")
	require.NoError(t, callM.Answer(ctx))
	waitConnected(t, callM)
	waitQBConnected(t, s)
	requireHears(t, callM, toneQB)
	requireQBHears(t, s, toneMatrix)
	waitMetric(t, xb.bot, `voipbot_bridges 1`)
	waitMetric(t, xb.bot, `voipbot_bridge_legs{kind="xmpp",state="connected"} 1`)
	metrics, err = xb.bot.Metrics()
	require.NoError(t, err)
	assert.Equal(t, 2.0, signalCount(metrics, "ok", "call"), "the re-sent call made no leg:\n%s", xmppMetricLines(metrics))
	assert.Len(t, m.Calls(), 1, "the Matrix user was rung once")
	require.NoError(t, s.Hangup(ctx, nil))
	waitQBClosed(t, s)
	waitEnded(t, callM)
	waitMetric(t, xb.bot, `voipbot_bridges 0`)
}

// TestQuickBloxAllow: with xmpp.allow naming one QuickBlox user (by id),
// that user's call is answered; another user's call gets the bot's reject
// (the SDK's reject listener, its session closed), is counted not_allowed,
// and makes no leg.
func TestQuickBloxAllow(t *testing.T) {
	qb := newQBUser(t, toneQB)
	other := newQBUser(t, toneQB2)
	xb := startXMPPBot(t, "tone", "", qbIDString(qb.UserID()))
	ctx := jsCtx(t)

	s, err := other.Call(ctx, []uint64{xb.id}, false, nil)
	require.NoError(t, err)
	t.Cleanup(func() { endQB(t, s) })
	rej, err := s.WaitEvent(ctx, qbclient.EventReject)
	require.NoError(t, err, "the bot rejects a caller outside xmpp.allow")
	assert.Equal(t, xb.id, rej.UserID)
	waitQBClosed(t, s)
	_, connected := s.Reached(qbclient.StateConnected)
	assert.False(t, connected)
	sig, err := other.WaitSignal(ctx, qbclient.In, "reject", s.ID())
	require.NoError(t, err)
	assert.Equal(t, qbIDString(other.UserID()), sig.CallerID, "the reject repeats the session's ids")
	assert.Equal(t, []string{qbIDString(xb.id)}, sig.OpponentIDs)
	waitSignals(t, xb.bot, "not_allowed", "call", 1)

	s, err = qb.Call(ctx, []uint64{xb.id}, false, nil)
	require.NoError(t, err)
	t.Cleanup(func() { endQB(t, s) })
	waitQBConnected(t, s)
	requireQBHears(t, s, 440)
	require.NoError(t, s.Hangup(ctx, nil))
	waitQBClosed(t, s)
	waitMetric(t, xb.bot, `voipbot_bridges 0`)
	metrics, err := xb.bot.Metrics()
	require.NoError(t, err)
	assert.Equal(t, 1.0, signalCount(metrics, "ok", "call"), "only the allowed call made a leg:\n%s", xmppMetricLines(metrics))
	assert.Equal(t, float64(sentCalls(other, "")), signalCount(metrics, "not_allowed", "call"), "each copy of the refused call is refused")
}

// sentCalls counts the call signals c sent (every copy), of session if
// not "".
func sentCalls(c *qbclient.Client, session string) int {
	n := 0
	for _, sig := range c.Signals(qbclient.Out) {
		if sig.SignalType == "call" && (session == "" || sig.SessionID == session) {
			n++
		}
	}
	return n
}

// BenchmarkQuickBloxSetup measures the setup of an SDK user's audio call
// as its SDK sees it: from placing it (before its local media) to its
// session's connected (browser clock), for calls to the bot (which answers
// with its tone source) and, as the baseline, for calls to a second SDK
// user who accepts at once in its page, through the same Prosody. The
// caller alternates between the two (each call hung up and its end
// awaited on both sides, the bot's leg too, before the next); one
// unmeasured call of each first. At least -qb-setup-calls calls of each
// kind (b.N if greater); reports each kind's median and 90th percentile
// and the ratio of the medians (bot/sdk). The bot logs at info, as in
// production.
func BenchmarkQuickBloxSetup(b *testing.B) {
	xb := startXMPPBot(b, "tone", "info")
	caller := newQBUser(b, toneQB)
	callee := newQBUser(b, toneQB2)
	require.NoError(b, callee.SetIncoming(jsCtx(b), qbclient.IncomingAccept, nil))

	toBot := func() time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
		defer cancel()
		s, err := caller.Call(ctx, []uint64{xb.id}, false, nil)
		require.NoError(b, err)
		_, err = s.WaitState(ctx, qbclient.StateConnected)
		require.NoError(b, err)
		require.NoError(b, s.Hangup(ctx, nil))
		_, err = s.WaitState(ctx, qbclient.StateClosed)
		require.NoError(b, err)
		require.NoError(b, bridgesIdle(ctx, xb.bot))
		return s.Times().Setup()
	}
	toSDK := func() time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
		defer cancel()
		s, err := caller.Call(ctx, []uint64{callee.UserID()}, false, nil)
		require.NoError(b, err)
		_, err = s.WaitState(ctx, qbclient.StateConnected)
		require.NoError(b, err)
		in, err := callee.WaitIncoming(ctx)
		require.NoError(b, err)
		require.Equal(b, s.ID(), in.ID())
		require.NoError(b, s.Hangup(ctx, nil))
		_, err = s.WaitState(ctx, qbclient.StateClosed)
		require.NoError(b, err)
		_, err = in.WaitState(ctx, qbclient.StateClosed)
		require.NoError(b, err)
		return s.Times().Setup()
	}
	// Warm up: the first call of a page gets its media devices.
	toBot()
	toSDK()

	n := max(b.N, *qbSetupCalls)
	botSetups := make([]time.Duration, 0, n)
	sdkSetups := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		if i%2 == 0 {
			botSetups = append(botSetups, toBot())
			sdkSetups = append(sdkSetups, toSDK())
		} else {
			sdkSetups = append(sdkSetups, toSDK())
			botSetups = append(botSetups, toBot())
		}
	}
	b.StopTimer()
	reportSetups(b, "bot", botSetups, "sdk", sdkSetups)
}

// bridgesIdle waits until the bot has no bridge left.
func bridgesIdle(ctx context.Context, bot *testbed.Bot) error {
	var last string
	err := testbed.WaitFor(ctx, func() (bool, error) {
		metrics, err := bot.Metrics()
		last = metrics
		return err == nil && hasLine(metrics, "voipbot_bridges 0"), nil
	})
	if err != nil {
		return fmt.Errorf("the bot's bridges did not end: %w\n%s", err, xmppMetricLines(last))
	}
	return nil
}

// BenchmarkQuickBloxToMatrix: an SDK user calls the bot, whose route
// rings a Matrix user (matrix-js-sdk, answering at once) in a room routed
// to that SDK user; placed → connected on the SDK's clock, against the
// same SDK user's calls to a bot answering with its own tone in the same
// run (what the Matrix hop adds).
func BenchmarkQuickBloxToMatrix(b *testing.B) {
	routed := startXMPPBot(b, "tone", "info")
	own := startXMPPBot(b, "tone", "info")
	caller := newQBUser(b, toneQB)
	a := newToneUser(b, "qbbm", toneMatrix, false, jsclient.IncomingAnswer)
	room := jsRoomWithBot(b, a, routed.setup.UserID, false)
	reply := jsCommand(b, a, room, routed.setup.UserID, "!voip route xmpp:"+qbIDString(caller.UserID()))
	require.Contains(b, reply.Body, "now go to **xmpp:")

	call := func(xb *xmppBot) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
		defer cancel()
		s, err := caller.Call(ctx, []uint64{xb.id}, false, nil)
		require.NoError(b, err)
		_, err = s.WaitState(ctx, qbclient.StateConnected)
		require.NoError(b, err)
		require.NoError(b, s.Hangup(ctx, nil))
		_, err = s.WaitState(ctx, qbclient.StateClosed)
		require.NoError(b, err)
		require.NoError(b, bridgesIdle(ctx, xb.bot))
		return s.Times().Setup()
	}
	call(routed) // warm up: the pages' first calls get their media devices
	call(own)

	n := max(b.N, *qbSetupCalls)
	viaMatrix := make([]time.Duration, 0, n)
	direct := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		if i%2 == 0 {
			viaMatrix = append(viaMatrix, call(routed))
			direct = append(direct, call(own))
		} else {
			direct = append(direct, call(own))
			viaMatrix = append(viaMatrix, call(routed))
		}
	}
	b.StopTimer()
	reportSetups(b, "matrix", viaMatrix, "bot", direct)
}
