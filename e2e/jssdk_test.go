package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/jsclient"
	"github.com/voipbot/voipbot/store"
)

// The tests in this file have matrix-js-sdk (the reference Matrix VoIP
// client, in Chromium: internal/testbed/jsclient) call the bot and be called by it.

var (
	jsOnce        sync.Once
	jsBrowserInst *jsclient.Browser
	jsErr         error
)

// jsBrowser is the one Chromium of the package's tests, launched on first
// use (and closed by runMain after the tests).
func jsBrowser(tb testing.TB) *jsclient.Browser {
	tb.Helper()
	jsOnce.Do(func() {
		// npm ci and the bundle on a cold machine take minutes.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		jsBrowserInst, jsErr = jsclient.Launch(ctx, jsclient.Options{})
		if jsErr == nil {
			fmt.Fprintf(os.Stderr, "Chromium %s ready in %s\n", jsBrowserInst.Version, time.Since(start).Round(time.Millisecond))
		}
	})
	// No chromium, node or npm is a failure, not a skip: CI installs them.
	require.NoError(tb, jsErr, "launching Chromium with matrix-js-sdk")
	return jsBrowserInst
}

// closeJSBrowser closes the browser if a test launched it; after it, none
// can.
func closeJSBrowser() error {
	jsOnce.Do(func() { jsErr = fmt.Errorf("the browser is closed") })
	if jsBrowserInst == nil {
		return nil
	}
	return jsBrowserInst.Close()
}

// jsCtx bounds a test's waits (testing.TB: benchmarks use it too).
func jsCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
	tb.Cleanup(cancel)
	return ctx
}

// newJSUser registers a user and starts a js-sdk client for it on a device
// of its own (in memory Rust crypto if asked). It returns the client's
// login too (for newJSDevice, or the server's API).
func newJSUser(tb testing.TB, name string, crypto bool, incoming jsclient.IncomingPolicy) (*jsclient.Client, jsclient.ClientOptions) {
	tb.Helper()
	localpart := fmt.Sprintf("%s%d", name, userSeq.Add(1))
	_, err := hs.Register(jsCtx(tb), localpart, "pw-"+localpart)
	require.NoError(tb, err)
	return newJSDevice(tb, localpart, crypto, incoming)
}

// newJSDevice logs a registered user in on a new device and starts a js-sdk
// client for it.
func newJSDevice(tb testing.TB, localpart string, crypto bool, incoming jsclient.IncomingPolicy) (*jsclient.Client, jsclient.ClientOptions) {
	tb.Helper()
	ctx := jsCtx(tb)
	opts, err := jsclient.Login(ctx, hs.URL, localpart, "pw-"+localpart)
	require.NoError(tb, err)
	opts.Crypto, opts.Incoming = crypto, incoming
	c, err := jsBrowser(tb).NewClient(ctx, opts)
	require.NoError(tb, err)
	tb.Cleanup(func() { assert.NoError(tb, c.Close()) })
	require.Equal(tb, opts.DeviceID, c.DeviceID)
	return c, opts
}

// localpartOf is the localpart of a user ID.
func localpartOf(userID string) string {
	localpart, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	return localpart
}

// jsRoomWithBot has c create a room, as Element does for a chat with the
// bot (a direct chat, encrypted if asked), invites the bot and others,
// has the others join, and waits until every client has everyone joined.
func jsRoomWithBot(tb testing.TB, c *jsclient.Client, bot id.UserID, encrypted bool, others ...*jsclient.Client) string {
	tb.Helper()
	ctx := jsCtx(tb)
	invite := []string{bot.String()}
	for _, o := range others {
		invite = append(invite, o.UserID)
	}
	room, err := c.CreateRoom(ctx, jsclient.CreateRoomOptions{Invite: invite, Encrypted: encrypted, Direct: len(others) == 0})
	require.NoError(tb, err)
	for _, o := range others {
		_, err = o.JoinRoom(ctx, room)
		require.NoError(tb, err)
	}
	members := append([]string{bot.String(), c.UserID}, invite[1:]...)
	for _, viewer := range append([]*jsclient.Client{c}, others...) {
		for _, m := range members {
			require.NoErrorf(tb, viewer.WaitMember(ctx, room, m, "join"), "%s sees %s joined", viewer.UserID, m)
		}
	}
	return room
}

// jsCommand sends a command from a js-sdk client and waits for the bot's
// reply to it.
func jsCommand(tb testing.TB, c *jsclient.Client, room string, bot id.UserID, text string) *jsclient.Message {
	tb.Helper()
	ctx := jsCtx(tb)
	sent, err := c.SendText(ctx, room, text)
	require.NoError(tb, err)
	reply, err := c.WaitMessage(ctx, room, jsclient.MessageMatch{Sender: bot.String(), InReplyTo: sent})
	require.NoErrorf(tb, err, "waiting for the reply to %q", text)
	return reply
}

// startCallBot starts a bot with call media on loopback; extra YAML is
// appended to its config.
func startCallBot(t *testing.T, extra string) (*botSetup, *testbed.Bot) {
	t.Helper()
	setup := newBotSetup(t, hs, callMedia+extra)
	return setup, setup.start(t)
}

// waitConnected waits until a js-sdk call is connected and logs how long
// it took since it was placed (or, for an inbound call, since it rang).
func waitConnected(tb testing.TB, call *jsclient.Call) {
	tb.Helper()
	at, err := call.WaitState(jsCtx(tb), jsclient.StateConnected)
	require.NoError(tb, err)
	from := call.PlacedAt()
	if from.IsZero() {
		from, _ = call.StateTime(jsclient.StateRinging)
	}
	tb.Logf("%s call %s of %s connected %s after it was placed/rang (browser clock)",
		call.Direction(), call.ID(), call.Client().UserID, at.Sub(from).Round(time.Millisecond))
}

// waitEnded waits until a js-sdk call has ended.
func waitEnded(tb testing.TB, call *jsclient.Call) {
	tb.Helper()
	_, err := call.WaitState(jsCtx(tb), jsclient.StateEnded)
	require.NoError(tb, err)
}

// requireJSMedia waits until a js-sdk call receives the bot's echo: inbound
// audio bytes grow and Chromium's fake microphone's beep comes back (an
// audio level above zero at some point), and with video, inbound video
// bytes grow and frames decode. Statistics are polled (there is no event
// for them), within the test's bound.
func requireJSMedia(tb testing.TB, call *jsclient.Call, video bool) {
	tb.Helper()
	first, last, err := call.WaitMedia(jsCtx(tb), video)
	require.NoErrorf(tb, err, "media of %s (%s): first %+v last %+v", call.ID(), call.Client().UserID, first, last)
	require.Equal(tb, "audio/opus", last.Audio.InboundCodec)
	require.Positive(tb, last.Audio.TotalAudioEnergy)
	if video {
		require.NotEmpty(tb, last.Video.InboundCodec)
		require.Positive(tb, last.Video.FrameWidth)
	} else {
		require.Zero(tb, last.Video.InboundBytes)
	}
	tb.Logf("%s: audio in %d B/%d pkts level %.3f, out %d B; video in %d B %d frames %dx%d (%s)",
		call.Client().UserID, last.Audio.InboundBytes, last.Audio.InboundPackets, last.Audio.AudioLevel, last.Audio.OutboundBytes,
		last.Video.InboundBytes, last.Video.FramesDecoded, last.Video.FrameWidth, last.Video.FrameHeight, last.Video.InboundCodec)
}

// botIdle waits until the bot has no call (no voipbot_calls series).
func botIdle(ctx context.Context, bot *testbed.Bot) error {
	var last string
	err := testbed.WaitFor(ctx, func() (bool, error) {
		metrics, err := bot.Metrics()
		last = metrics
		return err == nil && !strings.Contains(metrics, "voipbot_calls{"), nil
	})
	if err != nil {
		return fmt.Errorf("the bot's calls did not end: %w\n%s", err, last)
	}
	return nil
}

func waitBotIdle(tb testing.TB, bot *testbed.Bot) {
	tb.Helper()
	require.NoError(tb, botIdle(jsCtx(tb), bot))
}

// botCall reads a call's record from the database of a stopped bot.
func botCall(t *testing.T, setup *botSetup, room, callID string) *store.Call {
	t.Helper()
	c, err := openBotDB(t, setup.Dir+"/voipbot.db").Call(ctxFor(t), id.RoomID(room), callID)
	require.NoError(t, err)
	require.NotNilf(t, c, "the bot has no record of call %s", callID)
	raw, _ := json.Marshal(c)
	t.Logf("the bot's record of call %s: %s", callID, raw)
	return c
}

// declineWait bounds the wait for the bot's decline of a call (busy, glare)
// to reach js-sdk: far less than the 60 s after which js-sdk's own
// invite_timeout would end the call anyway.
const declineWait = 15 * time.Second

// TestJSCallsBotVoice: js-sdk calls the bot in a direct chat (no invitee,
// as Element does), the bot answers with echo, js-sdk hears its own beep
// back, and js-sdk's hangup ends the bot's call.
func TestJSCallsBotVoice(t *testing.T) {
	setup, bot := startCallBot(t, "")
	js, _ := newJSUser(t, "jsvoice", false, jsclient.IncomingNotify)
	room := jsRoomWithBot(t, js, setup.UserID, false)
	ctx := ctxFor(t)

	call, err := js.PlaceCall(ctx, room, "", false)
	require.NoError(t, err)
	waitConnected(t, call)
	require.Equal(t, setup.UserID.String(), call.Opponent())
	requireJSMedia(t, call, false)
	waitMetric(t, bot, `voipbot_calls{state="connected"} 1`)

	require.NoError(t, call.Hangup(ctx, ""))
	waitEnded(t, call)
	require.Equal(t, "user_hangup", call.HangupReason())
	require.Equal(t, "local", call.HangupParty())
	waitBotIdle(t, bot)
	require.Empty(t, call.Errors())

	stopBot(t, bot)
	c := botCall(t, setup, room, call.ID())
	require.Equal(t, store.CallInbound, c.Direction)
	require.Equal(t, "ended", c.State)
	require.Equal(t, "remote", c.HangupBy)
	require.Equal(t, "user_hangup", c.HangupReason)
	require.Equal(t, js.UserID, c.PeerUserID.String())
	require.Equal(t, js.DeviceID, c.PeerPartyID, "js-sdk's party ID is its device ID")
	require.False(t, c.Video)
	require.False(t, c.ConnectedAt.IsZero())
	require.False(t, c.Missed)
}

// TestJSCallsBotVideo: a js-sdk video call; the bot echoes the fake camera
// back and js-sdk decodes it.
func TestJSCallsBotVideo(t *testing.T) {
	setup, bot := startCallBot(t, "")
	js, _ := newJSUser(t, "jsvideo", false, jsclient.IncomingNotify)
	room := jsRoomWithBot(t, js, setup.UserID, false)
	ctx := ctxFor(t)

	call, err := js.PlaceCall(ctx, room, "", true)
	require.NoError(t, err)
	require.Equal(t, "video", call.Type())
	waitConnected(t, call)
	requireJSMedia(t, call, true)
	waitMetric(t, bot, `voipbot_calls{state="connected"} 1`)

	require.NoError(t, call.Hangup(ctx, ""))
	waitEnded(t, call)
	waitBotIdle(t, bot)
	require.Empty(t, call.Errors())

	stopBot(t, bot)
	c := botCall(t, setup, room, call.ID())
	require.True(t, c.Video)
	require.Equal(t, "remote", c.HangupBy)
}

// TestJSBotHangsUp: `!voip hangup` ends a connected call, and js-sdk sees
// the bot hang up.
func TestJSBotHangsUp(t *testing.T) {
	setup, bot := startCallBot(t, "")
	js, _ := newJSUser(t, "jshungup", false, jsclient.IncomingNotify)
	room := jsRoomWithBot(t, js, setup.UserID, false)
	ctx := ctxFor(t)

	call, err := js.PlaceCall(ctx, room, "", false)
	require.NoError(t, err)
	waitConnected(t, call)
	waitMetric(t, bot, `voipbot_calls{state="connected"} 1`)

	reply := jsCommand(t, js, room, setup.UserID, "!voip hangup")
	require.Contains(t, reply.Body, "Hung up 1 call")
	waitEnded(t, call)
	require.Equal(t, "user_hangup", call.HangupReason())
	require.Equal(t, "remote", call.HangupParty())
	require.Empty(t, call.Errors())
	waitBotIdle(t, bot)

	stopBot(t, bot)
	c := botCall(t, setup, room, call.ID())
	require.Equal(t, "local", c.HangupBy)
	require.Equal(t, "user_hangup", c.HangupReason)
}

// TestJSBotCallsJS: `!voip call @user` rings js-sdk, which answers; media
// flows both ways; js-sdk hangs up.
func TestJSBotCallsJS(t *testing.T) {
	setup, bot := startCallBot(t, "")
	js, _ := newJSUser(t, "jscalled", false, jsclient.IncomingNotify)
	room := jsRoomWithBot(t, js, setup.UserID, false)
	ctx := ctxFor(t)

	reply := jsCommand(t, js, room, setup.UserID, "!voip call "+js.UserID)
	require.Contains(t, reply.Body, "Calling "+js.UserID)
	call, err := js.WaitIncoming(ctx)
	require.NoError(t, err)
	require.Contains(t, reply.Body, call.ID(), "the reply names the call")
	require.Equal(t, "inbound", call.Direction())
	require.Equal(t, "voice", call.Type())
	require.Equal(t, room, call.RoomID())
	require.Equal(t, setup.UserID.String(), call.Opponent())
	require.Equal(t, jsclient.StateRinging, call.State())

	require.NoError(t, call.Answer(ctx))
	waitConnected(t, call)
	requireJSMedia(t, call, false)
	waitMetric(t, bot, `voipbot_calls{state="connected"} 1`)

	require.NoError(t, call.Hangup(ctx, ""))
	waitEnded(t, call)
	waitBotIdle(t, bot)
	require.Empty(t, call.Errors())

	stopBot(t, bot)
	c := botCall(t, setup, room, call.ID())
	require.Equal(t, store.CallOutbound, c.Direction)
	require.Equal(t, js.UserID, c.PeerUserID.String())
	require.Equal(t, js.DeviceID, c.PeerPartyID)
	require.Equal(t, "remote", c.HangupBy)
	require.Equal(t, "user_hangup", c.HangupReason)
	require.False(t, c.ConnectedAt.IsZero())
}

// TestJSGlareBotWins: the bot's invite (call A) is out and ringing at
// js-sdk, unanswered; js-sdk then calls the bot with a call ID greater than
// A's. The spec keeps the lesser call: the bot hangs up js-sdk's call with
// reason "replaced", and js-sdk can still answer A.
func TestJSGlareBotWins(t *testing.T) {
	setup, bot := startCallBot(t, "")
	js, _ := newJSUser(t, "jsglare", false, jsclient.IncomingIgnore)
	room := jsRoomWithBot(t, js, setup.UserID, false)
	ctx := ctxFor(t)

	jsCommand(t, js, room, setup.UserID, "!voip call "+js.UserID)
	callA, err := js.WaitIgnored(ctx)
	require.NoError(t, err)
	require.Equal(t, jsclient.StateRinging, callA.State())

	idB := strings.Repeat("9", 13) + "GlareJsLoses0000"
	require.Less(t, callA.ID(), idB)
	callB, err := js.PlaceCallWith(ctx, room, jsclient.PlaceOptions{CallID: idB})
	require.NoError(t, err)
	require.Equal(t, idB, callB.ID())

	// The bot hangs B up as replaced. (Checked without stopping the test,
	// so that a failure here still shows whether the rest works.)
	declineCtx, cancel := context.WithTimeout(ctx, declineWait)
	_, err = callB.WaitState(declineCtx, jsclient.StateEnded)
	cancel()
	if assert.NoError(t, err, "js-sdk's call B ends: the bot hangs it up as replaced") {
		assert.Equal(t, "replaced", callB.HangupReason())
		assert.Equal(t, "remote", callB.HangupParty())
	}

	require.Equal(t, jsclient.StateRinging, callA.State(), "the bot's call A still rings")
	require.NoError(t, callA.Answer(ctx))
	waitConnected(t, callA)
	requireJSMedia(t, callA, false)
	waitMetric(t, bot, `voipbot_calls{state="connected"} 1`)

	require.NoError(t, callA.Hangup(ctx, ""))
	waitEnded(t, callA)
	if callB.State() != jsclient.StateEnded {
		require.NoError(t, callB.Hangup(ctx, ""))
		waitEnded(t, callB)
	}
	waitBotIdle(t, bot)

	stopBot(t, bot)
	b := botCall(t, setup, room, idB)
	assert.Equal(t, store.CallInbound, b.Direction)
	assert.Equal(t, "replaced", b.HangupReason)
	assert.Equal(t, "local", b.HangupBy)
	assert.True(t, b.ConnectedAt.IsZero(), "B never connected")
	a := botCall(t, setup, room, callA.ID())
	assert.Equal(t, store.CallOutbound, a.Direction)
	assert.False(t, a.ConnectedAt.IsZero(), "A connected")
	assert.Equal(t, "remote", a.HangupBy)
	assert.Equal(t, "user_hangup", a.HangupReason)
}

// TestJSGlareJSWins: the bot's invite (call A) rings at js-sdk, unanswered;
// js-sdk calls the bot with a call ID less than A's. The bot hangs A up as
// replaced and answers js-sdk's call on its own.
func TestJSGlareJSWins(t *testing.T) {
	setup, bot := startCallBot(t, "")
	js, _ := newJSUser(t, "jsglarewin", false, jsclient.IncomingIgnore)
	room := jsRoomWithBot(t, js, setup.UserID, false)
	ctx := ctxFor(t)

	jsCommand(t, js, room, setup.UserID, "!voip call "+js.UserID)
	callA, err := js.WaitIgnored(ctx)
	require.NoError(t, err)

	idB := "0000000000001" + "GlareJsWins00000"
	require.Less(t, idB, callA.ID())
	callB, err := js.PlaceCallWith(ctx, room, jsclient.PlaceOptions{CallID: idB})
	require.NoError(t, err)

	waitEnded(t, callA)
	require.Equal(t, "replaced", callA.HangupReason())
	require.Equal(t, "remote", callA.HangupParty())
	waitConnected(t, callB)
	requireJSMedia(t, callB, false)
	waitMetric(t, bot, `voipbot_calls{state="connected"} 1`)

	require.NoError(t, callB.Hangup(ctx, ""))
	waitEnded(t, callB)
	waitBotIdle(t, bot)
	require.Empty(t, callB.Errors())

	stopBot(t, bot)
	a := botCall(t, setup, room, callA.ID())
	require.Equal(t, store.CallOutbound, a.Direction)
	require.Equal(t, "replaced", a.HangupReason)
	require.Equal(t, "local", a.HangupBy)
	b := botCall(t, setup, room, idB)
	require.Equal(t, store.CallInbound, b.Direction)
	require.False(t, b.ConnectedAt.IsZero())
	require.Equal(t, "remote", b.HangupBy)
}

// TestJSBusy: with one call per room, a second js-sdk user's call while the
// first is connected is declined as user_busy, the room is told of the
// missed call, and the first call goes on.
func TestJSBusy(t *testing.T) {
	setup, bot := startCallBot(t, "calls:\n  max_calls_per_room: 1\n")
	js1, _ := newJSUser(t, "jsbusyone", false, jsclient.IncomingNotify)
	js2, _ := newJSUser(t, "jsbusytwo", false, jsclient.IncomingNotify)
	room := jsRoomWithBot(t, js1, setup.UserID, false, js2)
	ctx := ctxFor(t)
	toBot := jsclient.PlaceOptions{Invitee: setup.UserID.String()}

	call1, err := js1.PlaceCallWith(ctx, room, toBot)
	require.NoError(t, err)
	waitConnected(t, call1)
	waitMetric(t, bot, `voipbot_calls{state="connected"} 1`)

	call2, err := js2.PlaceCallWith(ctx, room, toBot)
	require.NoError(t, err)
	notice, err := js2.WaitMessage(ctx, room, jsclient.MessageMatch{Sender: setup.UserID.String(), Contains: "Missed call"})
	require.NoError(t, err)
	require.Contains(t, notice.Body, js2.UserID)
	require.Equal(t, "m.notice", notice.MsgType)

	declineCtx, cancel := context.WithTimeout(ctx, declineWait)
	_, err = call2.WaitState(declineCtx, jsclient.StateEnded)
	cancel()
	if assert.NoError(t, err, "js-sdk's second call ends: the bot declines it as busy") {
		assert.Equal(t, "user_busy", call2.HangupReason())
		assert.Equal(t, "remote", call2.HangupParty())
	}
	_, reached := call2.StateTime(jsclient.StateConnected)
	require.False(t, reached, "the second call never connected")

	// The first call is untouched.
	require.Equal(t, jsclient.StateConnected, call1.State())
	requireJSMedia(t, call1, false)
	waitMetric(t, bot, `voipbot_calls{state="connected"} 1`)

	require.NoError(t, call1.Hangup(ctx, ""))
	waitEnded(t, call1)
	if call2.State() != jsclient.StateEnded {
		require.NoError(t, call2.Hangup(ctx, ""))
		waitEnded(t, call2)
	}
	waitBotIdle(t, bot)

	stopBot(t, bot)
	c2 := botCall(t, setup, room, call2.ID())
	assert.Equal(t, "user_busy", c2.HangupReason)
	assert.Equal(t, "local", c2.HangupBy)
	assert.True(t, c2.Missed)
	c1 := botCall(t, setup, room, call1.ID())
	assert.Equal(t, "remote", c1.HangupBy)
	assert.Equal(t, "user_hangup", c1.HangupReason)
}

// TestJSSelectAnswerTwoDevices: the bot calls a user logged in on two
// devices that both answer at once; the bot takes one answer and selects
// it (m.call.select_answer), the other device's call ends as answered
// elsewhere.
func TestJSSelectAnswerTwoDevices(t *testing.T) {
	setup, bot := startCallBot(t, "")
	dev1, _ := newJSUser(t, "jstwodev", false, jsclient.IncomingAnswer)
	dev2, _ := newJSDevice(t, localpartOf(dev1.UserID), false, jsclient.IncomingAnswer)
	require.Equal(t, dev1.UserID, dev2.UserID)
	require.NotEqual(t, dev1.DeviceID, dev2.DeviceID)
	room := jsRoomWithBot(t, dev1, setup.UserID, false)
	ctx := ctxFor(t)
	require.NoError(t, dev2.WaitRoom(ctx, room, "join"))
	require.NoError(t, dev2.WaitMember(ctx, room, setup.UserID.String(), "join"))

	jsCommand(t, dev1, room, setup.UserID, "!voip call "+dev1.UserID)
	call1, err := dev1.WaitIncoming(ctx)
	require.NoError(t, err)
	call2, err := dev2.WaitIncoming(ctx)
	require.NoError(t, err)
	require.Equal(t, call1.ID(), call2.ID())

	// Each call either connects or ends (WaitState fails at once when the
	// call ended without connecting).
	calls := []*jsclient.Call{call1, call2}
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() { _, errs[i] = c.WaitState(ctx, jsclient.StateConnected) })
	}
	wg.Wait()
	var winner, loser *jsclient.Call
	switch {
	case errs[0] == nil && errs[1] != nil:
		winner, loser = call1, call2
	case errs[1] == nil && errs[0] != nil:
		winner, loser = call2, call1
	default:
		t.Fatalf("exactly one device's call must connect: device %s: %v; device %s: %v",
			dev1.DeviceID, errs[0], dev2.DeviceID, errs[1])
	}
	t.Logf("device %s won", winner.Client().DeviceID)
	waitEnded(t, loser)
	require.Equal(t, "answered_elsewhere", loser.HangupReason())
	require.Equal(t, "remote", loser.HangupParty())
	requireJSMedia(t, winner, false)
	waitMetric(t, bot, `voipbot_calls{state="connected"} 1`)

	require.NoError(t, winner.Hangup(ctx, ""))
	waitEnded(t, winner)
	waitBotIdle(t, bot)

	stopBot(t, bot)
	c := botCall(t, setup, room, call1.ID())
	require.Equal(t, winner.Client().DeviceID, c.PeerPartyID, "the bot's peer is the device it selected")
	require.Equal(t, "remote", c.HangupBy)
	require.False(t, c.ConnectedAt.IsZero())
}

// TestJSEncryptedCallsBot: js-sdk with its Rust crypto calls the bot in an
// encrypted room; every call event goes over the wire encrypted.
func TestJSEncryptedCallsBot(t *testing.T) {
	setup, bot := startCallBot(t, "")
	js, opts := newJSUser(t, "jscrypt", true, jsclient.IncomingNotify)
	room := jsRoomWithBot(t, js, setup.UserID, true)
	ctx := ctxFor(t)

	call, err := js.PlaceCall(ctx, room, "", false)
	require.NoError(t, err)
	waitConnected(t, call)
	requireJSMedia(t, call, false)
	waitMetric(t, bot, `voipbot_calls{state="connected"} 1`)

	require.NoError(t, call.Hangup(ctx, ""))
	waitEnded(t, call)
	waitBotIdle(t, bot)
	require.Empty(t, call.Errors())

	// Every call event, js-sdk's and the bot's, went encrypted.
	events := rawRoomEvents(t, opts, room)
	var fromBot int
	for _, e := range events {
		require.Falsef(t, strings.HasPrefix(e.Type, "m.call."), "a call event in the clear: %s from %s", e.Type, e.Sender)
		if e.Sender == setup.UserID.String() && e.Type == "m.room.encrypted" {
			fromBot++
		}
	}
	require.GreaterOrEqual(t, fromBot, 2, "the bot's answer and candidates (or hangup), encrypted")

	stopBot(t, bot)
	c := botCall(t, setup, room, call.ID())
	require.False(t, c.ConnectedAt.IsZero())
	require.Equal(t, "remote", c.HangupBy)
}

type rawEvent struct {
	Type   string `json:"type"`
	Sender string `json:"sender"`
}

// rawRoomEvents lists the room's latest events as the server has them
// (before any decryption).
func rawRoomEvents(t *testing.T, opts jsclient.ClientOptions, room string) []rawEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t), http.MethodGet,
		fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/messages?dir=b&limit=200", opts.HomeserverURL, url.PathEscape(room)), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+opts.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var page struct {
		Chunk []rawEvent `json:"chunk"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
	return page.Chunk
}

// TestJSToneSourceAndHold: in a room set to the tone source, a js-sdk video
// call hears the tone and sees the test pattern; js-sdk puts the bot on hold
// (m.call.negotiate, sendonly) and the bot shows it, then resumes.
func TestJSToneSourceAndHold(t *testing.T) {
	setup, bot := startCallBot(t, "")
	js, _ := newJSUser(t, "jstone", false, jsclient.IncomingNotify)
	room := jsRoomWithBot(t, js, setup.UserID, false)
	ctx := ctxFor(t)
	reply := jsCommand(t, js, room, setup.UserID, "!voip source tone")
	require.Contains(t, reply.Body, "now go to **tone**")

	call, err := js.PlaceCall(ctx, room, "", true)
	require.NoError(t, err)
	waitConnected(t, call)
	requireJSMedia(t, call, true)
	stats, err := call.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, "video/VP8", stats.Video.InboundCodec, "the test pattern")
	requireHears(t, call, 440)

	require.NoError(t, call.SetRemoteOnHold(ctx, true))
	status := jsCommand(t, js, room, setup.UserID, "!voip status")
	for !strings.Contains(status.Body, "on hold") {
		// The command and the negotiate travel separately: ask until the
		// bot has seen the hold (each reply is a round trip, not a sleep).
		require.NoError(t, ctx.Err(), "the bot never showed the hold:\n%s", status.Body)
		status = jsCommand(t, js, room, setup.UserID, "!voip status")
	}
	require.Contains(t, status.Body, "sending tone")
	require.NoError(t, call.SetRemoteOnHold(ctx, false))
	require.NoError(t, call.Hangup(ctx, ""))
	waitEnded(t, call)
	waitBotIdle(t, bot)
}

// TestJSBotCallsJSEncrypted: the bot places a call in an encrypted room;
// js-sdk (Rust crypto) decrypts the invite, answers, and media flows.
func TestJSBotCallsJSEncrypted(t *testing.T) {
	setup, bot := startCallBot(t, "")
	js, _ := newJSUser(t, "jscryptin", true, jsclient.IncomingNotify)
	room := jsRoomWithBot(t, js, setup.UserID, true)
	ctx := ctxFor(t)

	jsCommand(t, js, room, setup.UserID, "!voip call")
	call, err := js.WaitIncoming(ctx)
	require.NoError(t, err)
	require.NoError(t, call.Answer(ctx))
	waitConnected(t, call)
	requireJSMedia(t, call, false)
	require.NoError(t, call.Hangup(ctx, ""))
	waitEnded(t, call)
	waitBotIdle(t, bot)
}
