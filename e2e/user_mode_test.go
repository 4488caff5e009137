package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/store"
)

func TestHelpAndStatusInPlainRoom(t *testing.T) {
	setup := newBotSetup(t, hs, "")
	bot := setup.start(t)
	setup.addAccessToken(t)
	alice := newUser(t, hs, "alice", false)
	room := inviteBot(t, alice, setup.UserID, false)

	help := body(command(t, alice, room, setup.UserID, "!voip help"))
	require.True(t, hasLine(help, "* `!voip status`"), help)
	require.True(t, hasLine(help, "* `!voip help`"), help)

	status := body(command(t, alice, room, setup.UserID, "!voip status"))
	require.Contains(t, status, "Active calls: 0")
	require.Contains(t, status, "Rooms joined: 1")
	require.Contains(t, status, "encryption on")
	require.Contains(t, status, "Media: any free UDP port")

	unknown := body(command(t, alice, room, setup.UserID, "!voip dance"))
	require.Contains(t, unknown, "Unknown command `dance`")

	bare := body(command(t, alice, room, setup.UserID, "!voip"))
	require.Contains(t, bare, "Commands:", "the prefix alone shows the help")

	// The handled-events counter moves when the handler returns, just after
	// the reply was sent.
	waitMetric(t, bot, `voipbot_events_handled_total{result="ok",type="m.room.message"} 4`)
	waitMetric(t, bot, "voipbot_inbox_pending 0")
	metrics, err := bot.Metrics()
	require.NoError(t, err)
	require.Contains(t, metrics, `voipbot_commands_total{command="help",result="ok"} 2`)
	require.Contains(t, metrics, `voipbot_commands_total{command="unknown",result="unknown"} 1`)
	require.Contains(t, metrics, `voipbot_events_handled_total{result="ok",type="m.room.member"}`)
	require.Contains(t, metrics, "voipbot_sync_last_success_timestamp_seconds")
	require.Contains(t, metrics, `voipbot_event_delay_seconds_count{stage="received"}`)
	require.Contains(t, metrics, "go_goroutines")
}

// TestLoginAndDevicePersistAcrossRestart starts the bot twice; the second
// time without a password, so it can only use the stored login. It must keep
// its one device and the encryption keys that device published.
func TestLoginAndDevicePersistAcrossRestart(t *testing.T) {
	ctx := ctxFor(t)
	setup := newBotSetup(t, hs, "")
	first := setup.start(t)
	token := setup.addAccessToken(t)
	dbPath := filepath.Join(setup.Dir, "voipbot.db")
	device := readAccount(t, dbPath).DeviceID
	keysBefore := deviceKeys(t, hs, setup.UserID, device)
	stopBot(t, first)

	// No password any more: a second login is impossible.
	cfg, err := os.ReadFile(setup.Config)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(setup.Config, []byte(strings.Replace(string(cfg), fmt.Sprintf("password: %q", setup.Password), `password: ""`, 1)), 0o600))
	second := setup.start(t)
	health, status, err := second.GetHealth()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "logged in and syncing", health.Checks["matrix"])

	acct := readAccount(t, dbPath)
	require.Equal(t, device, acct.DeviceID, "the same device after a restart")
	require.Equal(t, token, acct.AccessToken, "no new login after a restart")
	require.Equal(t, keysBefore, deviceKeys(t, hs, setup.UserID, device), "the device keeps its identity keys")

	cli, err := mautrix.NewClient(hs.URL, setup.UserID, token)
	require.NoError(t, err)
	devices, err := cli.GetDevicesInfo(ctx)
	require.NoError(t, err)
	var own []id.DeviceID
	for _, d := range devices.Devices {
		if d.DeviceID != "shared_secret_registration" { // the test bed's registration made that one
			own = append(own, d.DeviceID)
		}
	}
	require.Equal(t, []id.DeviceID{device}, own, "the bot created exactly one device")

	// The restarted bot still answers, so its sync resumed.
	alice := newUser(t, hs, "alice", false)
	room := inviteBot(t, alice, setup.UserID, false)
	require.Contains(t, body(command(t, alice, room, setup.UserID, "!voip status")), "Active calls: 0")
}

func deviceKeys(t *testing.T, h *testbed.Dendrite, user id.UserID, device id.DeviceID) map[id.DeviceKeyID]string {
	t.Helper()
	observer := newUser(t, h, "observer", false)
	resp, err := observer.QueryKeys(ctxFor(t), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{user: {device}}})
	require.NoError(t, err)
	keys := resp.DeviceKeys[user][device].Keys
	require.NotEmpty(t, keys, "the device published its keys")
	return keys
}

// TestEncryptedRoom: a client with its own E2EE sends an encrypted command
// and gets an encrypted answer.
func TestEncryptedRoom(t *testing.T) {
	setup := newBotSetup(t, hs, "")
	bot := setup.start(t)
	setup.addAccessToken(t)
	alice := newUser(t, hs, "alice", true)
	room := inviteBot(t, alice, setup.UserID, true)

	ctx := ctxFor(t)
	sent, err := alice.SendMessageEvent(ctx, room, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: "!voip status"})
	require.NoError(t, err)
	reply, err := alice.WaitEvent(ctx, testbed.ReplyTo(setup.UserID, sent.EventID))
	require.NoError(t, err)
	require.True(t, reply.Mautrix.WasEncrypted, "the reply was encrypted")
	require.Contains(t, body(reply), "encryption on")

	// The command itself reached the bot encrypted: the raw event on the
	// server is m.room.encrypted.
	raw, err := alice.GetEvent(ctx, room, sent.EventID)
	require.NoError(t, err)
	require.Equal(t, event.EventEncrypted.Type, raw.Type.Type)

	metrics, err := bot.Metrics()
	require.NoError(t, err)
	require.NotContains(t, metrics, `result="undecryptable"`)
}

// TestAccessPolicy: an invite from a user who is not allowed is declined; a
// command from such a user in a shared room gets a polite refusal.
func TestAccessPolicy(t *testing.T) {
	alice := newUser(t, hs, "alice", false)
	mallory := newUser(t, hs, "mallory", false)
	setup := newBotSetup(t, hs, fmt.Sprintf("access:\n  users: [%q]\n", alice.UserID))
	setup.start(t)
	setup.addAccessToken(t)
	ctx := ctxFor(t)

	// Mallory's invite is declined.
	resp, err := mallory.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{setup.UserID}})
	require.NoError(t, err)
	_, err = mallory.WaitEvent(ctx, testbed.Membership(resp.RoomID, setup.UserID, event.MembershipLeave))
	require.NoError(t, err, "the bot declines the invite")

	// In Alice's room, Mallory's command is refused and nothing else.
	room := inviteBot(t, alice, setup.UserID, false)
	_, err = alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: mallory.UserID})
	require.NoError(t, err)
	_, err = mallory.JoinRoomByID(ctx, room)
	require.NoError(t, err)
	refusal := body(command(t, mallory, room, setup.UserID, "!voip status"))
	require.Contains(t, refusal, "Sorry")
	require.NotContains(t, refusal, "Active calls")
	require.Contains(t, body(command(t, alice, room, setup.UserID, "!voip status")), "Active calls: 0")
}

// TestLeavesWhenAlone: once everyone else has left, the bot leaves too.
func TestLeavesWhenAlone(t *testing.T) {
	setup := newBotSetup(t, hs, "")
	setup.start(t)
	setup.addAccessToken(t)
	alice := newUser(t, hs, "alice", false)
	room := inviteBot(t, alice, setup.UserID, false)
	dbPath := filepath.Join(setup.Dir, "voipbot.db")
	require.Equal(t, store.MembershipJoin, roomMembership(t, dbPath, room))

	_, err := alice.LeaveRoom(ctxFor(t), room)
	require.NoError(t, err)
	require.NoError(t, testbed.WaitFor(ctxFor(t), func() (bool, error) {
		return roomMembership(t, dbPath, room) == store.MembershipLeave, nil
	}), "the bot leaves the empty room")

	// The homeserver agrees: the bot is no longer a member.
	acct := readAccount(t, dbPath)
	cli, err := mautrix.NewClient(hs.URL, acct.UserID, acct.AccessToken)
	require.NoError(t, err)
	joined, err := cli.JoinedRooms(ctxFor(t))
	require.NoError(t, err)
	require.NotContains(t, joined.JoinedRooms, room)
}

// TestRestartNeitherReplaysNorSkips: a command sent while the bot is down is
// answered after it starts (not skipped), exactly once across further
// restarts (not replayed).
func TestRestartNeitherReplaysNorSkips(t *testing.T) {
	setup := newBotSetup(t, hs, "")
	bot := setup.start(t)
	setup.addAccessToken(t)
	alice := newUser(t, hs, "alice", false)
	room := inviteBot(t, alice, setup.UserID, false)
	command(t, alice, room, setup.UserID, "!voip help")
	stopBot(t, bot)

	ctx := ctxFor(t)
	whileDown, err := alice.SendText(ctx, room, "!voip status")
	require.NoError(t, err)

	bot = setup.start(t)
	_, err = alice.WaitEvent(ctx, testbed.ReplyTo(setup.UserID, whileDown.EventID))
	require.NoError(t, err, "a command sent while the bot was down is answered")
	stopBot(t, bot)
	setup.start(t)
	// Events of a room are handled in order: once this marker is answered,
	// a replayed command would have been answered before it.
	command(t, alice, room, setup.UserID, "!voip help")

	replies := countReplies(t, alice, room, setup.UserID)
	require.Equal(t, 1, replies[whileDown.EventID], "answered exactly once")
	for cmd, n := range replies {
		require.Equalf(t, 1, n, "command %s answered %d times", cmd, n)
	}
}

// countReplies counts the bot's replies per replied-to event in a room's
// history.
func countReplies(t *testing.T, u *testbed.User, room id.RoomID, bot id.UserID) map[id.EventID]int {
	t.Helper()
	msgs, err := u.Messages(context.Background(), room, "", "", mautrix.DirectionBackward, nil, 100)
	require.NoError(t, err)
	counts := map[id.EventID]int{}
	for _, evt := range msgs.Chunk {
		if evt.Sender != bot || evt.Type != event.EventMessage {
			continue
		}
		_ = evt.Content.ParseRaw(evt.Type)
		if rel := evt.Content.AsMessage().RelatesTo; rel != nil && rel.InReplyTo != nil {
			counts[rel.InReplyTo.EventID]++
		}
	}
	return counts
}

// TestHealthWhileHomeserverUnreachable: the bot keeps trying to log in, says
// why it is not ready, and still stops cleanly.
func TestHealthWhileHomeserverUnreachable(t *testing.T) {
	setup := newBotSetup(t, hs, "")
	port, err := testbed.FreePort()
	require.NoError(t, err)
	down := &testbed.Dendrite{URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	setup.writeConfig(t, down, fmt.Sprintf("bot:\n  user_id: %q\n  password: %q\n", setup.UserID, setup.Password), "pickle-unreachable-0123456789", "")
	bot, err := testbed.StartBot(botBinary, setup.Dir, setup.Config, setup.HTTPAddr, nil)
	require.NoError(t, err)
	var health *testbed.Health
	require.NoError(t, testbed.WaitFor(ctxFor(t), func() (bool, error) {
		h, code, err := bot.GetHealth()
		if err != nil {
			return false, nil // not listening yet
		}
		health = h
		return code == http.StatusServiceUnavailable && strings.HasPrefix(h.Checks["matrix"], "not logged in"), nil
	}))
	require.False(t, health.Ready)
	require.Contains(t, health.Checks["matrix"], "connection refused", "it says why")
	stopBot(t, bot)
	require.Contains(t, bot.Logs(), "retrying login")
}

// TestHealthWhileHomeserverHangs: a homeserver that stops answering (issue 9:
// with Dendrite stopped by SIGSTOP, /health stayed 200 for 89 s) turns
// /health 503 once homeserver.sync_stale_after has passed since the last
// sync response, not before, and 200 again when it answers. The shared
// Dendrite keeps running: a frozen proxy between it and the bot plays the
// stopped process.
func TestHealthWhileHomeserverHangs(t *testing.T) {
	const staleAfter = 35 * time.Second // the shortest allowed, to keep the test short
	hsURL, err := url.Parse(hs.URL)
	require.NoError(t, err)
	proxy, err := testbed.StartProxy(hsURL.Host)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, proxy.Close()) }) // after the bot has stopped

	setup := newBotSetup(t, hs, "")
	pickle := "pickle-hang-0123456789"
	setup.Secrets = append(setup.Secrets, pickle)
	setup.writeConfig(t, &testbed.Dendrite{URL: proxy.URL()}, fmt.Sprintf("bot:\n  user_id: %q\n  password: %q\n", setup.UserID, setup.Password), pickle, "")
	bot := setup.start(t, "VOIPBOT_HOMESERVER_SYNC_STALE_AFTER="+staleAfter.String())
	health, _, err := bot.GetHealth()
	require.NoError(t, err)
	require.Equal(t, "logged in and syncing", health.Checks["matrix"], "ready through the proxy")

	// A to-device message answers the bot's long poll at once (alice talks
	// to Dendrite directly), so the freeze can start just after a sync
	// response, the case where a hang takes longest to show.
	alice := newUser(t, hs, "alice", false)
	device := readAccount(t, filepath.Join(setup.Dir, "voipbot.db")).DeviceID
	poke := func() {
		t.Helper()
		_, err := alice.SendToDevice(ctxFor(t), event.Type{Type: "org.voipbot.test.poke", Class: event.ToDeviceEventType},
			&mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{setup.UserID: {device: {Raw: map[string]any{"n": 1}}}}})
		require.NoError(t, err)
	}
	before := lastSyncSuccess(t, bot)
	poke()
	require.NoError(t, testbed.WaitFor(ctxFor(t), func() (bool, error) { return lastSyncSuccess(t, bot).After(before), nil }))
	frozenAt := time.Now()
	proxy.Freeze()

	// The deadline is the threshold from the freeze plus a few seconds:
	// the last response came before the freeze.
	hung, cancel := context.WithDeadline(ctxFor(t), frozenAt.Add(staleAfter+5*time.Second))
	defer cancel()
	var unhealthyAt time.Time
	err = testbed.WaitFor(hung, func() (bool, error) {
		h, code, err := bot.GetHealth()
		if err != nil || code == http.StatusOK {
			return false, err
		}
		health, unhealthyAt = h, time.Now()
		return true, nil
	})
	require.NoErrorf(t, err, "/health still 200 %s after the homeserver hung", time.Since(frozenAt).Round(time.Millisecond))
	require.False(t, health.Ready)
	require.Contains(t, health.Checks["matrix"], "no sync response for")
	require.Contains(t, health.Checks["matrix"], "the homeserver is not answering")
	// The metric is set as the last response is stored, a moment before
	// the instant /health counts from.
	lastSync := lastSyncSuccess(t, bot)
	require.Greaterf(t, unhealthyAt.Sub(lastSync), staleAfter, "503 came %s after the last sync response, before sync_stale_after (%s)",
		unhealthyAt.Sub(lastSync), staleAfter)
	t.Logf("/health 503 %s after the freeze, %s after the last sync response: %q",
		unhealthyAt.Sub(frozenAt).Round(time.Millisecond), unhealthyAt.Sub(lastSync).Round(time.Millisecond), health.Checks["matrix"])

	proxy.Unfreeze()
	thawedAt := time.Now()
	poke() // in case the bot's next long poll was held back by the freeze
	require.NoError(t, testbed.WaitFor(ctxFor(t), func() (bool, error) {
		h, code, err := bot.GetHealth()
		return err == nil && code == http.StatusOK && h.Ready, err
	}))
	t.Logf("/health 200 again %s after the thaw", time.Since(thawedAt).Round(time.Millisecond))
	stopBot(t, bot)
}

// lastSyncSuccess reads voipbot_sync_last_success_timestamp_seconds.
func lastSyncSuccess(t *testing.T, bot *testbed.Bot) time.Time {
	t.Helper()
	metrics, err := bot.Metrics()
	require.NoError(t, err)
	for line := range strings.SplitSeq(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, "voipbot_sync_last_success_timestamp_seconds "); ok {
			secs, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return time.Unix(0, int64(secs*1e9))
		}
	}
	t.Fatalf("no voipbot_sync_last_success_timestamp_seconds in /metrics:\n%s", metrics)
	return time.Time{}
}
