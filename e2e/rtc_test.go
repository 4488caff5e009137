package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/elementcall"
	"github.com/voipbot/voipbot/internal/testbed/jsclient"
	"github.com/voipbot/voipbot/internal/testbed/livekit"
	"github.com/voipbot/voipbot/internal/testbed/lkjwt"
)

// The Element Call test bed, shared by the package's tests: livekit-server,
// the JWT service of the test bed (lk-jwt-service's /sfu/get against
// Dendrite's OpenID userinfo), and Element Call's web app.
type rtcBed struct {
	lk  *livekit.Server
	jwt *lkjwt.Server
	app *elementcall.Server
	// mixer is the bot built as the container image is (cgo, libopus),
	// which mixes the call for a single-stream party.
	mixer string
	dir   string
}

var (
	rtcMu     sync.Mutex
	sharedRTC *rtcBed
)

// rtcTestBed starts the test bed on first use; closeRTCBed (from runMain)
// stops it.
func rtcTestBed(t testing.TB) *rtcBed {
	t.Helper()
	rtcMu.Lock()
	defer rtcMu.Unlock()
	if sharedRTC != nil {
		return sharedRTC
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a cold build of livekit-server
	defer cancel()
	lk, err := livekit.Start(ctx, livekit.Options{})
	require.NoError(t, err, "starting livekit-server")
	jwt, err := lkjwt.Start(lk.JWTConfig(map[string]string{testbed.ServerName: hs.URL}))
	if err != nil {
		lk.Stop()
		require.NoError(t, err, "starting the JWT service")
	}
	require.NoError(t, elementcall.Prepare(ctx, elementcall.JSDir(), nil), "installing Element Call")
	app, err := elementcall.StartServer(elementcall.ServerOptions{HomeserverURL: hs.URL, LiveKitServiceURL: jwt.URL})
	if err != nil {
		_ = jwt.Close()
		lk.Stop()
		require.NoError(t, err, "serving Element Call")
	}
	dir, err := os.MkdirTemp("", "voipbot-e2e-rtc-")
	require.NoError(t, err)
	mixer, err := testbed.BuildMixerBot(dir)
	if err != nil {
		_ = app.Close()
		_ = jwt.Close()
		lk.Stop()
		require.NoError(t, err, "building the bot with the mixer")
	}
	sharedRTC = &rtcBed{lk: lk, jwt: jwt, app: app, mixer: mixer, dir: dir}
	return sharedRTC
}

func closeRTCBed() error {
	rtcMu.Lock()
	defer rtcMu.Unlock()
	if sharedRTC == nil {
		return nil
	}
	err := sharedRTC.app.Close()
	if jerr := sharedRTC.jwt.Close(); err == nil {
		err = jerr
	}
	sharedRTC.lk.Stop()
	_ = os.RemoveAll(sharedRTC.dir)
	sharedRTC = nil
	return err
}

// ecUser is a person with Element Call in a browser whose microphone
// plays their tone, and a Matrix client of theirs (another device) for
// room setup and commands.
type ecUser struct {
	mx      *testbed.User
	session elementcall.Session
	browser *elementcall.Browser
}

func newECUser(t testing.TB, bed *rtcBed, name string, hz int) *ecUser {
	t.Helper()
	return newECUserAt(t, bed.app.URL, name, hz)
}

// newECUserAt is newECUser with the Element Call served at appURL (one
// of another homeserver URL or mode).
func newECUserAt(t testing.TB, appURL, name string, hz int) *ecUser {
	t.Helper()
	ctx := ctxFor(t)
	localpart := fmt.Sprintf("%s%d", name, userSeq.Add(1))
	password := "pw-" + localpart + "-call" // Dendrite takes 8 characters or more
	_, err := hs.Register(ctx, localpart, password)
	require.NoError(t, err)
	// With encryption: in an encrypted room the bot neither takes commands
	// sent in the clear nor replies in a way a client without keys reads.
	u, err := hs.Login(ctx, localpart, password, t.TempDir(), true)
	require.NoError(t, err)
	t.Cleanup(u.Close)
	session, err := elementcall.Login(ctx, hs.URL, localpart, password)
	require.NoError(t, err)
	wav := filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d.wav", name, hz))
	require.NoError(t, jsclient.ToneWAV(wav, float64(hz), 30))
	b, err := elementcall.Launch(ctx, elementcall.Options{Name: localpart, AppURL: appURL, WAV: wav, ArtifactsDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's Element Call console (end):\n%s", localpart, b.ConsoleTail(80))
		}
		assert.NoError(t, b.Close())
	})
	return &ecUser{mx: u, session: session, browser: b}
}

// callRoom makes a room of the user's with the bot in it, where members
// may send call memberships (as in the rooms Element Call makes); others
// are invited too (they join themselves).
func (u *ecUser) callRoom(t testing.TB, bot id.UserID, encrypted bool, others ...id.UserID) id.RoomID {
	t.Helper()
	ctx := ctxFor(t)
	body := map[string]any{
		"preset": "private_chat", "invite": append([]id.UserID{bot}, others...),
		"power_level_content_override": map[string]any{"events": map[string]int{"org.matrix.msc3401.call.member": 0}},
	}
	if encrypted {
		body["initial_state"] = []map[string]any{{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}
	}
	var resp struct {
		RoomID id.RoomID `json:"room_id"`
	}
	_, err := u.mx.MakeRequest(ctx, http.MethodPost, u.mx.BuildClientURL("v3", "createRoom"), body, &resp)
	require.NoError(t, err)
	_, err = u.mx.WaitEvent(ctx, testbed.Membership(resp.RoomID, bot, event.MembershipJoin))
	require.NoError(t, err, "the bot joins after the invite")
	return resp.RoomID
}

// useHomeserverURL has the bot reach its homeserver at url (a front of
// the test bed's before Dendrite) instead of Dendrite's own.
func (s *botSetup) useHomeserverURL(t testing.TB, url string) {
	t.Helper()
	cfg, err := os.ReadFile(s.Config)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(s.Config, []byte(strings.Replace(string(cfg), "url: "+hs.URL, "url: "+url, 1)), 0o600))
}

// startRTCBot runs a bot whose Element Call focus is the test bed's JWT
// service: the container image's build (with the mixer) unless pure.
func startRTCBot(t *testing.T, bed *rtcBed, pure bool) (*botSetup, *testbed.Bot, string) {
	t.Helper()
	setup := newBotSetup(t, hs, fmt.Sprintf("calls:\n  source: tone\nrtc:\n  livekit_service_url: %q\n", bed.jwt.URL))
	if !pure {
		setup.Binary = bed.mixer
	}
	bot := setup.start(t)
	acct := readAccount(t, filepath.Join(setup.Dir, "voipbot.db"))
	return setup, bot, elementcall.Identity(setup.UserID.String(), acct.DeviceID.String())
}

// TestElementCallJoin: a person is in a room's Element Call; `!voip join
// tone` puts the bot in: Element Call plays the bot's participant (its
// identity matches the bot's membership) and the person hears the bot's
// 440 Hz from it; `!voip leave` takes it out again.
func TestElementCallJoin(t *testing.T) {
	bed := rtcTestBed(t)
	setup, bot, botIdentity := startRTCBot(t, bed, true)
	alice := newECUser(t, bed, "eca", toneA)
	room := alice.callRoom(t, setup.UserID, false)
	ctx := ctxFor(t)

	joined, err := alice.browser.Join(ctx, room.String(), alice.session, "")
	require.NoError(t, err)
	t.Logf("alice in the call %s after clicking join", joined.Took())

	reply := command(t, alice.mx, room, setup.UserID, "!voip join tone")
	require.Contains(t, body(reply), "Joining this room's call")
	tone, err := alice.browser.WaitParticipantTone(ctx, botIdentity, 440, toneTolerance)
	require.NoErrorf(t, err, "alice hears the bot's tone (last %s)", tone)
	t.Logf("alice hears the bot: %s", tone)
	_, err = alice.browser.WaitLog(ctx, "participant matched")
	require.NoError(t, err, "Element Call matched the bot's participant to its membership")
	waitMetric(t, bot, `voipbot_bridge_legs{kind="rtc",state="connected"} 1`)
	status := body(command(t, alice.mx, room, setup.UserID, "!voip status"))
	assert.Contains(t, status, "Element Call in "+room.String())
	assert.Contains(t, status, "the active speaker's audio only (this build has no Opus mixer)", "the pure-Go build says it does not mix")

	reply = command(t, alice.mx, room, setup.UserID, "!voip leave")
	require.Contains(t, body(reply), "Leaving")
	waitMetric(t, bot, `voipbot_bridges 0`)
	leftCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, waitNoMembership(leftCtx, alice, room, setup.UserID), "the bot's membership is {} once it left")
}

// waitNoMembership polls the room's state until user has no current call
// membership (the bot's leave may come before or after its reply, so the
// timeline does not say when to look).
func waitNoMembership(ctx context.Context, u *ecUser, room id.RoomID, user id.UserID) error {
	memberType := event.Type{Type: "org.matrix.msc3401.call.member", Class: event.StateEventType}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		state, err := u.mx.State(ctx, room)
		if err != nil {
			return err
		}
		current := false
		for _, evt := range state[memberType] {
			current = current || (evt.Sender == user && len(evt.Content.Raw) > 0)
		}
		if !current {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the membership of %s is still there: %w", user, ctx.Err())
		case <-tick.C:
		}
	}
}

// TestElementCallBridge: bob (matrix-js-sdk, a legacy 1:1 call) calls the
// bot in a room routed to alice's room's Element Call; the bot joins that
// call and answers bob: bob hears alice's tone, and alice hears bob's from
// the bot's participant — not an echo, not the bot's 440 Hz. Bob hangs up
// and the bot leaves the call. In an encrypted room, whose call Element
// Call encrypts with per-participant keys sent over Olm to-device, bob
// hears alice only if the bot decrypted her frames with the key she sent
// it, and alice hears bob only if she decrypts the bot's frames with the
// key the bot sent her (the bot's track is published as encrypted, so
// Element Call decrypts it and does not warn).
func TestElementCallBridge(t *testing.T) {
	bed := rtcTestBed(t)
	for _, encrypted := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[encrypted], func(t *testing.T) {
			setup, bot, botIdentity := startRTCBot(t, bed, false)
			alice := newECUser(t, bed, "ecba", toneA)
			ecRoom := alice.callRoom(t, setup.UserID, encrypted)
			ctx := ctxFor(t)
			_, err := alice.browser.Join(ctx, ecRoom.String(), alice.session, "")
			require.NoError(t, err)

			bob := newToneUser(t, "ecbb", toneB, false, jsclient.IncomingNotify)
			bobRoom := jsRoomWithBot(t, bob, setup.UserID, false)
			reply := jsCommand(t, bob, bobRoom, setup.UserID, "!voip route rtc:"+ecRoom.String())
			require.Contains(t, reply.Body, "now go to **rtc:"+ecRoom.String()+"**")

			call, err := bob.PlaceCall(ctx, bobRoom, "", false)
			require.NoError(t, err)
			waitConnected(t, call)
			requireHears(t, call, toneA)
			tone, err := alice.browser.WaitParticipantTone(ctx, botIdentity, toneB, toneTolerance)
			require.NoErrorf(t, err, "alice hears bob through the bot (last %s)", tone)
			t.Logf("alice hears bob through the bot: %s", tone)
			waitMetric(t, bot, `voipbot_bridge_legs{kind="rtc",state="connected"} 1`)
			if encrypted {
				p, err := alice.browser.WaitParticipant(ctx, botIdentity, func(p elementcall.Participant) bool { return p.AudioRendered })
				require.NoError(t, err)
				assert.True(t, p.AudioEncrypted, "the bot's audio is published encrypted")
				assert.False(t, p.UnencryptedWarning, "Element Call does not call the bot unencrypted")
				assert.Contains(t, bot.Logs(), "Took a member's media key")
			}

			require.NoError(t, call.Hangup(ctx, ""))
			waitEnded(t, call)
			waitMetric(t, bot, `voipbot_bridges 0`)
			leftCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			require.NoError(t, waitNoMembership(leftCtx, alice, ecRoom, setup.UserID), "the bot left the call with bob's hangup")
		})
	}
}

// The tone of the legacy caller in the three-party tests (the Element Call
// people have toneA and toneB).
const toneCaller = 550

// TestElementCallTwoPeopleEncrypted: two Element Call browsers in an
// encrypted room's call (per-participant keys); `!voip join tone` puts the
// bot in: both show its tile, matched to its membership, and decode its
// tone with the key it sent them.
func TestElementCallTwoPeopleEncrypted(t *testing.T) {
	bed := rtcTestBed(t)
	setup, _, botIdentity := startRTCBot(t, bed, false)
	alice := newECUser(t, bed, "ec2a", toneA)
	carol := newECUser(t, bed, "ec2c", toneB)
	room := alice.callRoom(t, setup.UserID, true, carol.mx.UserID)
	ctx := ctxFor(t)
	_, err := carol.mx.JoinRoomByID(ctx, room)
	require.NoError(t, err)
	for _, u := range []*ecUser{alice, carol} {
		_, err := u.browser.Join(ctx, room.String(), u.session, "")
		require.NoError(t, err)
	}

	reply := command(t, alice.mx, room, setup.UserID, "!voip join tone")
	require.Contains(t, body(reply), "Joining this room's call")
	for _, u := range []*ecUser{alice, carol} {
		tone, err := u.browser.WaitParticipantTone(ctx, botIdentity, 440, toneTolerance)
		require.NoErrorf(t, err, "%s hears the bot's tone (last %s)", u.session.UserID, tone)
		t.Logf("%s hears the bot: %s", u.session.UserID, tone)
		p, err := u.browser.WaitParticipant(ctx, botIdentity, func(p elementcall.Participant) bool { return p.Connected && p.AudioRendered })
		require.NoError(t, err, "the bot's tile is shown, matched to its membership")
		assert.True(t, p.AudioEncrypted)
		assert.False(t, p.UnencryptedWarning)
	}
}

// TestElementCallLegacyCallerHearsEveryone: in an encrypted room whose
// calls go to its Element Call (route rtc), a matrix-js-sdk caller calls
// the bot: both Element Call people hear the caller's tone from the bot,
// and the caller hears both of them at once, mixed. The caller hanging up
// takes the bot out of the call. Called again, the call ends when the last
// Element Call person leaves.
func TestElementCallLegacyCallerHearsEveryone(t *testing.T) {
	bed := rtcTestBed(t)
	setup, bot, botIdentity := startRTCBot(t, bed, false)
	alice := newECUser(t, bed, "ec3a", toneA)
	carol := newECUser(t, bed, "ec3c", toneB)
	bob := newToneUser(t, "ec3b", toneCaller, true, jsclient.IncomingNotify)
	room := alice.callRoom(t, setup.UserID, true, carol.mx.UserID, id.UserID(bob.UserID))
	ctx := ctxFor(t)
	_, err := carol.mx.JoinRoomByID(ctx, room)
	require.NoError(t, err)
	_, err = bob.JoinRoom(ctx, room.String())
	require.NoError(t, err)
	require.Contains(t, body(command(t, alice.mx, room, setup.UserID, "!voip route rtc")), "now go to **rtc**")
	for _, u := range []*ecUser{alice, carol} {
		_, err := u.browser.Join(ctx, room.String(), u.session, "")
		require.NoError(t, err)
	}

	// Bob's first encrypted message in the room, answered: his js-sdk has
	// shared its room key with the bot's device. A call invite sent as his
	// first message right after joining was once encrypted before js-sdk
	// knew the bot's device, and the bot never got its key.
	require.Contains(t, jsCommand(t, bob, room.String(), setup.UserID, "!voip route").Body, "rtc")
	call, err := bob.PlaceCall(ctx, room.String(), setup.UserID.String(), false)
	require.NoError(t, err)
	waitConnected(t, call)
	for _, u := range []*ecUser{alice, carol} {
		tone, err := u.browser.WaitParticipantTone(ctx, botIdentity, toneCaller, toneTolerance)
		require.NoErrorf(t, err, "%s hears the caller through the bot (last %s)", u.session.UserID, tone)
		t.Logf("%s hears the caller: %s", u.session.UserID, tone)
	}
	mix, err := call.WaitRemoteTones(ctx, []float64{toneA, toneB}, toneTolerance)
	require.NoErrorf(t, err, "the caller hears both Element Call people at once (last %s)", mix)
	t.Logf("the caller hears: %s", mix)

	require.NoError(t, call.Hangup(ctx, ""))
	waitEnded(t, call)
	leftCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	require.NoError(t, waitNoMembership(leftCtx, alice, room, setup.UserID), "the caller's hangup takes the bot out of the call")
	cancel()
	waitMetric(t, bot, `voipbot_bridges 0`)

	// Again; this time the Element Call people leave first.
	call, err = bob.PlaceCall(ctx, room.String(), setup.UserID.String(), false)
	require.NoError(t, err)
	waitConnected(t, call)
	for _, u := range []*ecUser{alice, carol} {
		require.NoError(t, u.browser.Leave(ctx))
	}
	waitEnded(t, call)
	t.Logf("the caller's call ended (%s) when the last Element Call person left", call.HangupReason())
	waitMetric(t, bot, `voipbot_bridges 0`)
}

// TestElementCallBotRestarts: the bot stopped (SIGTERM) leaves the call it
// is in; killed (SIGKILL), it leaves it at the next start, within 5 s of
// being ready, and nothing is left active in its tables.
func TestElementCallBotRestarts(t *testing.T) {
	bed := rtcTestBed(t)
	setup, bot, botIdentity := startRTCBot(t, bed, false)
	alice := newECUser(t, bed, "ecra", toneA)
	room := alice.callRoom(t, setup.UserID, false)
	ctx := ctxFor(t)
	_, err := alice.browser.Join(ctx, room.String(), alice.session, "")
	require.NoError(t, err)
	join := func() {
		t.Helper()
		require.Contains(t, body(command(t, alice.mx, room, setup.UserID, "!voip join tone")), "Joining")
		_, err := alice.browser.WaitParticipantTone(ctx, botIdentity, 440, toneTolerance)
		require.NoError(t, err)
	}
	join()
	stopBot(t, bot)
	noneCtx, cancel := context.WithTimeout(ctx, time.Second)
	require.NoError(t, waitNoMembership(noneCtx, alice, room, setup.UserID), "a stopped bot has left the call")
	cancel()

	// Started by hand: a killed bot fails start's clean-exit check.
	doomed, err := testbed.StartBot(setup.Binary, setup.Dir, setup.Config, setup.HTTPAddr, nil)
	require.NoError(t, err)
	_, err = doomed.WaitReady(ctx)
	require.NoError(t, err)
	join()
	doomed.Kill()
	<-doomed.Exited()
	bot = setup.start(t)
	ready := time.Now()
	leftCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, waitNoMembership(leftCtx, alice, room, setup.UserID), "the killed bot's membership is cleared at the next start")
	t.Logf("the killed bot's membership was cleared %s after the restarted bot was ready", time.Since(ready).Round(time.Millisecond))
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

// TestElementCallRingsUser: bob's calls to the bot go to rtc:@alice; the
// bot starts a call in its direct room with alice and rings her (an
// rtc.notification that mentions her, which Element X rings on); bob's
// call rings until alice joins that call in Element Call, then each hears
// the other.
func TestElementCallRingsUser(t *testing.T) {
	bed := rtcTestBed(t)
	setup, _, botIdentity := startRTCBot(t, bed, false)
	alice := newECUser(t, bed, "ecua", toneA)
	bob := newToneUser(t, "ecub", toneB, false, jsclient.IncomingNotify)
	bobRoom := jsRoomWithBot(t, bob, setup.UserID, false)
	reply := jsCommand(t, bob, bobRoom, setup.UserID, "!voip route rtc:"+alice.mx.UserID.String())
	require.Contains(t, reply.Body, "now go to **rtc:"+alice.mx.UserID.String()+"**")
	ctx := ctxFor(t)

	call, err := bob.PlaceCall(ctx, bobRoom, "", false)
	require.NoError(t, err)
	invite, err := alice.mx.WaitEvent(ctx, func(evt *event.Event) bool {
		if evt.Type != event.StateMember || evt.GetStateKey() != alice.mx.UserID.String() || evt.Sender != setup.UserID {
			return false
		}
		_ = evt.Content.ParseRaw(evt.Type)
		return evt.Content.AsMember().Membership == event.MembershipInvite
	})
	require.NoError(t, err, "the bot invites alice to a direct room")
	dm := invite.RoomID
	_, err = alice.mx.JoinRoomByID(ctx, dm)
	require.NoError(t, err)
	ring, err := alice.mx.WaitEvent(ctx, func(evt *event.Event) bool {
		return evt.RoomID == dm && evt.Type.Type == "org.matrix.msc4075.rtc.notification"
	})
	require.NoError(t, err, "the bot rings alice")
	mentions, _ := ring.Content.Raw["m.mentions"].(map[string]any)
	require.Equal(t, []any{alice.mx.UserID.String()}, mentions["user_ids"], "the ring mentions alice")
	require.Equal(t, "ring", ring.Content.Raw["notification_type"])
	require.NotEqual(t, jsclient.StateConnected, call.State(), "bob's call rings until alice joins")

	_, err = alice.browser.Join(ctx, dm.String(), alice.session, "")
	require.NoError(t, err)
	waitConnected(t, call)
	requireHears(t, call, toneA)
	tone, err := alice.browser.WaitParticipantTone(ctx, botIdentity, toneB, toneTolerance)
	require.NoErrorf(t, err, "alice hears bob through the bot (last %s)", tone)
	require.NoError(t, call.Hangup(ctx, ""))
	waitEnded(t, call)
}

// TestElementCallRefusals: in a room where the bot may not send call
// memberships (a private chat's state_default 50; the bot has 0), `!voip
// join` and the route rtc are refused with why; `!voip leave` outside a
// call says so; a bad rtc address is refused.
func TestElementCallRefusals(t *testing.T) {
	bed := rtcTestBed(t)
	setup, _, _ := startRTCBot(t, bed, true)
	alice := newECUser(t, bed, "ecfa", toneA)
	room := inviteBot(t, alice.mx, setup.UserID, false)
	for cmd, want := range map[string]string{
		"!voip join":          "its power level is below what org.matrix.msc3401.call.member needs",
		"!voip join pigeon":   "is not one of the bot's sources",
		"!voip route rtc":     "its power level is below what org.matrix.msc3401.call.member needs",
		"!voip route rtc:bob": "write rtc for this room's Element Call",
		"!voip leave":         "the bot is not in this room's call",
	} {
		assert.Containsf(t, body(command(t, alice.mx, room, setup.UserID, cmd)), want, cmd)
	}
}

// TestElementCallDelayedLeave: on a homeserver with delayed events
// (MSC4140; Dendrite behind the test bed's front that adds them), the bot
// sets a delayed leave when it joins and keeps restarting it; killed, it
// restarts nothing, and the homeserver ends its membership by itself
// within the delay (8 s) — no restart of the bot needed — and Element
// Call drops its tile.
func TestElementCallDelayedLeave(t *testing.T) {
	bed := rtcTestBed(t)
	front, err := testbed.StartDelayedEvents(hs.URL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = front.Close() })
	setup := newBotSetup(t, hs, fmt.Sprintf("calls:\n  source: tone\nrtc:\n  livekit_service_url: %q\n", bed.jwt.URL))
	setup.useHomeserverURL(t, front.URL)
	bot, err := testbed.StartBot(bed.mixer, setup.Dir, setup.Config, setup.HTTPAddr, nil)
	require.NoError(t, err)
	ctx := ctxFor(t)
	_, err = bot.WaitReady(ctx)
	require.NoError(t, err)
	acct := readAccount(t, filepath.Join(setup.Dir, "voipbot.db"))
	botIdentity := elementcall.Identity(setup.UserID.String(), acct.DeviceID.String())

	alice := newECUser(t, bed, "ecda", toneA)
	room := alice.callRoom(t, setup.UserID, false)
	_, err = alice.browser.Join(ctx, room.String(), alice.session, "")
	require.NoError(t, err)
	require.Contains(t, body(command(t, alice.mx, room, setup.UserID, "!voip join tone")), "Joining")
	_, err = alice.browser.WaitParticipantTone(ctx, botIdentity, 440, toneTolerance)
	require.NoError(t, err)
	require.NoError(t, testbed.WaitFor(ctx, func() (bool, error) {
		_, restarted, _ := front.Counts()
		return restarted > 0, nil
	}), "the bot restarts its delayed leave")
	scheduled, restarted, sent := front.Counts()
	t.Logf("delayed leaves scheduled %d, restarted %d, sent %d", scheduled, restarted, sent)
	require.Zero(t, sent)

	killed := time.Now()
	bot.Kill()
	<-bot.Exited()
	leftCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	select {
	case <-front.SentEvents():
	case <-leftCtx.Done():
		t.Fatal("the delayed leave was not sent")
	}
	require.NoError(t, waitNoMembership(leftCtx, alice, room, setup.UserID))
	t.Logf("the dead bot's membership ended %s after the kill, by the homeserver", time.Since(killed).Round(time.Millisecond))
	_, err = alice.browser.WaitParticipants(ctx, func(ps []elementcall.Participant) bool {
		for _, p := range ps {
			if p.Identity == botIdentity {
				return false
			}
		}
		return true
	})
	require.NoError(t, err, "Element Call drops the dead bot's tile")
}

// TestElementCallStartsCall: without rtc.livekit_service_url, the bot
// starts a call in an empty room on the LiveKit focus its homeserver's
// .well-known names (org.matrix.msc4143.rtc_foci), rings the room, and is
// heard by the first person to join.
func TestElementCallStartsCall(t *testing.T) {
	bed := rtcTestBed(t)
	front, err := testbed.StartDelayedEvents(hs.URL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = front.Close() })
	front.SetWellKnown(map[string]any{
		"m.homeserver":                map[string]string{"base_url": front.URL},
		"org.matrix.msc4143.rtc_foci": []map[string]string{{"type": "livekit", "livekit_service_url": bed.jwt.URL}},
	})
	setup := newBotSetup(t, hs, "calls:\n  source: tone\n")
	setup.Binary = bed.mixer
	setup.useHomeserverURL(t, front.URL)
	setup.start(t)
	acct := readAccount(t, filepath.Join(setup.Dir, "voipbot.db"))
	botIdentity := elementcall.Identity(setup.UserID.String(), acct.DeviceID.String())
	alice := newECUser(t, bed, "ecsa", toneA)
	room := alice.callRoom(t, setup.UserID, false)
	ctx := ctxFor(t)

	require.Contains(t, body(command(t, alice.mx, room, setup.UserID, "!voip join tone")), "Joining")
	ring, err := alice.mx.WaitEvent(ctx, func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type.Type == "org.matrix.msc4075.rtc.notification"
	})
	require.NoError(t, err, "the bot rings the room")
	mentions, _ := ring.Content.Raw["m.mentions"].(map[string]any)
	require.Equal(t, true, mentions["room"], "the whole room is rung")
	_, err = alice.browser.Join(ctx, room.String(), alice.session, "")
	require.NoError(t, err)
	tone, err := alice.browser.WaitParticipantTone(ctx, botIdentity, 440, toneTolerance)
	require.NoErrorf(t, err, "alice hears the bot in the call it started (last %s)", tone)
}

// TestElementCallVideo: bob places a video call routed into alice's
// room's Element Call, with her camera on: alice's browser decodes bob's
// camera from the bot's participant, and bob's decodes alice's through the
// bot — in a plain room, and in an encrypted one, where every frame is
// decrypted and encrypted again on the way.
func TestElementCallVideo(t *testing.T) {
	bed := rtcTestBed(t)
	for _, encrypted := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[encrypted], func(t *testing.T) {
			setup, _, botIdentity := startRTCBot(t, bed, false)
			alice := newECUser(t, bed, "ecva", toneA)
			alice.browser.Close() // a browser with its camera on instead
			wav := filepath.Join(t.TempDir(), "alice.wav")
			require.NoError(t, jsclient.ToneWAV(wav, toneA, 30))
			ctx := ctxFor(t)
			b, err := elementcall.Launch(ctx, elementcall.Options{Name: "ecva", AppURL: bed.app.URL, WAV: wav, Video: true, ArtifactsDir: t.TempDir()})
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, b.Close()) })
			alice.browser = b
			ecRoom := alice.callRoom(t, setup.UserID, encrypted)
			_, err = alice.browser.Join(ctx, ecRoom.String(), alice.session, "")
			require.NoError(t, err)

			bob := newToneUser(t, "ecvb", toneB, false, jsclient.IncomingNotify)
			bobRoom := jsRoomWithBot(t, bob, setup.UserID, false)
			require.Contains(t, jsCommand(t, bob, bobRoom, setup.UserID, "!voip route rtc:"+ecRoom.String()).Body, "now go to")
			call, err := bob.PlaceCall(ctx, bobRoom, "", true)
			require.NoError(t, err)
			waitConnected(t, call)
			requireJSMedia(t, call, true)
			require.NoError(t, testbed.WaitFor(ctx, func() (bool, error) {
				st, err := alice.browser.Stats(ctx)
				if err != nil {
					return false, err
				}
				for _, in := range st.Inbound {
					if in.Kind == "video" && in.Identity == botIdentity && in.FramesDecoded > 10 && in.FrameWidth > 0 {
						t.Logf("alice decodes bob's camera from the bot: %d frames %dx%d (%s)", in.FramesDecoded, in.FrameWidth, in.FrameHeight, in.Codec)
						return true, nil
					}
				}
				return false, nil
			}), "alice decodes bob's camera")
			require.NoError(t, call.Hangup(ctx, ""))
			waitEnded(t, call)
		})
	}
}

// TestElementCallSharedKey: a room's Element Call started with
// ?password= is encrypted with one key for everyone; with `!voip callkey`
// set, the bot joins it: alice decodes the bot's tone (encrypted with the
// shared key), and with the echo source she hears her own tone back from
// the bot, which it could only do by decrypting her frames. The key is
// never repeated in a reply nor written to the bot's log.
func TestElementCallSharedKey(t *testing.T) {
	const passphrase = "s3cret-call-pass"
	bed := rtcTestBed(t)
	setup, _, botIdentity := startRTCBot(t, bed, false)
	setup.Secrets = append(setup.Secrets, passphrase)
	alice := newECUser(t, bed, "ecka", toneA)
	room := alice.callRoom(t, setup.UserID, false)
	ctx := ctxFor(t)
	_, err := alice.browser.Join(ctx, room.String(), alice.session, passphrase)
	require.NoError(t, err)

	assert.Contains(t, body(command(t, alice.mx, room, setup.UserID, "!voip callkey short")), "fewer than 8 characters")
	reply := body(command(t, alice.mx, room, setup.UserID, "!voip callkey "+passphrase))
	require.Contains(t, reply, "key is set")
	require.NotContains(t, reply, passphrase)
	require.Contains(t, body(command(t, alice.mx, room, setup.UserID, "!voip join tone")), "Joining")
	tone, err := alice.browser.WaitParticipantTone(ctx, botIdentity, 440, toneTolerance)
	require.NoErrorf(t, err, "alice decodes the bot's tone with the shared key (last %s)", tone)
	p, err := alice.browser.WaitParticipant(ctx, botIdentity, func(p elementcall.Participant) bool { return p.AudioRendered })
	require.NoError(t, err)
	assert.True(t, p.AudioEncrypted)

	require.Contains(t, body(command(t, alice.mx, room, setup.UserID, "!voip leave")), "Leaving")
	leftCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	require.NoError(t, waitNoMembership(leftCtx, alice, room, setup.UserID))
	cancel()
	require.Contains(t, body(command(t, alice.mx, room, setup.UserID, "!voip join echo")), "Joining")
	tone, err = alice.browser.WaitParticipantTone(ctx, botIdentity, toneA, toneTolerance)
	require.NoErrorf(t, err, "alice hears her own tone back from the bot (last %s)", tone)
	t.Logf("alice hears her echo from the bot: %s", tone)
}
