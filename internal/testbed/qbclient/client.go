// Package qbclient drives the real QuickBlox JS SDK (npm quickblox 2.23.0)
// in Debian's Chromium for end-to-end tests: each Client is one Chromium
// with one page, one SDK user logged in to a local XMPP server (Prosody,
// internal/testbed/prosody) over WebSocket, with no QuickBlox cloud
// service. It places, answers, rejects, updates and hangs up 1:1 calls
// (the SDK's WebRTC video chat), and reports:
//
//   - the SDK's listeners as events, with the browser's time stamps
//     (Session.Events, WaitEvent; the milestones placed, calling, ringing,
//     accepted, connected, closed in Session.WaitState and Times);
//   - every stanza the SDK's Strophe sent and received (Client.Stanzas,
//     WaitStanza, and Stanza.Signal to read a signal's fields), and
//     SendRaw sends a hand-built one through the SDK's connection;
//   - what the call receives: WebRTC statistics (Session.Stats) and the
//     dominant frequency of the remote audio (Session.WaitRemoteTone),
//     while each Client sends a tone of its own (Options.ToneHz: Chromium's
//     fake microphone plays a WAV file, one per browser process, so one
//     browser per client).
//
// What the SDK does that a test (or a peer of its) must allow for:
//   - it keeps every session, closed ones too: a call whose sessionID it
//     has seen makes no new session, so every call needs a new id;
//   - while one session is new or active it rejects other incoming calls
//     by itself (autoReject), and refuses to place a second call to the
//     same opponents: a test ends each call on both sides before the next;
//   - it re-sends an unanswered call every dialingTimeInterval (5 s) with
//     the same sessionID and a new message id, and after answerTimeInterval
//     (60 s) gives up (onUserNotAnswerListener) without a hangUp;
//   - its update listener gets only the update's userInfo, though its own
//     update sends the fields at the top level (Event.Extension has them).
//
// Tones and their analysis are jsclient's (jsclient.ToneWAV,
// jsclient.Spectrum): the same page-side analyser, an FFT of 16384
// samples, judged in Go.
//
// The JavaScript side lives in js/ beside this package: driver.mjs, a node
// process that launches Chromium with playwright-core and speaks JSON lines
// on its stdin and stdout (run through internal/testbed/proc), and page/,
// the harness page that loads the SDK's browser bundle (vendor/, unpacked
// by Prepare from the npm tarball, not committed: the SDK's licence is
// QuickBlox's).
//
// Needs node 20 or later with npm (playwright-core 1.64 refuses older
// node) and Chromium (Debian: chromium).
package qbclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/voipbot/voipbot/internal/testbed/jsclient"
	"github.com/voipbot/voipbot/internal/testbed/nodejs"
	"github.com/voipbot/voipbot/internal/testbed/proc"
)

const (
	// maxConsoleLines bounds the console lines kept in memory.
	maxConsoleLines = 20000
	// toneSeconds is the length of the looped tone file.
	toneSeconds = 2
)

// IncomingPolicy is what a client does with an incoming call.
type IncomingPolicy string

const (
	// IncomingHold leaves the call ringing for the test to decide
	// (WaitIncoming, then Accept or Reject), until the SDK's answer timer
	// (60 s) ends it.
	IncomingHold IncomingPolicy = "hold"
	// IncomingAccept accepts at once in the page, as an app whose user
	// answers at once: getUserMedia, then the SDK's accept (deferred:
	// onCallListener runs before the SDK has stored the offer).
	IncomingAccept IncomingPolicy = "accept"
	// IncomingReject rejects at once in the page (deferred likewise: in
	// onCallListener the SDK has no peer to send the reject to).
	IncomingReject IncomingPolicy = "reject"
)

// Options configure Launch. WebSocketURL, AppID, UserID and Password are
// required.
type Options struct {
	// WebSocketURL is the XMPP server's WebSocket endpoint (the SDK's
	// chatProtocol.websocket), e.g. prosody.Server.WebSocketURL().
	WebSocketURL string
	// Domain is the SDK's chat endpoint (endpoints.chat): the domain of
	// every JID (<user id>-<app id>@Domain) and where it sends its pings.
	// Default "localhost".
	Domain string
	// AppID is the QuickBlox application id, the second part of each JID's
	// node.
	AppID uint64
	// UserID is the QuickBlox user id (numeric: the SDK parses peers' ids
	// from JIDs with parseInt); Password the XMPP account's password.
	UserID   uint64
	Password string
	// ToneHz, if not 0, is the frequency of a sine that Chromium plays,
	// looped, as the microphone (jsclient.ToneWAV, 2 s, at half of full
	// scale); the microphone is then captured without echo cancellation,
	// noise suppression and gain control. 0 keeps Chromium's fake beep.
	ToneHz float64
	// Video gives the page a camera (Chromium's fake one): it captures
	// video in the video calls it places and accepts. Without it the page
	// captures audio only, also in video calls, as a device without a
	// camera does.
	Video bool
	// Incoming is what the client does with incoming calls; default
	// IncomingHold. AnswerInfo is the userInfo of its automatic accept or
	// reject.
	Incoming   IncomingPolicy
	AnswerInfo map[string]string
	// WebRTC overrides keys of the SDK's config.webrtc (answerTimeInterval,
	// dialingTimeInterval, disconnectTimeInterval in seconds, autoReject,
	// incomingLimit …). iceServers is [] unless given: no TURN or STUN.
	WebRTC map[string]any
	// Debug turns the SDK's own log on (config.debug mode 1: every stanza
	// and state, on the console).
	Debug bool
	// Name names the client in log lines and errors; default "qb<user id>".
	Name string
	// Logf receives the driver's stderr and the page's console errors (with
	// Verbose, every console line). Default: os.Stderr.
	Logf func(format string, args ...any)
	// Verbose copies every console line to Logf; $QBCLIENT_VERBOSE=1 sets
	// it too.
	Verbose bool
	// Dir is the JavaScript project; default JSDir().
	Dir string
	// Chromium is the browser binary; default $QBCLIENT_CHROMIUM, else
	// $JSCLIENT_CHROMIUM, else Debian's /usr/bin/chromium.
	Chromium string
	// ChromiumArgs are extra command line switches (none may contain white
	// space), e.g. --use-file-for-fake-video-capture=<y4m>.
	ChromiumArgs []string
	// Test, if set, closes the client when the test ends, logging the end
	// of its console if the test failed.
	Test proc.TB
}

// ConsoleLine is one message of the page's console (or a page error: Type
// "pageerror").
type ConsoleLine struct {
	At   time.Time
	Type string // log, debug, info, warning, error, pageerror
	Text string
}

func (l ConsoleLine) String() string {
	return fmt.Sprintf("%s [%s] %s", l.At.Format("15:04:05.000"), l.Type, l.Text)
}

// Client is one SDK user in a browser of its own, logged in when Launch
// returns. Its methods are safe for concurrent use.
type Client struct {
	// JID is the full JID the server bound.
	JID string
	// BrowserVersion is Chromium's version, SDKVersion and SDKBuild the
	// SDK's (QB.version, QB.buildNumber).
	BrowserVersion, SDKVersion, SDKBuild string

	opts Options
	name string
	d    *driver

	mu        sync.Mutex
	sessions  map[string]*Session
	incoming  []*Session    // reported incoming sessions not handed out yet
	invalid   []Event       // the SDK's onInvalidEventsListener
	stanzas   []Stanza      // every element sent and received
	console   []ConsoleLine // the last maxConsoleLines lines
	changed   chan struct{} // closed and replaced on every event
	gone      chan struct{} // closed when the page or browser is gone
	goneErr   error
	closeOnce sync.Once
	closeErr  error
}

// findChromium returns the browser binary to launch.
func findChromium(path string) (string, error) {
	for _, p := range []string{path, os.Getenv("QBCLIENT_CHROMIUM"), os.Getenv("JSCLIENT_CHROMIUM"), "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("qbclient: chromium not found at %s (Debian: apt-get install chromium; or set QBCLIENT_CHROMIUM): %w", p, err)
		}
		return p, nil
	}
	return "", errors.New("qbclient: no chromium")
}

// logfWriter turns a Logf into a writer of lines.
type logfWriter struct {
	logf func(format string, args ...any)
	name string
}

func (w logfWriter) Write(p []byte) (int, error) {
	for line := range strings.SplitSeq(strings.TrimRight(string(p), "\n"), "\n") {
		w.logf("%s: %s", w.name, line)
	}
	return len(p), nil
}

// Launch prepares the JavaScript project (npm ci and the SDK, when missing
// or stale), starts the driver and its Chromium, loads the page, and logs
// the user in: QB.init pointed at Options.WebSocketURL, QB.chat.connect,
// its initial presence (without which the server would deliver it no
// signal), and a ping answered (the server has processed that presence).
// ctx bounds the start only; Close ends the browser.
func Launch(ctx context.Context, opts Options) (*Client, error) {
	if opts.WebSocketURL == "" || opts.AppID == 0 || opts.UserID == 0 || opts.Password == "" {
		return nil, errors.New("qbclient: a client needs a WebSocket URL, an application id, a user id and a password")
	}
	if opts.Domain == "" {
		opts.Domain = "localhost"
	}
	if opts.Incoming == "" {
		opts.Incoming = IncomingHold
	}
	if opts.Dir == "" {
		opts.Dir = JSDir()
	}
	if os.Getenv("QBCLIENT_VERBOSE") == "1" {
		opts.Verbose = true
	}
	if opts.Logf == nil {
		opts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	c := &Client{
		opts: opts, name: opts.Name,
		sessions: make(map[string]*Session),
		changed:  make(chan struct{}),
		gone:     make(chan struct{}),
	}
	if c.name == "" {
		c.name = "qb" + strconv.FormatUint(opts.UserID, 10)
	}
	args := append([]string(nil), opts.ChromiumArgs...)
	for _, arg := range args {
		if strings.ContainsAny(arg, " \t\n") {
			return nil, fmt.Errorf("qbclient: the Chromium switch %q holds white space", arg)
		}
	}
	chromium, err := findChromium(opts.Chromium)
	if err != nil {
		return nil, err
	}
	node, err := nodejs.Find(ctx)
	if err != nil {
		return nil, fmt.Errorf("qbclient: %w", err)
	}
	if err = Prepare(ctx, opts.Dir, logfWriter{opts.Logf, c.name}); err != nil {
		return nil, err
	}

	d := &driver{
		onEvent: c.handle,
		ready:   make(chan *message, 1),
		done:    make(chan struct{}),
		pending: make(map[int64]chan reply),
		stderr:  &tailWriter{w: logfWriter{opts.Logf, c.name}},
	}
	// Everything the browser writes (profile, crash database, shared memory
	// files, the tone) goes to a directory of its own, removed on Close.
	// Its path in their command lines also finds the crash handler
	// processes, which Chromium forks away from its own tree.
	if d.stateDir, err = os.MkdirTemp("", "qbclient-"); err != nil {
		return nil, fmt.Errorf("qbclient: %w", err)
	}
	if opts.ToneHz != 0 {
		wav := filepath.Join(d.stateDir, "tone.wav")
		if err = jsclient.ToneWAV(wav, opts.ToneHz, toneSeconds); err != nil {
			_ = os.RemoveAll(d.stateDir)
			return nil, fmt.Errorf("qbclient: the microphone's tone: %w", err)
		}
		args = append(args, "--use-file-for-fake-audio-capture="+wav)
	}
	cmd := exec.Command(node, "driver.mjs")
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(),
		"QBCLIENT_CHROMIUM="+chromium, "QBCLIENT_CHROMIUM_ARGS="+strings.Join(args, " "),
		"TMPDIR="+d.stateDir, "XDG_CONFIG_HOME="+filepath.Join(d.stateDir, "config"), "XDG_CACHE_HOME="+filepath.Join(d.stateDir, "cache"))
	cmd.Stderr = d.stderr
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		_ = os.RemoveAll(d.stateDir)
		return nil, fmt.Errorf("qbclient: %w", err)
	}
	// The driver's standard output is its protocol. It runs in a process
	// group of its own, which can be killed as a whole; closing its
	// standard input asks it to log out, close the browser and exit.
	d.proc, err = proc.Start(cmd, proc.Options{
		Name: "the qbclient driver (" + c.name + ")", OnLine: d.line, KeepLines: 1, Group: true, Grace: closeTimeout,
		Quit: func() error {
			d.wmu.Lock()
			defer d.wmu.Unlock()
			return d.stdin.Close()
		},
	})
	if err != nil {
		_ = os.RemoveAll(d.stateDir)
		return nil, fmt.Errorf("qbclient: %w", err)
	}
	c.d = d
	go func() {
		d.reaped()
		c.markGone(fmt.Errorf("the browser is gone: %w", d.exit))
	}()
	ok := false
	defer func() {
		if !ok {
			_ = c.Close()
		}
	}()
	select {
	case m := <-d.ready:
		c.BrowserVersion = m.BrowserVersion
	case <-d.done:
		return nil, fmt.Errorf("qbclient: %s: the driver exited during start (%w):\n%s", c.name, d.exit, d.stderr.Tail())
	case <-ctx.Done():
		return nil, fmt.Errorf("qbclient: %s: waiting for the browser: %w", c.name, ctx.Err())
	}
	if err = d.call(ctx, "open", map[string]any{"timeoutMs": waitMillis(ctx)}, nil); err != nil {
		return nil, fmt.Errorf("qbclient: %s: opening the page: %w\n%s", c.name, err, c.ConsoleTail(20))
	}
	var res struct {
		JID         string `json:"jid"`
		SDKVersion  string `json:"sdkVersion"`
		BuildNumber string `json:"buildNumber"`
	}
	login := map[string]any{
		"websocketURL": opts.WebSocketURL, "domain": opts.Domain, "appId": opts.AppID,
		"userId": opts.UserID, "password": opts.Password,
		"camera": opts.Video, "rawAudio": opts.ToneHz != 0, "debug": opts.Debug,
		"incoming": string(opts.Incoming), "answerInfo": opts.AnswerInfo, "webrtc": opts.WebRTC,
	}
	if err = c.invoke(ctx, "login", &res, login); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, c.ConsoleTail(30))
	}
	c.JID, c.SDKVersion, c.SDKBuild = res.JID, res.SDKVersion, res.BuildNumber
	if tb := opts.Test; tb != nil {
		tb.Cleanup(func() {
			if tb.Failed() {
				tb.Logf("%s (%s) console, last lines:\n%s", c.name, c.JID, c.ConsoleTail(60))
			}
			if err := c.Close(); err != nil {
				tb.Logf("closing %s: %v", c.name, err)
			}
		})
	}
	ok = true
	return c, nil
}

// Name is Options.Name (default "qb<user id>").
func (c *Client) Name() string { return c.name }

// UserID is the client's QuickBlox user id.
func (c *Client) UserID() uint64 { return c.opts.UserID }

// BareJID is the client's bare JID, <user id>-<app id>@<domain>.
func (c *Client) BareJID() string {
	return fmt.Sprintf("%d-%d@%s", c.opts.UserID, c.opts.AppID, c.opts.Domain)
}

// invoke calls window.harness[fn](...args) in the page.
func (c *Client) invoke(ctx context.Context, fn string, result any, args ...any) error {
	if err := c.goneError(); err != nil {
		return fmt.Errorf("qbclient: %s: %s: %w", c.name, fn, err)
	}
	if args == nil {
		args = []any{}
	}
	if err := c.d.call(ctx, "invoke", map[string]any{"fn": fn, "args": args}, result); err != nil {
		return fmt.Errorf("qbclient: %s: %w", c.name, err)
	}
	return nil
}

// handle applies an event from the driver (one goroutine at a time, in
// order).
func (c *Client) handle(m *message) {
	at := browserTime(m.T)
	switch m.Event {
	case "console":
		c.addConsole(ConsoleLine{At: at, Type: m.Type, Text: m.Text})
		return
	case "page.crashed", "browser.disconnected":
		c.addConsole(ConsoleLine{At: at, Type: "crash", Text: m.Event})
		c.markGone(errors.New(m.Event))
		return
	case "stanza":
		c.mu.Lock()
		c.stanzas = append(c.stanzas, Stanza{Dir: Direction(m.Dir), XML: m.XML, At: at})
		c.notifyLocked()
		c.mu.Unlock()
		return
	case "client.invalid":
		c.mu.Lock()
		c.invalid = append(c.invalid, Event{Kind: EventKind(m.Kind), At: at, UserID: m.UserID, UserInfo: decodeMap(m.UserInfo), Session: m.Session})
		c.notifyLocked()
		c.mu.Unlock()
		return
	case "chat.disconnected":
		c.addConsole(ConsoleLine{At: at, Type: "info", Text: "chat disconnected"})
		return
	}
	kind, ok := strings.CutPrefix(m.Event, "session.")
	if !ok || m.Session == "" {
		return
	}
	s := c.session(m.sessionInfo)
	s.apply(EventKind(kind), m, at)
	if kind == string(EventCall) {
		c.mu.Lock()
		c.incoming = append(c.incoming, s)
		c.notifyLocked()
		c.mu.Unlock()
	}
}

func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) addConsole(l ConsoleLine) {
	c.mu.Lock()
	if len(c.console) == maxConsoleLines {
		n := copy(c.console, c.console[maxConsoleLines/2:])
		c.console = c.console[:n]
	}
	c.console = append(c.console, l)
	c.mu.Unlock()
	if c.opts.Verbose || l.Type == "error" || l.Type == "pageerror" || l.Type == "crash" {
		c.opts.Logf("%s: %s", c.name, l)
	}
}

// session returns the session with the given id, creating it at the first
// event about it (events can overtake the reply to Call).
func (c *Client) session(info sessionInfo) *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[info.Session]
	if s == nil {
		s = &Session{
			c: c, id: info.Session, direction: Direction(info.Direction),
			callType: info.CallType, initiator: info.InitiatorID, opponents: info.OpponentsIDs,
			reached: make(map[State]time.Time), changed: make(chan struct{}),
		}
		c.sessions[info.Session] = s
	}
	return s
}

func (c *Client) markGone(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.gone:
	default:
		c.goneErr = err
		close(c.gone)
	}
}

// goneError is why the page is gone, or nil.
func (c *Client) goneError() error {
	select {
	case <-c.gone:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.goneErr
	default:
		return nil
	}
}

// wait runs cond (under the client's lock) on every event until it is true
// or fails.
func (c *Client) wait(ctx context.Context, what string, cond func() (bool, error)) error {
	for {
		c.mu.Lock()
		ok, err := cond()
		changed := c.changed
		c.mu.Unlock()
		if ok || err != nil {
			return err
		}
		select {
		case <-changed:
		case <-c.gone:
			return fmt.Errorf("qbclient: %s waiting for %s: %w", c.name, what, c.goneError())
		case <-ctx.Done():
			return fmt.Errorf("qbclient: %s waiting for %s: %w", c.name, what, ctx.Err())
		}
	}
}

// Call places a call to opponents (user ids of the same application and
// domain), audio or video, with userInfo as the call's extension (the
// SDK's session.call): a new SDK session, the local media, then the call,
// which the SDK sends (and re-sends every 5 s until answered, for 60 s).
// It returns once call() was made; wait for StateConnected.
func (c *Client) Call(ctx context.Context, opponents []uint64, video bool, userInfo map[string]string) (*Session, error) {
	if len(opponents) == 0 {
		return nil, errors.New("qbclient: a call needs an opponent")
	}
	var res struct {
		sessionInfo
		PlacedAt float64 `json:"placedAt"`
	}
	if userInfo == nil {
		userInfo = map[string]string{}
	}
	if err := c.invoke(ctx, "call", &res, opponents, video, userInfo); err != nil {
		return nil, err
	}
	return c.session(res.sessionInfo), nil
}

// SetIncoming changes what the client does with incoming calls, and the
// userInfo of its automatic accept or reject.
func (c *Client) SetIncoming(ctx context.Context, policy IncomingPolicy, answerInfo map[string]string) error {
	if answerInfo == nil {
		answerInfo = map[string]string{}
	}
	return c.invoke(ctx, "setIncoming", nil, string(policy), answerInfo)
}

// WaitIncoming returns the next incoming session not returned before (in
// the order their calls arrived), waiting for one if there is none.
func (c *Client) WaitIncoming(ctx context.Context) (*Session, error) {
	var s *Session
	err := c.wait(ctx, "an incoming call", func() (bool, error) {
		if len(c.incoming) == 0 {
			return false, nil
		}
		s = c.incoming[0]
		c.incoming = c.incoming[1:]
		return true, nil
	})
	return s, err
}

// Sessions lists the client's sessions known so far.
func (c *Client) Sessions() []*Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Session, 0, len(c.sessions))
	for _, s := range c.sessions {
		out = append(out, s)
	}
	return out
}

// InvalidEvents are the SDK's onInvalidEventsListener calls so far: a
// signal it ignored for the session's state (Kind onCall, onAccept,
// onStop), e.g. a call it auto-rejected as busy.
func (c *Client) InvalidEvents() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.invalid...)
}

// SendRaw sends a hand-built stanza (one element, well-formed XML) through
// the SDK's XMPP connection, as a peer other than the SDK would send it.
func (c *Client) SendRaw(ctx context.Context, xml string) error {
	return c.invoke(ctx, "sendRaw", nil, xml)
}

// Console returns the console lines kept (the last 20000 at most).
func (c *Client) Console() []ConsoleLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ConsoleLine(nil), c.console...)
}

// ConsoleTail is the last n console lines, for failure messages.
func (c *Client) ConsoleTail(n int) string {
	lines := c.Console()
	lines = lines[max(0, len(lines)-n):]
	var b strings.Builder
	for _, l := range lines {
		text := l.Text
		if len(text) > 2000 {
			text = text[:2000] + "…"
		}
		fmt.Fprintf(&b, "%s [%s] %s\n", l.At.Format("15:04:05.000"), l.Type, text)
	}
	return b.String()
}

// LogTail is the end of the driver's stderr, for failure messages.
func (c *Client) LogTail() string { return c.d.stderr.Tail() }

// Done is closed when the page or the browser is gone (Close, a crash).
func (c *Client) Done() <-chan struct{} { return c.gone }

// PIDs lists the driver and every process of its browser alive now.
func (c *Client) PIDs() []int {
	var out []int
	for _, p := range c.d.processes() {
		out = append(out, p.pid)
	}
	return out
}

// Close logs the user out (ending its live calls, as an app that quits),
// closes the browser and waits until the driver and every browser process
// have exited (killing them if they do not within 15 s). It is safe to
// call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		if c.d == nil {
			return
		}
		if err := c.d.close(); err != nil {
			c.closeErr = fmt.Errorf("qbclient: %s: %w", c.name, err)
		}
		c.markGone(errors.New("closed"))
	})
	return c.closeErr
}

// decodeMap decodes a JSON object (a userInfo or an extension); anything
// else is nil.
func decodeMap(raw json.RawMessage) map[string]any {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}
