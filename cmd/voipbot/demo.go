package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot"
	"github.com/voipbot/voipbot/bridge"
	"github.com/voipbot/voipbot/internal/dendrite"
)

// The demo's accounts, on the demo homeserver (server name
// dendrite.ServerName).
const (
	demoBotLocalpart  = "voipbot"
	demoUserLocalpart = "demo"
)

// demoStateFile, in the demo directory, holds what is generated once and
// must stay: the accounts' passwords, the bot's pickle key, and the
// homeserver's address (a client that logged in finds it again).
const demoStateFile = "demo.json"

type demoState struct {
	Homeserver   string `json:"homeserver"`
	DemoPassword string `json:"demo_password"`
	BotPassword  string `json:"bot_password"`
	PickleKey    string `json:"pickle_key"`
}

// demoInfo is what the running demo is made of.
type demoInfo struct {
	Dir           string
	HomeserverURL string
	BotUserID     id.UserID
	DemoUserID    id.UserID
	DemoPassword  string
	// Config is the bot's configuration, as loaded from Dir/config.yaml
	// (http.listen is the bot's HTTP listener, database.path its store).
	Config *voipbot.Config
}

// demoCallLink makes a call link for the demo user to try in a browser:
// it logs the demo user in, makes a room with the bot ("voipbot demo")
// and asks there, as any member would, `!voip link 30d echo`: a link
// answered by the bot's own source (the tone). It runs once the bot is
// logged in; ctx ends when the demo stops.
func demoCallLink(ctx context.Context, demo demoInfo) (string, error) {
	if demo.Config.Bridge.Guests.PublicURL == "" {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cli, err := mautrix.NewClient(demo.HomeserverURL, "", "")
	if err != nil {
		return "", err
	}
	if _, err = cli.Login(ctx, &mautrix.ReqLogin{
		Type: mautrix.AuthTypePassword, Password: demo.DemoPassword, StoreCredentials: true,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: demo.DemoUserID.String()},
	}); err != nil {
		return "", fmt.Errorf("logging the demo user in: %w", err)
	}
	room, err := cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "voipbot demo", Invite: []id.UserID{demo.BotUserID}})
	if err != nil {
		return "", fmt.Errorf("making the demo room: %w", err)
	}
	// The bot joins when its sync brings the invite; then it takes
	// commands there.
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	for joined := false; !joined; {
		members, err := cli.JoinedMembers(ctx, room.RoomID)
		if err == nil {
			_, joined = members.Joined[demo.BotUserID]
		}
		if !joined {
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("the bot did not join the demo room: %w", ctx.Err())
			case <-poll.C:
			}
		}
	}
	sent, err := cli.SendText(ctx, room.RoomID, "!voip link 30d echo")
	if err != nil {
		return "", fmt.Errorf("asking the bot for a link: %w", err)
	}
	for {
		msgs, err := cli.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 20)
		if err == nil {
			for _, evt := range msgs.Chunk {
				if evt.Sender != demo.BotUserID || evt.ID == sent.EventID {
					continue
				}
				if body, _ := evt.Content.Raw["body"].(string); strings.Contains(body, "/call/") {
					if link := demoLinkRE.FindString(body); link != "" {
						return link, nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("the bot did not answer with a link: %w", ctx.Err())
		case <-poll.C:
		}
	}
}

// demoLinkRE finds a call link in the bot's answer.
var demoLinkRE = regexp.MustCompile(`http://\S+/call/[A-Za-z0-9_-]{43}`)

// demoCLI runs `voipbot demo`: the pinned Dendrite on loopback with its
// state in the demo directory, the bot's account and a demo user's on it,
// and the bot itself in this process (as `voipbot -c` runs it) with the
// tone source and encryption on, until SIGINT or SIGTERM. It prints what to
// open once the bot is ready. The directory keeps everything between runs;
// the configuration is the demo's own (DIR/config.yaml, written at every
// start), VOIPBOT_ variables do not apply.
func demoCLI(args, environ []string, build bridge.BuildInfo, stdout, stderr *os.File) int {
	began := time.Now()
	flags := flag.NewFlagSet("voipbot demo", flag.ContinueOnError)
	flags.SetOutput(stderr)
	dir := flags.String("dir", ".demo", "directory of the demo's state, kept between runs (delete it to start afresh)")
	dendriteBin := flags.String("dendrite", "", "the Dendrite "+dendrite.Version+" binary (default: $DENDRITE_BIN, else dendrite next to voipbot, else on the PATH; `make run` builds bin/dendrite)")
	httpAddr := flags.String("http", "127.0.0.1:29333", "the bot's HTTP listener (http.listen: /health, /metrics), on loopback")
	flags.Usage = func() {
		_, _ = fmt.Fprintf(stderr, "Usage: voipbot demo [-dir DIR] [-dendrite PATH] [-http 127.0.0.1:PORT]\n\n"+
			"Runs a local demo: a Dendrite homeserver on 127.0.0.1 with the bot's account and a demo user,\n"+
			"and the bot answering calls with a 440 Hz tone. Ctrl-C stops it; its data stays in DIR.\n\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if flags.NArg() > 0 {
		flags.Usage()
		return 2
	}
	fail := func(err error) int {
		_, _ = fmt.Fprintf(stderr, "voipbot demo: %v\n", err)
		return 1
	}
	if err := checkLoopback(*httpAddr); err != nil {
		return fail(fmt.Errorf("-http: %w", err))
	}
	bin, err := findDendrite(*dendriteBin, environ)
	if err != nil {
		return fail(err)
	}
	if v, err := dendriteVersion(bin); err != nil {
		return fail(err)
	} else if v != dendrite.Version {
		_, _ = fmt.Fprintf(stderr, "voipbot demo: warning: %s is Dendrite %s; the demo is made for %s (make run builds it)\n", bin, v, dendrite.Version)
	}
	if *dir, err = filepath.Abs(*dir); err != nil {
		return fail(err)
	}
	st, err := loadDemoState(*dir)
	if err != nil {
		return fail(err)
	}
	if ignored := voipbotVariables(environ); len(ignored) > 0 {
		_, _ = fmt.Fprintf(stderr, "voipbot demo: the demo has a configuration of its own; ignoring %s\n", strings.Join(ignored, ", "))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends this process at once (and Dendrite with it)
		if errors.Is(ctx.Err(), context.Canceled) {
			_, _ = fmt.Fprintln(stdout, "\nStopping the demo: the bot, then Dendrite …")
		}
	}()

	hsDir := filepath.Join(*dir, "dendrite")
	_, _ = fmt.Fprintf(stdout, "Starting Dendrite %s in %s …\n", dendrite.Version, hsDir)
	hsStart := time.Now()
	hs, err := dendrite.Start(ctx, dendrite.Options{Binary: bin, Dir: hsDir, Addr: st.Homeserver, DurableStreams: true})
	if ctx.Err() != nil {
		_, _ = fmt.Fprintln(stderr, "voipbot demo: interrupted while Dendrite started")
		return 1
	} else if err != nil {
		return fail(err)
	}
	_, _ = fmt.Fprintf(stdout, "Dendrite (pid %d) answers at %s after %.1f s; its log: %s\n", hs.PID(), hs.URL, time.Since(hsStart).Seconds(), hs.LogPath())
	code := demoBot(ctx, hs, *dir, *httpAddr, st, build, stdout, stderr, began)
	if err := hs.Stop(); err != nil {
		_, _ = fmt.Fprintf(stderr, "voipbot demo: stopping Dendrite: %v\n", err)
		code = max(code, 1)
	}
	_, _ = fmt.Fprintf(stdout, "The demo has stopped; its data stays in %s.\n", *dir)
	return code
}

// demoBot makes the accounts on hs, writes the bot's configuration, and runs
// the bot until ctx ends or hs exits; it prints the block saying what to
// open once the bot is ready, and returns the exit code.
func demoBot(ctx context.Context, hs *dendrite.Server, dir, httpAddr string, st *demoState, build bridge.BuildInfo, stdout, stderr *os.File, began time.Time) int {
	fail := func(err error) int {
		if ctx.Err() != nil {
			_, _ = fmt.Fprintln(stderr, "voipbot demo: interrupted while starting")
		} else {
			_, _ = fmt.Fprintf(stderr, "voipbot demo: %v\n", err)
		}
		return 1
	}
	info := demoInfo{Dir: dir, HomeserverURL: hs.URL, DemoPassword: st.DemoPassword}
	var err error
	if info.BotUserID, err = hs.Register(ctx, demoBotLocalpart, st.BotPassword); err != nil {
		return fail(err)
	}
	if info.DemoUserID, err = hs.Register(ctx, demoUserLocalpart, st.DemoPassword); err != nil {
		return fail(err)
	}
	configPath := filepath.Join(dir, "config.yaml")
	if err = writeDemoConfig(configPath, dir, hs.URL, httpAddr, info.BotUserID, st); err != nil {
		return fail(err)
	}
	if info.Config, err = voipbot.Load(configPath, nil); err != nil {
		return fail(fmt.Errorf("the demo's configuration %s: %w", configPath, err))
	}

	// The bot stops when the demo does, or when Dendrite exits under it.
	botCtx, cancelBot := context.WithCancelCause(ctx)
	defer cancelBot(nil)
	errHomeserverGone := errors.New("dendrite exited")
	go func() {
		select {
		case <-hs.Exited():
			cancelBot(errHomeserverGone)
		case <-botCtx.Done():
		}
	}()
	ready := make(chan struct{})
	var readyOnce sync.Once
	done := make(chan int, 1)
	go func() {
		done <- runBot(botCtx, info.Config, build, stderr, func() { readyOnce.Do(func() { close(ready) }) })
	}()
	var code int
	select {
	case <-ready:
		link, err := demoCallLink(botCtx, info)
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "voipbot demo: no call link: %v\n", err)
		}
		printDemoBlock(stdout, info, link, time.Since(began))
		code = <-done
	case code = <-done:
	}
	if errors.Is(context.Cause(botCtx), errHomeserverGone) {
		_, _ = fmt.Fprintf(stderr, "voipbot demo: Dendrite exited (%v) under the bot; its log ends:\n%s\n", hs.ExitErr(), hs.LogTail())
		return 1
	}
	return code
}

// printDemoBlock says what to open.
func printDemoBlock(w io.Writer, info demoInfo, link string, took time.Duration) {
	_, _ = fmt.Fprintf(w, "\nvoipbot demo is running (ready in %.1f s).\n", took.Seconds())
	_, _ = fmt.Fprintf(w, "  Homeserver:  %s   (log in with any Matrix client, e.g. Element Web pointed at it)\n", info.HomeserverURL)
	_, _ = fmt.Fprintf(w, "  User:        %s   Password: %s\n", info.DemoUserID, info.DemoPassword)
	_, _ = fmt.Fprintf(w, "  Then: start a chat with %s and call it — it answers with a 440 Hz tone.\n", info.BotUserID)
	if link != "" {
		_, _ = fmt.Fprintf(w, "  Call link:   %s\n", link)
	}
	_, _ = fmt.Fprintf(w, "Ctrl-C stops the demo (data stays in %s).\n", info.Dir)
}

// findDendrite is the -dendrite flag, else $DENDRITE_BIN, else dendrite in
// voipbot's own directory (bin/ of a checkout), else on the PATH.
func findDendrite(flagValue string, environ []string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "DENDRITE_BIN="); ok && v != "" {
			return v, nil
		}
	}
	if self, err := os.Executable(); err == nil {
		next := filepath.Join(filepath.Dir(self), "dendrite")
		if fi, err := os.Stat(next); err == nil && !fi.IsDir() {
			return next, nil
		}
	}
	if p, err := exec.LookPath("dendrite"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no Dendrite binary: give -dendrite PATH or set DENDRITE_BIN (`make run` builds %s into bin/)", dendrite.Version)
}

// dendriteVersion asks the binary for its version, as "v0.15.2".
func dendriteVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		return "", fmt.Errorf("running %s -version: %w", bin, err)
	}
	return "v" + strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), nil
}

// checkLoopback accepts a host:port whose host is a loopback IP address.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: not a loopback IP address (the demo stays on this machine)", addr)
	}
	return nil
}

// voipbotVariables names the VOIPBOT_ variables of environ.
func voipbotVariables(environ []string) []string {
	var names []string
	for _, kv := range environ {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, voipbot.EnvPrefix) {
			names = append(names, name)
		}
	}
	return names
}

// loadDemoState reads dir's demo.json, or makes a new one in a new (or
// empty) dir; it also chooses the homeserver's address: the last one when
// its port is free, else a free one.
func loadDemoState(dir string) (*demoState, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the demo directory: %w", err)
	}
	path := filepath.Join(dir, demoStateFile)
	var st demoState
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err = json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("%s is damaged (%w): delete %s to start afresh", path, err, dir)
		}
		if st.DemoPassword == "" || st.BotPassword == "" || st.PickleKey == "" {
			return nil, fmt.Errorf("%s lacks a password or the pickle key: delete %s to start afresh", path, dir)
		}
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Stat(filepath.Join(dir, "dendrite")); err == nil {
			return nil, fmt.Errorf("%s has a homeserver but no %s (the accounts' passwords): delete %s to start afresh", dir, demoStateFile, dir)
		}
		st = demoState{DemoPassword: demoPassword(), BotPassword: randomHex(24), PickleKey: randomHex(32)}
	default:
		return nil, err
	}
	if st.Homeserver == "" || !portFree(st.Homeserver) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port for the homeserver: %w", err)
		}
		st.Homeserver = ln.Addr().String()
		_ = ln.Close()
	}
	if data, err = json.MarshalIndent(st, "", "  "); err != nil {
		return nil, err
	}
	if err = os.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &st, nil
}

func portFree(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// demoPassword is easy to read and type: four groups of four letters and
// digits (about 80 bits), without look-alikes.
func demoPassword() string {
	const alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	var sb strings.Builder
	for i, c := range b {
		if i > 0 && i%4 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(alphabet[int(c)%len(alphabet)])
	}
	return sb.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writeDemoConfig writes the bot's configuration for the demo: the demo
// homeserver, the tone source, encryption on, its state in dir, and its
// HTTP listener on loopback. It is written at every start (the homeserver's
// port may change).
func writeDemoConfig(path, dir, hsURL, httpAddr string, bot id.UserID, st *demoState) error {
	cfg := map[string]any{
		"homeserver": map[string]any{"url": hsURL},
		"bot":        map[string]any{"user_id": bot.String(), "password": st.BotPassword},
		"encryption": map[string]any{"enabled": true, "pickle_key": st.PickleKey},
		"calls":      map[string]any{"source": "tone"},
		// A client on this machine may offer loopback candidates only.
		"media":    map[string]any{"include_loopback": true, "record_dir": filepath.Join(dir, "recordings")},
		"database": map[string]any{"path": filepath.Join(dir, "voipbot.db")},
		"http":     map[string]any{"listen": httpAddr},
		// Call links on the bot's own listener: a browser on this machine
		// may use the microphone on an http://127.0.0.1 page.
		"guests": map[string]any{"public_url": "http://" + httpAddr},
	}
	body, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	header := "# The bot's configuration in `voipbot demo`, written by it at every start:\n" +
		"# changes here are lost. Every other key has its default (config.example.yaml).\n"
	if err = os.WriteFile(path, append([]byte(header), body...), 0o600); err != nil {
		return fmt.Errorf("writing the demo's configuration: %w", err)
	}
	return nil
}
