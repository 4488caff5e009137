package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed/jsclient"
)

// waitDeclined waits until a js-sdk call the bot declines has ended, by the
// bot (remote), far sooner than js-sdk's own invite_timeout, and returns
// how long after it was placed.
func waitDeclined(t *testing.T, call *jsclient.Call) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(jsCtx(t), declineWait)
	defer cancel()
	at, err := call.WaitState(ctx, jsclient.StateEnded)
	require.NoError(t, err, "js-sdk's call ends: the bot declines it")
	require.Equal(t, "remote", call.HangupParty())
	_, reached := call.StateTime(jsclient.StateConnected)
	require.False(t, reached, "the call never connected")
	return at.Sub(call.PlacedAt())
}

// TestJSUnusableOfferIsDeclined: js-sdk offering only G722 (the bot takes
// Opus, PCMU, PCMA) is declined with a reject at once — which js-sdk
// honours, where a hangup left it ringing for 60 s — and told why in the
// room; then the same client calls with its usual codecs and is answered.
func TestJSUnusableOfferIsDeclined(t *testing.T) {
	setup, bot := startCallBot(t, "")
	js, _ := newJSUser(t, "jsgseven", false, jsclient.IncomingNotify)
	room := jsRoomWithBot(t, js, setup.UserID, false)
	ctx := ctxFor(t)

	call, err := js.PlaceCallWith(ctx, room, jsclient.PlaceOptions{AudioCodecs: []string{"audio/G722"}})
	require.NoError(t, err)
	took := waitDeclined(t, call)
	t.Logf("a G722-only call was declined %s after it was placed (browser clock)", took.Round(time.Millisecond))
	assert.Equal(t, "unknown_error", call.HangupReason())
	notice, err := js.WaitMessage(ctx, room, jsclient.MessageMatch{Sender: setup.UserID.String(), Contains: "Missed call"})
	require.NoError(t, err)
	assert.Contains(t, notice.Body, "the bot takes none of the formats offered (G722/8000)")
	waitMetric(t, bot, `voipbot_call_refusals_total{action="declined",reason="unusable_offer"} 1`)

	good, err := js.PlaceCallWith(ctx, room, jsclient.PlaceOptions{})
	require.NoError(t, err)
	waitConnected(t, good)
	require.NoError(t, good.Hangup(ctx, ""))
	waitEnded(t, good)
	waitBotIdle(t, bot)

	stopBot(t, bot)
	c := botCall(t, setup, room, call.ID())
	assert.True(t, c.Missed)
	assert.Equal(t, "unknown_error", c.HangupReason)
	assert.Contains(t, c.StateReason, "G722")
}

// TestJSCallerNotAllowedIsDeclined: with access.users = alice only, mallory
// (same server, in alice's room with the bot) calls the bot: declined with a
// reject, without a notice and without taking the room's one call slot, so
// that alice's own call is answered.
func TestJSCallerNotAllowedIsDeclined(t *testing.T) {
	alice, aliceLogin := newJSUser(t, "jsalice", false, jsclient.IncomingNotify)
	mallory, _ := newJSUser(t, "jsmallory", false, jsclient.IncomingNotify)
	setup, bot := startCallBot(t, "access:\n  users: [\""+alice.UserID+"\"]\ncalls:\n  max_calls_per_room: 1\n")
	room := jsRoomWithBot(t, alice, setup.UserID, false, mallory)
	ctx := ctxFor(t)
	toBot := jsclient.PlaceOptions{Invitee: setup.UserID.String()}

	theirs, err := mallory.PlaceCallWith(ctx, room, toBot)
	require.NoError(t, err)
	took := waitDeclined(t, theirs)
	t.Logf("a call from a user not allowed was declined %s after it was placed (browser clock)", took.Round(time.Millisecond))
	waitMetric(t, bot, `voipbot_call_refusals_total{action="declined",reason="not_allowed"} 1`)

	ours, err := alice.PlaceCallWith(ctx, room, toBot)
	require.NoError(t, err)
	waitConnected(t, ours)
	requireJSMedia(t, ours, false)
	require.NoError(t, ours.Hangup(ctx, ""))
	waitEnded(t, ours)
	waitBotIdle(t, bot)

	// The room's events are handled in order: once the bot answered a later
	// command, it has said all it would about mallory's call — nothing.
	jsCommand(t, alice, room, setup.UserID, "!voip help")
	cli, err := mautrix.NewClient(hs.URL, id.UserID(alice.UserID), aliceLogin.AccessToken)
	require.NoError(t, err)
	msgs, err := cli.Messages(ctx, id.RoomID(room), "", "", mautrix.DirectionBackward, nil, 100)
	require.NoError(t, err)
	for _, evt := range msgs.Chunk {
		if evt.Sender == setup.UserID && evt.Type == event.EventMessage {
			assert.NotContains(t, body(evt), "Missed call", "no notice for a caller who is not allowed")
		}
	}
	stopBot(t, bot)
	c, err := openBotDB(t, setup.Dir+"/voipbot.db").Call(ctxFor(t), id.RoomID(room), theirs.ID())
	require.NoError(t, err)
	assert.Nil(t, c, "no record of mallory's call")
}
