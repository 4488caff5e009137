// Package e2e runs the voipbot binary against a real Dendrite homeserver and
// real Matrix clients (mautrix-go, with their own encryption).
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/store"
)

var (
	botBinary string
	hs        *testbed.Dendrite
	userSeq   atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "voipbot-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if botBinary, err = testbed.BuildBot(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	hsDir := filepath.Join(dir, "dendrite")
	if err = os.Mkdir(hsDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	start := time.Now()
	// Federation routes on: the JWT service checks OpenID tokens at
	// Dendrite's userinfo endpoint (Element Call tests).
	if hs, err = testbed.StartDendrite(hsDir, testbed.DendriteOptions{Federation: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "Dendrite %s ready at %s in %s\n", testbed.DendriteVersion, hs.URL, time.Since(start).Round(time.Millisecond))
	defer hs.Stop()
	code := m.Run()
	if err = closeJSBrowser(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: closing the browser:", err)
		code = 1
	}
	if err = closeRTCBed(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: stopping the Element Call test bed:", err)
		code = 1
	}
	if err = closeToneBrowsers(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		code = 1
	}
	if err = closeXMPPBed(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: stopping Prosody:", err)
		code = 1
	}
	return code
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// newUser registers a fresh user and logs it in on its own device.
func newUser(t testing.TB, h *testbed.Dendrite, name string, encrypted bool) *testbed.User {
	t.Helper()
	ctx := ctxFor(t)
	localpart := fmt.Sprintf("%s%d", name, userSeq.Add(1))
	_, err := h.Register(ctx, localpart, "pw-"+localpart)
	require.NoError(t, err)
	u, err := h.Login(ctx, localpart, "pw-"+localpart, t.TempDir(), encrypted)
	require.NoError(t, err)
	t.Cleanup(u.Close)
	return u
}

// botSetup is a bot account and its files, reused across restarts.
type botSetup struct {
	UserID   id.UserID
	Password string
	Dir      string
	HTTPAddr string
	Config   string
	Secrets  []string // values that must never appear in the bot's logs
	// Binary is the bot to run; default the package's botBinary (the
	// pure-Go build).
	Binary string
}

// newBotSetup registers a bot account on h and writes a config for it;
// extra YAML is appended.
func newBotSetup(t testing.TB, h *testbed.Dendrite, extra string) *botSetup {
	t.Helper()
	localpart := fmt.Sprintf("voipbot%d", userSeq.Add(1))
	password := "pw-" + localpart
	uid, err := h.Register(ctxFor(t), localpart, password)
	require.NoError(t, err)
	port, err := testbed.FreePort()
	require.NoError(t, err)
	s := &botSetup{UserID: uid, Password: password, Dir: t.TempDir(), HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port)}
	pickle := "pickle-" + localpart + "-0123456789"
	s.Secrets = []string{password, pickle}
	s.Config = filepath.Join(s.Dir, "config.yaml")
	s.writeConfig(t, h, fmt.Sprintf("bot:\n  user_id: %q\n  password: %q\n", uid, password), pickle, extra)
	return s
}

func (s *botSetup) writeConfig(t testing.TB, h *testbed.Dendrite, botSection, pickle, extra string) {
	t.Helper()
	require.NoError(t, writeBotConfig(s, h, botSection, pickle, "trace", extra))
}

// writeBotConfig writes the bot's config file for homeserver h.
func writeBotConfig(s *botSetup, h *testbed.Dendrite, botSection, pickle, logLevel, extra string) error {
	cfg := fmt.Sprintf(`homeserver:
  url: %s
%sencryption:
  pickle_key: %q
database:
  path: %s
http:
  listen: %s
logging:
  level: %s
  format: json
%s`, h.URL, botSection, pickle, filepath.Join(s.Dir, "voipbot.db"), s.HTTPAddr, logLevel, extra)
	return os.WriteFile(s.Config, []byte(cfg), 0o600)
}

// start runs the bot and waits until it is ready. The test fails if the bot
// does not stop cleanly at the end or if any secret appears in its log.
func (s *botSetup) start(t testing.TB, env ...string) *testbed.Bot {
	t.Helper()
	bin := botBinary
	if s.Binary != "" {
		bin = s.Binary
	}
	bot, err := testbed.StartBot(bin, s.Dir, s.Config, s.HTTPAddr, env)
	require.NoError(t, err)
	t.Cleanup(func() {
		// Stopping an already stopped bot only returns its exit code.
		stopBot(t, bot)
		s.assertNoSecrets(t, bot)
		if t.Failed() {
			t.Logf("voipbot log %s:\n%s", bot.LogPath, bot.Logs())
		}
	})
	took, err := bot.WaitReady(ctxFor(t))
	require.NoError(t, err)
	t.Logf("voipbot ready %s after start", took.Round(time.Millisecond))
	return bot
}

// stop stops the bot, requiring a clean exit.
func stopBot(t testing.TB, bot *testbed.Bot) {
	t.Helper()
	code, err := bot.Stop()
	require.NoError(t, err)
	require.Equalf(t, 0, code, "voipbot exit code; log:\n%s", bot.LogTail())
	require.Contains(t, bot.Logs(), "voipbot stopped")
}

func (s *botSetup) assertNoSecrets(t testing.TB, bot *testbed.Bot) {
	t.Helper()
	logs := bot.Logs()
	require.NotEmpty(t, logs)
	for _, secret := range s.Secrets {
		require.NotContainsf(t, logs, secret, "a secret appears in the bot's log %s", bot.LogPath)
	}
}

// addAccessToken adds the bot's stored access token to the secrets.
func (s *botSetup) addAccessToken(t *testing.T) string {
	t.Helper()
	acct := readAccount(t, filepath.Join(s.Dir, "voipbot.db"))
	s.Secrets = append(s.Secrets, acct.AccessToken)
	return acct.AccessToken
}

// inviteBot creates a room as u (encrypted if asked), invites the bot and
// waits until the bot has joined.
func inviteBot(t testing.TB, u *testbed.User, bot id.UserID, encrypted bool) id.RoomID {
	t.Helper()
	ctx := ctxFor(t)
	req := &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bot}}
	if encrypted {
		req.InitialState = []*event.Event{{
			Type:    event.StateEncryption,
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
		}}
	}
	resp, err := u.CreateRoom(ctx, req)
	require.NoError(t, err)
	_, err = u.WaitEvent(ctx, testbed.Membership(resp.RoomID, bot, event.MembershipJoin))
	require.NoError(t, err, "the bot joins after the invite")
	return resp.RoomID
}

// command sends a text message and waits for the bot's reply to it.
func command(t testing.TB, u *testbed.User, room id.RoomID, bot id.UserID, text string) *event.Event {
	t.Helper()
	ctx := ctxFor(t)
	sent, err := u.SendText(ctx, room, text)
	require.NoError(t, err)
	reply, err := u.WaitEvent(ctx, testbed.ReplyTo(bot, sent.EventID))
	require.NoErrorf(t, err, "waiting for the reply to %q", text)
	return reply
}

func body(evt *event.Event) string {
	_ = evt.Content.ParseRaw(evt.Type)
	return evt.Content.AsMessage().Body
}

func hasLine(text, prefix string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), prefix) {
			return true
		}
	}
	return false
}

// waitMetric waits until /metrics has a line (series and value).
func waitMetric(t testing.TB, bot *testbed.Bot, line string) {
	t.Helper()
	var last string
	err := testbed.WaitFor(ctxFor(t), func() (bool, error) {
		metrics, err := bot.Metrics()
		last = metrics
		return err == nil && hasLine(metrics, line), nil
	})
	require.NoErrorf(t, err, "metric %q not reached:\n%s", line, last)
}

// startInProcess runs the bot's Matrix client in this process, logged in as
// a fresh user with encryption on, and waits until it is ready. setup runs
// before Start (to register handlers).
func startInProcess(t *testing.T, setup func(*matrix.Client)) (*matrix.Client, id.UserID) {
	t.Helper()
	ctx := ctxFor(t)
	localpart := fmt.Sprintf("inproc%d", userSeq.Add(1))
	botUser, err := hs.Register(ctx, localpart, "pw-"+localpart)
	require.NoError(t, err)
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "voipbot.db")}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	mx, err := matrix.New(matrix.Config{
		Homeserver: matrix.HomeserverConfig{URL: hs.URL, SyncStaleAfter: 40 * time.Second},
		Bot:        matrix.BotConfig{UserID: botUser, Password: "pw-" + localpart, DeviceName: "voipbot"},
		Mode:       matrix.ModeUser,
		Encryption: matrix.EncryptionConfig{Enabled: true, PickleKey: "0123456789abcdef-" + localpart, KeyWait: 5 * time.Second},
	}, st, prometheus.NewRegistry(), zerolog.Nop())
	require.NoError(t, err)
	if setup != nil {
		setup(mx)
	}
	require.NoError(t, mx.Start(ctx))
	runCtx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- mx.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-ran)
		mx.Stop(time.Second)
	})
	require.NoError(t, testbed.WaitFor(ctx, func() (bool, error) {
		ok, _ := mx.Health().Ready(time.Now())
		return ok, nil
	}))
	return mx, botUser
}
