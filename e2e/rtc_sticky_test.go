package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/elementcall"
	"github.com/voipbot/voipbot/internal/testbed/jsclient"
	"github.com/voipbot/voipbot/internal/testbed/lkjwt"
	"github.com/voipbot/voipbot/matrix/rtcevent"
)

// TestElementCallSticky: with rtc.membership: sticky, on a homeserver
// with sticky events (MSC4354; the test front adds them to Dendrite), the
// bot is a member by the newer sticky event and in the SFU under the
// hashed identity /get_token gives. Alice's Element Call runs in its
// matrix_2_0 mode, so she is a sticky member too: a legacy caller routed
// into the call hears her (the bot hears only members it read), she hears
// the caller from the bot's tile (her Element Call matched the bot's
// sticky membership to its participant), the bot sent no state
// membership, and the caller's hangup ends the bot's membership with a
// sticky leave.
func TestElementCallSticky(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[encrypted], func(t *testing.T) { testSticky(t, encrypted) })
	}
}

func testSticky(t *testing.T, encrypted bool) {
	bed := rtcTestBed(t)
	front, err := testbed.StartDelayedEvents(hs.URL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = front.Close() })
	front.EnableSticky()
	app, err := elementcall.StartServer(elementcall.ServerOptions{
		HomeserverURL: front.URL, LiveKitServiceURL: bed.jwt.URL,
		Extra: map[string]any{"matrix_rtc_mode": "matrix_2_0"},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = app.Close() })

	setup := newBotSetup(t, hs, fmt.Sprintf("calls:\n  source: tone\nrtc:\n  livekit_service_url: %q\n  membership: sticky\n", bed.jwt.URL))
	setup.Binary = bed.mixer
	setup.useHomeserverURL(t, front.URL)
	bot := setup.start(t)
	acct := readAccount(t, filepath.Join(setup.Dir, "voipbot.db"))
	user, device := setup.UserID.String(), acct.DeviceID.String()
	botIdentity := lkjwt.Identity(user, device, rtcevent.Identity(user, device))

	alice := newECUserAt(t, app.URL, "ecst", toneA)
	bob := newToneUser(t, "ecsb", toneCaller, encrypted, jsclient.IncomingNotify)
	room := alice.callRoom(t, setup.UserID, encrypted, id.UserID(bob.UserID))
	ctx := ctxFor(t)
	_, err = bob.JoinRoom(ctx, room.String())
	require.NoError(t, err)
	require.Contains(t, body(command(t, alice.mx, room, setup.UserID, "!voip route rtc")), "now go to **rtc**")
	if encrypted {
		// Bob's first encrypted message, answered: his room key reached
		// the bot before his call invite (see the test of everyone).
		require.Contains(t, jsCommand(t, bob, room.String(), setup.UserID, "!voip route").Body, "rtc")
	}
	_, err = alice.browser.Join(ctx, room.String(), alice.session, "")
	require.NoError(t, err)
	_, err = alice.mx.WaitEvent(ctx, func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type.Type == rtcevent.TypeRTCMember && evt.Sender == alice.mx.UserID
	})
	require.NoError(t, err, "alice's Element Call (matrix_2_0) sends a sticky membership")

	call, err := bob.PlaceCall(ctx, room.String(), user, false)
	require.NoError(t, err)
	waitConnected(t, call)
	tone, err := alice.browser.WaitParticipantTone(ctx, botIdentity, toneCaller, toneTolerance)
	require.NoErrorf(t, err, "alice hears the caller from the bot's hashed identity (last %s)", tone)
	t.Logf("alice hears the caller: %s", tone)
	heard, err := call.WaitRemoteTones(ctx, []float64{toneA}, toneTolerance)
	require.NoErrorf(t, err, "the caller hears alice, a sticky member (last %s)", heard)
	t.Logf("the caller hears: %s", heard)

	var state json.RawMessage
	err = alice.mx.StateEvent(ctx, room, event.Type{Type: rtcevent.TypeCallMember, Class: event.StateEventType}, rtcevent.StateKey(user, device), &state)
	require.Error(t, err, "the bot sent no state membership (got %s)", state)
	minted := false
	for _, m := range bed.jwt.Minted() {
		minted = minted || (m.Endpoint == "/get_token" && m.Identity == botIdentity)
	}
	require.True(t, minted, "the bot's token came from /get_token with the hashed identity")

	require.NoError(t, call.Hangup(ctx, ""))
	waitEnded(t, call)
	leftCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	leave, err := alice.mx.WaitEvent(leftCtx, func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type.Type == rtcevent.TypeRTCMember && evt.Sender == setup.UserID && len(evt.Content.Raw) == 1
	})
	require.NoError(t, err, "the bot leaves with a sticky leave")
	require.Equal(t, rtcevent.Identity(user, device), leave.Content.Raw[rtcevent.StickyKeyField])
	_, err = alice.browser.WaitParticipants(ctx, func(ps []elementcall.Participant) bool {
		for _, p := range ps {
			if p.Identity == botIdentity {
				return false
			}
		}
		return true
	})
	require.NoError(t, err, "Element Call drops the bot's tile")
	waitMetric(t, bot, `voipbot_bridges 0`)
}
