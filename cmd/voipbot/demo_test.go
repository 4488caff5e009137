package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot"
	"github.com/voipbot/voipbot/bridge"
	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/guestclient"
	"github.com/voipbot/voipbot/internal/testbed/proc"
)

// demoRun is what one run of `voipbot demo` printed.
type demoRun struct {
	HomeserverURL, Password string
	DendritePID             int
	// Link is the printed call link.
	Link string
	// Ready is the run's own "ready in"; Took the test's, from the start of
	// the process to the printed block.
	Ready, Took time.Duration
}

var (
	demoHomeserverRe = regexp.MustCompile(`^  Homeserver:  (http://127\.0\.0\.1:\d+) `)
	demoUserRe       = regexp.MustCompile(`^  User:        @demo:localhost   Password: (\S+)$`)
	demoDendriteRe   = regexp.MustCompile(`^Dendrite \(pid (\d+)\) answers at `)
	demoReadyRe      = regexp.MustCompile(`^voipbot demo is running \(ready in ([0-9.]+) s\)\.$`)
	demoLinkRe       = regexp.MustCompile(`^  Call link:   (http://127\.0\.0\.1:\d+/call/\S+)$`)
)

// runDemo runs the demo binary in dir, waits for the block saying what to
// open, logs in as the demo user and looks the bot up, then stops the demo
// with SIGINT and checks that neither it nor Dendrite is left.
func runDemo(t *testing.T, bin, dendriteBin, dir string) demoRun {
	t.Helper()
	port, err := testbed.FreePort()
	require.NoError(t, err)
	cmd := exec.Command(bin, "demo", "-dir", dir, "-dendrite", dendriteBin, "-http", "127.0.0.1:"+strconv.Itoa(port))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VOIPBOT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	began := time.Now()
	p, err := proc.Start(cmd, proc.Options{Name: "voipbot demo", Test: t, KeepLines: -1})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = p.WaitOutput(ctx, "Ctrl-C stops the demo (data stays in "+dir+").")
	require.NoError(t, err)
	run := demoRun{Took: time.Since(began)}
	for _, line := range p.Lines() {
		if m := demoHomeserverRe.FindStringSubmatch(line); m != nil {
			run.HomeserverURL = m[1]
		} else if m := demoUserRe.FindStringSubmatch(line); m != nil {
			run.Password = m[1]
		} else if m := demoDendriteRe.FindStringSubmatch(line); m != nil {
			run.DendritePID, _ = strconv.Atoi(m[1])
		} else if m := demoLinkRe.FindStringSubmatch(line); m != nil {
			run.Link = m[1]
		} else if m := demoReadyRe.FindStringSubmatch(line); m != nil {
			secs, _ := strconv.ParseFloat(m[1], 64)
			run.Ready = time.Duration(secs * float64(time.Second))
		}
	}
	require.NotEmptyf(t, run.HomeserverURL, "the homeserver's URL; output:\n%s", p.Tail())
	require.NotEmptyf(t, run.Password, "the demo user's password; output:\n%s", p.Tail())
	require.NotZerof(t, run.DendritePID, "Dendrite's pid; output:\n%s", p.Tail())
	require.NotZerof(t, run.Ready, "ready in; output:\n%s", p.Tail())
	require.Contains(t, p.Tail(), "Then: start a chat with @voipbot:localhost and call it")

	token := demoLogin(t, run.HomeserverURL, "demo", run.Password)
	require.Equal(t, "VoIP bot", demoDisplayName(t, run.HomeserverURL, token, "@voipbot:localhost"),
		"the bot's account exists and the bot has set its display name")

	// The printed link, opened in this machine's browser, is answered by
	// the bot's tone.
	require.NotEmptyf(t, run.Link, "a call link; output:\n%s", p.Tail())
	guest, err := guestclient.Launch(ctx, guestclient.Options{Name: "demo guest", ToneHz: 660, ArtifactsDir: t.TempDir(), Logf: t.Logf})
	require.NoError(t, err)
	defer func() { assert.NoError(t, guest.Close()) }()
	status, _, err := guest.Open(ctx, run.Link)
	require.NoError(t, err)
	require.Equal(t, 200, status)
	require.NoError(t, guest.Join(ctx))
	_, err = guest.WaitState(ctx, guestclient.StateConnected)
	require.NoError(t, err)
	tone, err := guest.WaitRemoteTone(ctx, 440, 40)
	require.NoErrorf(t, err, "the guest hears the bot's tone (last %s)", tone)
	t.Logf("the demo's link: the guest hears %s", tone)
	require.NoError(t, guest.Hangup(ctx))

	require.NoError(t, p.Signal(syscall.SIGINT))
	require.NoError(t, p.Wait(ctx), "the demo exits with status 0 on Ctrl-C:\n%s", p.Tail())
	require.Contains(t, p.Tail(), "The demo has stopped")
	require.Contains(t, p.Tail(), "voipbot stopped", "the bot stopped cleanly")
	// Dendrite ran in a process group of its own (its pid): nothing of it
	// is left, not even a zombie (the demo reaped it).
	require.ErrorIs(t, syscall.Kill(-run.DendritePID, 0), syscall.ESRCH, "a process of Dendrite's group is left")
	_, err = proc.ReadStat(run.DendritePID)
	require.Error(t, err, "Dendrite's process is left")
	return run
}

// demoLogin logs in with a plain POST /login and returns the access token.
func demoLogin(t *testing.T, hs, user, password string) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": user},
		"password":   password,
	})
	require.NoError(t, err)
	resp, err := http.Post(hs+"/_matrix/client/v3/login", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "logging in as the demo user")
	var out struct {
		AccessToken string `json:"access_token"`
		UserID      string `json:"user_id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(t, "@demo:localhost", out.UserID)
	return out.AccessToken
}

// demoDisplayName looks a user's profile up.
func demoDisplayName(t *testing.T, hs, token, user string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, hs+"/_matrix/client/v3/profile/"+url.PathEscape(user), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "looking %s up", user)
	var out struct {
		Displayname string `json:"displayname"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out.Displayname
}

// TestDemo runs `voipbot demo` twice in one directory (cold: a fresh
// directory; warm: the same one again), as `make run` does without a
// config. Dendrite is built before (DENDRITE_BIN, or the test bed's build).
func TestDemo(t *testing.T) {
	dendriteBin, err := testbed.DendriteBinary()
	require.NoError(t, err)
	tmp := t.TempDir()
	bin, err := testbed.BuildBot(tmp)
	require.NoError(t, err)
	dir := filepath.Join(tmp, "demo")

	cold := runDemo(t, bin, dendriteBin, dir)
	cfg, err := voipbot.Load(filepath.Join(dir, "config.yaml"), nil)
	require.NoError(t, err, "the demo's bot configuration")
	require.Equal(t, bridge.MediaMode("tone"), cfg.Bridge.Calls.Source)
	require.True(t, cfg.Matrix.Encryption.Enabled)
	require.Equal(t, filepath.Join(dir, "voipbot.db"), cfg.Database.Path)
	require.Equal(t, cold.HomeserverURL, cfg.Matrix.Homeserver.URL)

	warm := runDemo(t, bin, dendriteBin, dir)
	require.Equal(t, cold.Password, warm.Password, "the demo user's password is kept")
	require.Equal(t, cold.HomeserverURL, warm.HomeserverURL, "the homeserver's port is kept")
	t.Logf("demo ready (Dendrite built before): cold %s (%s to the block), warm %s (%s to the block)",
		cold.Ready, cold.Took.Round(time.Millisecond), warm.Ready, warm.Took.Round(time.Millisecond))
	require.Less(t, warm.Took, 20*time.Second, "a warm start takes seconds")
}

func TestDemoFlags(t *testing.T) {
	code, _, errOut := runCLI(t, t.TempDir(), nil, "demo", "-http", "0.0.0.0:29333", "-dendrite", "/nonexistent")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not a loopback IP address")
	code, _, errOut = runCLI(t, t.TempDir(), nil, "demo", "-dendrite", "/nonexistent/dendrite")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "/nonexistent/dendrite -version")
	code, _, errOut = runCLI(t, t.TempDir(), nil, "demo", "stray")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "Usage: voipbot demo")
}
