package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/jsclient"
	"github.com/voipbot/voipbot/store"
)

// The people's tones: neither is 440 Hz, the bot's own, and neither is a
// harmonic of the other, so that the dominant frequency a side hears says
// who it hears.
const (
	toneA = 880
	toneB = 660
	// toneTolerance is how far the measured peak may be from a tone (the
	// analyser's bins are ~23 Hz at 48 kHz with 2048 points).
	toneTolerance = 40
)

var (
	toneMu       sync.Mutex
	toneBrowsers = map[int]*jsclient.Browser{}
)

// toneBrowser is a Chromium whose fake microphone plays a tone of hz (the
// fake microphone is per browser, so each tone has its own), launched on
// first use and closed after the package's tests.
func toneBrowser(tb testing.TB, hz int) *jsclient.Browser {
	tb.Helper()
	toneMu.Lock()
	defer toneMu.Unlock()
	if b := toneBrowsers[hz]; b != nil {
		return b
	}
	wav := filepath.Join(os.TempDir(), fmt.Sprintf("voipbot-e2e-tone-%d.wav", hz))
	require.NoError(tb, jsclient.ToneWAV(wav, float64(hz), 30))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b, err := jsclient.Launch(ctx, jsclient.Options{FakeAudioCapture: wav})
	require.NoError(tb, err, "launching Chromium with a %d Hz microphone", hz)
	toneBrowsers[hz] = b
	return b
}

// closeToneBrowsers closes the tone browsers (from runMain).
func closeToneBrowsers() error {
	toneMu.Lock()
	defer toneMu.Unlock()
	var errs []string
	for hz, b := range toneBrowsers {
		if err := b.Close(); err != nil {
			errs = append(errs, fmt.Sprintf("%d Hz: %v", hz, err))
		}
		delete(toneBrowsers, hz)
	}
	if len(errs) > 0 {
		return fmt.Errorf("closing tone browsers: %s", strings.Join(errs, "; "))
	}
	return nil
}

// newToneUser registers a user whose js-sdk client speaks with a tone of hz.
func newToneUser(tb testing.TB, name string, hz int, crypto bool, incoming jsclient.IncomingPolicy) *jsclient.Client {
	tb.Helper()
	ctx := jsCtx(tb)
	localpart := fmt.Sprintf("%s%d", name, userSeq.Add(1))
	password := "pw-" + localpart + "-tone" // Dendrite takes 8 characters or more
	_, err := hs.Register(ctx, localpart, password)
	require.NoError(tb, err)
	opts, err := jsclient.Login(ctx, hs.URL, localpart, password)
	require.NoError(tb, err)
	opts.Crypto, opts.Incoming = crypto, incoming
	c, err := toneBrowser(tb, hz).NewClient(ctx, opts)
	require.NoError(tb, err)
	tb.Cleanup(func() { assert.NoError(tb, c.Close()) })
	return c
}

// bridgePair is two people and the bot: A's room with the bot routes calls
// to B, who has a direct chat with the bot.
type bridgePair struct {
	setup        *botSetup
	bot          *testbed.Bot
	a, b         *jsclient.Client
	roomA, roomB string
}

func newBridgePair(t *testing.T, encrypted bool, incomingB jsclient.IncomingPolicy) (*bridgePair, func()) {
	t.Helper()
	setup, bot := startCallBot(t, "")
	a := newToneUser(t, "bra", toneA, encrypted, jsclient.IncomingNotify)
	b := newToneUser(t, "brb", toneB, encrypted, incomingB)
	p := &bridgePair{setup: setup, bot: bot, a: a, b: b}
	p.roomB = jsRoomWithBot(t, b, setup.UserID, encrypted)
	p.roomA = jsRoomWithBot(t, a, setup.UserID, encrypted)
	reply := jsCommand(t, a, p.roomA, setup.UserID, "!voip route matrix:"+b.UserID)
	require.Contains(t, reply.Body, "now go to **matrix:"+b.UserID+"**")
	return p, func() { stopBot(t, bot) }
}

// ring: A calls the bot, and B's phone rings (B answers when the test says).
func (p *bridgePair) ring(t *testing.T) (callA, callB *jsclient.Call) {
	t.Helper()
	ctx := jsCtx(t)
	callA, err := p.a.PlaceCall(ctx, p.roomA, "", false)
	require.NoError(t, err)
	callB, err = p.b.WaitIncoming(ctx)
	require.NoError(t, err)
	return callA, callB
}

// connect: A calls the bot, B (who answers at once) is rung, and A's call
// connects.
func (p *bridgePair) connect(t *testing.T, video bool) (callA, callB *jsclient.Call) {
	t.Helper()
	callA, err := p.a.PlaceCall(jsCtx(t), p.roomA, "", video)
	require.NoError(t, err)
	waitConnected(t, callA)
	calls := p.b.Calls()
	require.Len(t, calls, 1, "B was rung once")
	return callA, calls[0]
}

// requireHears waits until call's remote audio has the tone hz as its
// dominant frequency.
func requireHears(t *testing.T, call *jsclient.Call, hz int) {
	t.Helper()
	spec, err := call.WaitRemoteTone(jsCtx(t), float64(hz), toneTolerance)
	require.NoErrorf(t, err, "%s hears %d Hz (last spectrum %+v)", call.Client().UserID, hz, spec)
	t.Logf("%s hears %.1f Hz at %.0f dBFS", call.Client().UserID, spec.Hz, spec.DB)
}

// TestBridgeMatrixToMatrix: A calls the bot in a room routed to B; B's
// phone rings (A's keeps ringing, unanswered, meanwhile); B answers and
// each hears the other's tone, not their own and not the bot's; B hangs up
// and A's call ends too. The bot's records link both legs in one bridge.
func TestBridgeMatrixToMatrix(t *testing.T) {
	p, stop := newBridgePair(t, false, jsclient.IncomingNotify)
	ctx := jsCtx(t)
	require.Contains(t, jsCommand(t, p.a, p.roomA, p.setup.UserID, "!voip report on").Body, "now **on**")

	callA, callB := p.ring(t)
	require.Equal(t, p.roomB, callB.RoomID())
	require.Equal(t, p.setup.UserID.String(), callB.Opponent())
	require.NotEqual(t, jsclient.StateConnected, callA.State(), "A is not answered before B answers")

	require.NoError(t, callB.Answer(ctx))
	waitConnected(t, callA)
	waitConnected(t, callB)
	requireHears(t, callA, toneB)
	requireHears(t, callB, toneA)
	waitMetric(t, p.bot, `voipbot_bridges 1`)
	waitMetric(t, p.bot, `voipbot_bridge_legs{kind="matrix",state="connected"} 2`)

	require.NoError(t, callB.Hangup(ctx, ""))
	waitEnded(t, callB)
	waitEnded(t, callA)
	require.Equal(t, "user_hangup", callA.HangupReason())
	waitMetric(t, p.bot, `voipbot_bridges 0`)
	report, err := p.a.WaitMessage(ctx, p.roomA, jsclient.MessageMatch{Sender: p.setup.UserID.String(), Contains: "Call report"})
	require.NoError(t, err)
	t.Logf("the report:\n%s", report.Body)
	for _, want := range []string{p.a.UserID + " (matrix, inbound)", p.b.UserID + " (matrix, outbound)", "from it, audio audio/opus", "round trip"} {
		assert.Contains(t, report.Body, want)
	}
	stop()

	db := openBotDB(t, p.setup.Dir+"/voipbot.db")
	c := botCall(t, p.setup, p.roomA, callA.ID())
	require.Equal(t, store.CallInbound, c.Direction)
	require.Equal(t, "local", c.HangupBy, "the bot ended A's leg for B's hangup")
	legs := bridgeLegsOf(t, db, "matrix:"+callA.ID())
	require.Len(t, legs, 2, "A's and B's legs are one bridge")
	assert.Equal(t, "inbound", legs[0].Direction)
	assert.Equal(t, "outbound", legs[1].Direction)
	assert.Equal(t, p.b.UserID, legs[1].Peer)
	assert.Equal(t, "peer", legs[1].EndedBy)
	for _, l := range legs {
		assert.Equal(t, store.LegStateEnded, l.State)
		assert.False(t, l.AnsweredAt.IsZero())
	}
}

// bridgeLegsOf finds the bridge a leg is in and returns its legs.
func bridgeLegsOf(t *testing.T, db *store.Store, legID string) []*store.BridgeLeg {
	t.Helper()
	id, err := db.BridgeOfLeg(ctxFor(t), legID)
	require.NoError(t, err)
	require.NotEmptyf(t, id, "leg %s is in a bridge", legID)
	legs, err := db.BridgeLegs(ctxFor(t), id)
	require.NoError(t, err)
	return legs
}

// TestBridgeVideo: a video call through the bridge shows B's frames at A and
// A's at B.
func TestBridgeVideo(t *testing.T) {
	p, stop := newBridgePair(t, false, jsclient.IncomingAnswer)
	defer stop()
	ctx := jsCtx(t)
	callA, callB := p.connect(t, true)
	requireJSMedia(t, callA, true)
	requireJSMedia(t, callB, true)
	requireHears(t, callA, toneB)
	requireHears(t, callB, toneA)
	require.NoError(t, callA.Hangup(ctx, ""))
	waitEnded(t, callB)
}

// TestBridgeDecline: B declines; A's call, still ringing, ends with B's
// decline (a reject), and nothing is left.
func TestBridgeDecline(t *testing.T) {
	p, stop := newBridgePair(t, false, jsclient.IncomingNotify)
	defer stop()
	ctx := jsCtx(t)
	callA, callB := p.ring(t)
	require.NoError(t, callB.Reject(ctx))
	waitEnded(t, callA)
	assert.Empty(t, callA.Errors())
	_, connected := callA.StateTime(jsclient.StateConnected)
	assert.False(t, connected, "A was never answered")
	waitMetric(t, p.bot, `voipbot_bridges 0`)
}

// TestBridgeBusy: B is busy (js-sdk rejects with user_busy); A hears busy.
func TestBridgeBusy(t *testing.T) {
	p, stop := newBridgePair(t, false, jsclient.IncomingNotify)
	defer stop()
	ctx := jsCtx(t)
	callA, callB := p.ring(t)
	require.NoError(t, callB.Hangup(ctx, "user_busy"))
	waitEnded(t, callA)
	assert.Equal(t, "user_busy", callA.HangupReason())
}

// TestBridgeCallerGivesUp: A hangs up while B's phone rings: B stops
// ringing.
func TestBridgeCallerGivesUp(t *testing.T) {
	p, stop := newBridgePair(t, false, jsclient.IncomingNotify)
	defer stop()
	ctx := jsCtx(t)
	callA, callB := p.ring(t)
	require.NoError(t, callA.Hangup(ctx, ""))
	waitEnded(t, callB)
	waitMetric(t, p.bot, `voipbot_bridges 0`)
}

// TestBridgeEncrypted: the same bridge in encrypted rooms.
func TestBridgeEncrypted(t *testing.T) {
	p, stop := newBridgePair(t, true, jsclient.IncomingAnswer)
	defer stop()
	callA, callB := p.connect(t, false)
	requireHears(t, callA, toneB)
	requireHears(t, callB, toneA)
	require.NoError(t, callA.Hangup(jsCtx(t), ""))
	waitEnded(t, callB)
}

// TestBridgeCallCommand: `!voip call matrix:@B` rings A, then (once A
// answers) B, and bridges them.
func TestBridgeCallCommand(t *testing.T) {
	setup, bot := startCallBot(t, "")
	defer stopBot(t, bot)
	a := newToneUser(t, "cca", toneA, false, jsclient.IncomingNotify)
	b := newToneUser(t, "ccb", toneB, false, jsclient.IncomingAnswer)
	jsRoomWithBot(t, b, setup.UserID, false)
	roomA := jsRoomWithBot(t, a, setup.UserID, false)
	ctx := jsCtx(t)
	reply := jsCommand(t, a, roomA, setup.UserID, "!voip call matrix:"+b.UserID)
	require.Contains(t, reply.Body, "once you answer, the bot calls matrix:"+b.UserID)
	callA, err := a.WaitIncoming(ctx)
	require.NoError(t, err)
	require.NoError(t, callA.Answer(ctx))
	requireHears(t, callA, toneB)
	requireHears(t, b.Calls()[0], toneA)
	require.NoError(t, callA.Hangup(ctx, ""))
	waitEnded(t, b.Calls()[0])
}

// TestBridgeRouteRefusals: bad targets, loops and members without the power
// to change the room's settings are refused, and change nothing.
func TestBridgeRouteRefusals(t *testing.T) {
	setup, bot := startCallBot(t, "")
	defer stopBot(t, bot)
	a := newToneUser(t, "rra", toneA, false, jsclient.IncomingNotify)
	b := newToneUser(t, "rrb", toneB, false, jsclient.IncomingNotify)
	roomB := jsRoomWithBot(t, b, setup.UserID, false)
	roomA := jsRoomWithBot(t, a, setup.UserID, false)
	cases := map[string]string{
		"!voip route pigeon:abc":                      "not a kind of target",
		"!voip route jami:abc":                        "is not a Jami ID",
		"!voip route matrix:bob":                      "must be a user",
		"!voip route @x:y":                            "write a Matrix address as matrix:@x:y",
		"!voip route matrix:" + setup.UserID.String(): "cannot call itself",
		"!voip route matrix:" + roomA:                 "that is this room",
		"!voip route matrix:!nowhere:localhost":       "the bot is not in",
	}
	for cmd, want := range cases {
		reply := jsCommand(t, a, roomA, setup.UserID, cmd)
		assert.Containsf(t, reply.Body, want, "%s → %s", cmd, reply.Body)
	}
	// A → B, then B → A: a loop.
	require.Contains(t, jsCommand(t, a, roomA, setup.UserID, "!voip route matrix:"+b.UserID).Body, "now go to")
	reply := jsCommand(t, b, roomB, setup.UserID, "!voip route matrix:"+a.UserID)
	assert.Contains(t, reply.Body, "leads back here")
	assert.Contains(t, jsCommand(t, a, roomA, setup.UserID, "!voip route").Body, "matrix:"+b.UserID, "unchanged")

	// A member without the power level to change state (the room's
	// creator has it; a member who joined has not).
	c := newToneUser(t, "rrc", toneA, false, jsclient.IncomingNotify)
	shared := jsRoomWithBot(t, a, setup.UserID, false, c)
	reply = jsCommand(t, c, shared, setup.UserID, "!voip route echo")
	assert.Contains(t, reply.Body, "power level")
	assert.Contains(t, jsCommand(t, a, shared, setup.UserID, "!voip route echo").Body, "now go to **echo**", "the creator may")
}

// TestBridgeKilledBot: the bot is killed (SIGKILL) mid-bridge; the next
// start ends both legs it left — each browser's call ends with the bot's
// hangup (unknown_error), not by its own ICE timeout — and leaves nothing
// active in its tables.
func TestBridgeKilledBot(t *testing.T) {
	setup := newBotSetup(t, hs, callMedia)
	first, err := testbed.StartBot(botBinary, setup.Dir, setup.Config, setup.HTTPAddr, nil)
	require.NoError(t, err)
	_, err = first.WaitReady(ctxFor(t))
	require.NoError(t, err)
	a := newToneUser(t, "kba", toneA, false, jsclient.IncomingNotify)
	b := newToneUser(t, "kbb", toneB, false, jsclient.IncomingAnswer)
	jsRoomWithBot(t, b, setup.UserID, false)
	roomA := jsRoomWithBot(t, a, setup.UserID, false)
	require.Contains(t, jsCommand(t, a, roomA, setup.UserID, "!voip route matrix:"+b.UserID).Body, "now go to")
	ctx := jsCtx(t)
	callA, err := a.PlaceCall(ctx, roomA, "", false)
	require.NoError(t, err)
	waitConnected(t, callA)
	callB := b.Calls()[0]
	requireHears(t, callA, toneB)

	first.Kill()
	second := setup.start(t)
	ready := time.Now()
	waitEnded(t, callA)
	waitEnded(t, callB)
	t.Logf("both calls ended %s after the restarted bot was ready", time.Since(ready).Round(time.Millisecond))
	for _, c := range []*jsclient.Call{callA, callB} {
		assert.Equal(t, "unknown_error", c.HangupReason(), "%s: the bot's hangup ended it", c.Client().UserID)
		assert.Equal(t, "remote", c.HangupParty(), c.Client().UserID)
	}
	waitMetric(t, second, `voipbot_bridges 0`)
	stopBot(t, second)
	db := openBotDB(t, setup.Dir+"/voipbot.db")
	n, err := db.CountActiveBridges(ctxFor(t))
	require.NoError(t, err)
	require.Zero(t, n)
	legs := bridgeLegsOf(t, db, "matrix:"+callA.ID())
	for _, l := range legs {
		assert.Equal(t, "the bot restarted", l.EndReason)
	}
}

// TestBridgeRecording: with `!voip record on` in an encrypted room, a
// bridged call is recorded; the room is told when recording starts and
// stops, each party's audio is posted as an Ogg/Opus file that the caller's
// js-sdk client decrypts, and the files are removed from the bot's disk
// once posted.
func TestBridgeRecording(t *testing.T) {
	p, stop := newBridgePair(t, true, jsclient.IncomingAnswer)
	defer stop()
	ctx := jsCtx(t)
	require.Contains(t, jsCommand(t, p.a, p.roomA, p.setup.UserID, "!voip record on").Body, "Recording is now **on**")
	callA, callB := p.connect(t, false)
	requireHears(t, callA, toneB)
	_, err := p.a.WaitMessage(ctx, p.roomA, jsclient.MessageMatch{Sender: p.setup.UserID.String(), Contains: "being recorded"})
	require.NoError(t, err)
	require.NoError(t, callA.Hangup(ctx, ""))
	waitEnded(t, callB)
	stopped, err := p.a.WaitMessage(ctx, p.roomA, jsclient.MessageMatch{Sender: p.setup.UserID.String(), Contains: "Recording stopped"})
	require.NoError(t, err)
	require.Contains(t, stopped.Body, "2 file(s) above", "one Ogg file per party's audio")
	for _, who := range []string{callA.ID(), callB.ID()} {
		msg, err := p.a.WaitMessage(ctx, p.roomA, jsclient.MessageMatch{Sender: p.setup.UserID.String(), Contains: who})
		require.NoErrorf(t, err, "the recording of %s is posted", who)
		assert.True(t, strings.HasSuffix(msg.Body, ".ogg"), msg.Body)
	}
	left, err := filepath.Glob(filepath.Join(p.setup.Dir, "recordings", "*"))
	require.NoError(t, err)
	assert.Empty(t, left, "posted recordings are removed (media.keep_recordings is off)")
}

// TestBridgeHoldAndMute: A puts the call on hold — B's js-sdk sees itself
// put on hold (the bot's negotiate, sendonly) — and resumes, after which
// each hears the other again; A's mute is shown to B as the bot's stream
// muted.
func TestBridgeHoldAndMute(t *testing.T) {
	p, stop := newBridgePair(t, false, jsclient.IncomingAnswer)
	defer stop()
	ctx := jsCtx(t)
	callA, callB := p.connect(t, false)
	requireHears(t, callB, toneA)

	require.NoError(t, callA.SetRemoteOnHold(ctx, true))
	require.NoError(t, callB.WaitLocalHold(ctx, true), "B sees the hold")
	require.NoError(t, callA.SetRemoteOnHold(ctx, false))
	require.NoError(t, callB.WaitLocalHold(ctx, false), "B sees the resume")
	requireHears(t, callB, toneA)
	requireHears(t, callA, toneB)

	// js-sdk counts a voice call's absent camera as muted video.
	require.NoError(t, callB.WaitRemoteMuted(ctx, false, true), "B sees A's microphone on")
	require.NoError(t, callA.SetMicrophoneMuted(ctx, true))
	require.NoError(t, callB.WaitRemoteMuted(ctx, true, true), "B sees A's microphone muted")
	require.NoError(t, callA.Hangup(ctx, ""))
	waitEnded(t, callB)
	assert.Empty(t, callA.Errors())
	assert.Empty(t, callB.Errors())
}

// TestBridgeStoppedBot: SIGTERM mid-bridge hangs up both legs (each browser
// sees the bot's hangup), and the records say why.
func TestBridgeStoppedBot(t *testing.T) {
	p, _ := newBridgePair(t, false, jsclient.IncomingAnswer)
	callA, callB := p.connect(t, false)
	requireHears(t, callB, toneA)

	stopBot(t, p.bot)
	waitEnded(t, callA)
	waitEnded(t, callB)
	for _, c := range []*jsclient.Call{callA, callB} {
		assert.Equal(t, "user_hangup", c.HangupReason(), c.Client().UserID)
		assert.Equal(t, "remote", c.HangupParty(), c.Client().UserID)
	}
	db := openBotDB(t, p.setup.Dir+"/voipbot.db")
	n, err := db.CountActiveBridges(ctxFor(t))
	require.NoError(t, err)
	require.Zero(t, n)
	for _, l := range bridgeLegsOf(t, db, "matrix:"+callA.ID()) {
		assert.Equal(t, "shutdown", l.EndReason, l.LegID)
		assert.Equal(t, "the bot is shutting down", l.EndDetail, l.LegID)
	}
}

// TestBridgeRoutesToNewDirectRoom: B has never talked to the bot. A's call
// to a room routed to B makes the bot create a direct room with B (marked
// m.direct), invite B and wait; B joins and is rung there; A and B hear
// each other. A second call reuses that room.
func TestBridgeRoutesToNewDirectRoom(t *testing.T) {
	setup, bot := startCallBot(t, "")
	defer stopBot(t, bot)
	a := newToneUser(t, "nda", toneA, false, jsclient.IncomingNotify)
	// The bot has encryption, so the direct room it makes is encrypted: B
	// needs encryption to read the call.
	b := newToneUser(t, "ndb", toneB, true, jsclient.IncomingAnswer)
	roomA := jsRoomWithBot(t, a, setup.UserID, false)
	require.Contains(t, jsCommand(t, a, roomA, setup.UserID, "!voip route matrix:"+b.UserID).Body, "now go to")
	ctx := jsCtx(t)
	callA, err := a.PlaceCall(ctx, roomA, "", false)
	require.NoError(t, err)
	dm, err := b.WaitInvite(ctx, setup.UserID.String())
	require.NoError(t, err, "the bot invites B to a direct room")
	_, err = b.JoinRoom(ctx, dm)
	require.NoError(t, err)
	intro, err := b.WaitMessage(ctx, dm, jsclient.MessageMatch{Sender: setup.UserID.String(), Contains: "You have a call"})
	require.NoError(t, err, "the bot says who calls before it rings")
	assert.Contains(t, intro.Body, a.UserID)
	waitConnected(t, callA)
	callB := b.Calls()[0]
	require.Equal(t, dm, callB.RoomID(), "B is rung in the new direct room")
	requireHears(t, callA, toneB)
	requireHears(t, callB, toneA)
	require.NoError(t, callA.Hangup(ctx, ""))
	waitEnded(t, callB)
	waitMetric(t, bot, `voipbot_bridges 0`)

	// The next call rings the same room.
	callA, err = a.PlaceCall(ctx, roomA, "", false)
	require.NoError(t, err)
	waitConnected(t, callA)
	calls := b.Calls()
	require.Len(t, calls, 2)
	assert.Equal(t, dm, calls[1].RoomID())
	require.NoError(t, callA.Hangup(ctx, ""))
	waitEnded(t, calls[1])
}

// TestBridgeRoutesToRoom: a route to a room rings everyone in it; the first
// to answer is bridged, and the others stop ringing.
func TestBridgeRoutesToRoom(t *testing.T) {
	setup, bot := startCallBot(t, "")
	defer stopBot(t, bot)
	a := newToneUser(t, "rta", toneA, false, jsclient.IncomingNotify)
	b := newToneUser(t, "rtb", toneB, false, jsclient.IncomingNotify)
	c := newToneUser(t, "rtc", toneB, false, jsclient.IncomingNotify)
	team := jsRoomWithBot(t, b, setup.UserID, false, c)
	roomA := jsRoomWithBot(t, a, setup.UserID, false)
	require.Contains(t, jsCommand(t, a, roomA, setup.UserID, "!voip route matrix:"+team).Body, "now go to **matrix:"+team+"**")
	ctx := jsCtx(t)
	callA, err := a.PlaceCall(ctx, roomA, "", false)
	require.NoError(t, err)
	callB, err := b.WaitIncoming(ctx)
	require.NoError(t, err)
	callC, err := c.WaitIncoming(ctx)
	require.NoError(t, err)
	require.Equal(t, team, callB.RoomID())
	require.NoError(t, callB.Answer(ctx))
	waitEnded(t, callC) // select_answer named B: C's phone stops ringing
	waitConnected(t, callA)
	requireHears(t, callA, toneB)
	requireHears(t, callB, toneA)
	require.NoError(t, callB.Hangup(ctx, ""))
	waitEnded(t, callA)
}
