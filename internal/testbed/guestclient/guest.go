// Package guestclient drives the bot's browser guest call page
// (web/guestpage) in Debian's Chromium for tests: each Guest is one
// Chromium (headless, fake camera, a tone as its microphone) with one page
// that opens a call link, joins, mutes, hangs up and calls again as a
// person would (typing and clicking), and reports what the page shows:
//
//   - its states (connecting, ready, starting, ringing, answered,
//     connected, ended) with the page's own time stamps (WaitState,
//     StateTime), why a call ended and what the page said (EndReason), the
//     other side's mute (RemoteMuted) and the quality readout (Stats);
//   - what it receives: the dominant frequency of the remote audio that its
//     <audio> element plays (WaitRemoteTone, through WebAudio; tones and
//     their analysis are jsclient's), and whether remote video shows
//     (WaitRemoteVideo);
//   - its console errors (ConsoleErrors), and screenshots.
//
// The page is watched, not changed: an init script of the driver observes
// the attributes and texts the page shows its state by (the body's
// data-state, data-end-reason, data-remote-audio-muted … and the ids of
// index.html, see web/guestpage's package doc) and reports every change at
// once, so that waiting for a state waits for an event, not a poll. The
// one thing it alters, when Options.ToneHz is set, is getUserMedia's audio
// constraints: voice processing off, or the browser's noise suppression
// would take the steady tone for noise.
//
// The JavaScript side lives in js/ beside this package: driver.mjs, a node
// process that launches Chromium with playwright-core (pinned as jsclient
// pins it) and speaks JSON lines on its stdin and stdout (run through
// internal/testbed/proc). Launch installs the npm packages (npm ci) when
// they are missing or stale.
//
// Needs node 20 or later with npm (playwright-core 1.64 refuses older
// node) and Chromium (Debian: chromium).
package guestclient

import (
	"context"
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

// State is a state of the page (its body's data-state).
type State string

// The page's states, in the order a call goes through them.
const (
	// StateConnecting: the page opens its WebSocket.
	StateConnecting State = "connecting"
	// StateReady: hello came; the page shows the name, the devices and
	// Join.
	StateReady State = "ready"
	// StateStarting: Join was clicked; the page captures the microphone
	// (and camera) and gathers ICE candidates.
	StateStarting State = "starting"
	// StateRinging: the call was sent; the page plays its ringback.
	StateRinging State = "ringing"
	// StateAnswered: accept came; the peer connection is being set up.
	StateAnswered State = "answered"
	// StateConnected: the peer connection is up.
	StateConnected State = "connected"
	// StateEnded: the call ended (EndReason says why).
	StateEnded State = "ended"
)

// The page's elements the guest acts on (ids of web/guestpage's index.html).
const (
	selName   = "#name"
	selCamera = "#camera"
	selJoin   = "#join"
	selMute   = "#mute"
	selCamOff = "#camera-toggle"
	selHangup = "#hangup"
	selAgain  = "#again"
	selRemote = "#remote-video"
)

// Options configure Launch. The zero value works from within this
// repository.
type Options struct {
	// Name is what the guest types as its name; default "Guest".
	Name string
	// ToneHz, if not 0, is the frequency of a sine that Chromium plays,
	// looped, as the microphone (jsclient.ToneWAV, 2 s, at half of full
	// scale), captured without voice processing. 0 keeps Chromium's
	// fake beep.
	ToneHz float64
	// Video makes the guest join with its camera (Chromium's fake one)
	// when the call allows video; without it the guest picks "No camera"
	// and receives video only.
	Video bool
	// ArtifactsDir, if set, receives the page's console (<name>-console.txt)
	// and a last screenshot (<name>-last.png) when the guest is closed.
	ArtifactsDir string
	// Logf receives the driver's stderr and the page's console errors
	// (with Verbose, every console line). Default: os.Stderr.
	Logf func(format string, args ...any)
	// Verbose copies every console line to Logf; $GUESTCLIENT_VERBOSE=1
	// sets it too.
	Verbose bool
	// Viewport is the page's size in CSS pixels; default 480×900 (a large
	// phone).
	ViewportWidth, ViewportHeight int
	// Dir is the JavaScript project; default JSDir().
	Dir string
	// Chromium is the browser binary; default $GUESTCLIENT_CHROMIUM, else
	// $JSCLIENT_CHROMIUM, else Debian's /usr/bin/chromium.
	Chromium string
	// ChromiumArgs are extra command line switches (none may contain white
	// space).
	ChromiumArgs []string
	// Test, if set, closes the guest when the test ends, logging the end
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

// snapshot is what the driver's watcher reports of the page (snapshot() in
// driver.mjs).
type snapshot struct {
	Doc              string `json:"doc"`
	Title            string `json:"title"`
	State            State  `json:"state"`
	Status           string `json:"status"`
	EndReason        string `json:"endReason"`
	EndText          string `json:"endText"`
	EndDetail        string `json:"endDetail"`
	Peer             string `json:"peer"`
	Video            bool   `json:"video"`
	AudioMuted       bool   `json:"audioMuted"`
	VideoMuted       bool   `json:"videoMuted"`
	RemoteAudioMuted bool   `json:"remoteAudioMuted"`
	RemoteVideoMuted bool   `json:"remoteVideoMuted"`
	RemoteVideo      bool   `json:"remoteVideo"`
	Quality          struct {
		RTT  string `json:"rtt"`
		Loss string `json:"loss"`
		In   string `json:"in"`
		Out  string `json:"out"`
	} `json:"quality"`
}

// View is what the page shows, as of its last change.
type View struct {
	// State is the page's state ("" on a page that is not the call page,
	// such as an error page).
	State State
	// Title is the document's title (the call's, from hello).
	Title string
	// Status is the status line.
	Status string
	// Peer is who answered, as shown.
	Peer string
	// Video says that the call allows video (hello).
	Video bool
	// AudioMuted and VideoMuted are the guest's own; RemoteAudioMuted and
	// RemoteVideoMuted the other side's last update; RemoteVideo says that
	// remote video is shown.
	AudioMuted, VideoMuted             bool
	RemoteAudioMuted, RemoteVideoMuted bool
	RemoteVideo                        bool
	// End is why the call ended (in StateEnded).
	End End
	// Quality is the quality readout.
	Quality Quality
	// At is the page's time of the change.
	At time.Time
}

// End is why a call ended, as the page has it.
type End struct {
	// Reason is the page's data-end-reason: a reason of the bot's reject
	// (declined, busy, no_answer) or hangUp (hangup, failed, shutdown), or
	// error (the bot's error message), local (the guest hung up), lost
	// (the socket closed), unreachable (it never opened), failed (also:
	// the peer connection failed).
	Reason string
	// Text is what the page says for it ("Nobody took the call" …), and
	// Detail the detail it shows below (the bot's words).
	Text, Detail string
}

// Quality is the page's quality readout.
type Quality struct {
	// RTT is the round-trip time of the candidate pair in use.
	RTT time.Duration
	// LossPercent is the share of packets lost, in percent, over the last
	// two seconds.
	LossPercent float64
	// InKbps and OutKbps are the bit rates received and sent, in kb/s.
	InKbps, OutKbps float64
	// HasRTT, HasLoss and HasBitrates say which readouts show a value
	// (they show "–" until the connection has one).
	HasRTT, HasLoss, HasBitrates bool
}

func (s *snapshot) view(at time.Time) View {
	v := View{
		State: s.State, Title: s.Title, Status: s.Status, Peer: s.Peer, Video: s.Video,
		AudioMuted: s.AudioMuted, VideoMuted: s.VideoMuted,
		RemoteAudioMuted: s.RemoteAudioMuted, RemoteVideoMuted: s.RemoteVideoMuted, RemoteVideo: s.RemoteVideo,
		End: End{Reason: s.EndReason, Text: s.EndText, Detail: s.EndDetail},
		At:  at,
	}
	if s.State != StateEnded {
		v.End = End{}
	}
	q := &v.Quality
	if f, err := strconv.ParseFloat(s.Quality.RTT, 64); err == nil {
		q.RTT, q.HasRTT = time.Duration(f*float64(time.Millisecond)), true
	}
	if f, err := strconv.ParseFloat(s.Quality.Loss, 64); err == nil {
		q.LossPercent, q.HasLoss = f, true
	}
	in, errIn := strconv.ParseFloat(s.Quality.In, 64)
	out, errOut := strconv.ParseFloat(s.Quality.Out, 64)
	if errIn == nil && errOut == nil {
		q.InKbps, q.OutKbps, q.HasBitrates = in, out, true
	}
	return v
}

// transition is the page entering a state.
type transition struct {
	state State
	at    time.Time
}

// Guest is one browser guest: a Chromium with one page. Its methods are
// safe for concurrent use.
type Guest struct {
	// BrowserVersion is Chromium's version.
	BrowserVersion string

	opts Options
	name string
	d    *driver

	mu      sync.Mutex
	view    View
	doc     string          // the document the view is of
	oldDocs map[string]bool // documents navigated away from
	history []transition    // the current document's state changes
	mark    int             // where the current call's changes start in history
	console []ConsoleLine   // the last maxConsoleLines lines
	changed chan struct{}   // closed and replaced on every event
	gone    chan struct{}   // closed when the page or browser is gone
	goneErr error
	once    sync.Once
	err     error
}

// findChromium returns the browser binary to launch.
func findChromium(path string) (string, error) {
	for _, p := range []string{path, os.Getenv("GUESTCLIENT_CHROMIUM"), os.Getenv("JSCLIENT_CHROMIUM"), "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("guestclient: chromium not found at %s (Debian: apt-get install chromium; or set GUESTCLIENT_CHROMIUM): %w", p, err)
		}
		return p, nil
	}
	return "", errors.New("guestclient: no chromium")
}

// Launch prepares the JavaScript project (npm ci, when missing or stale)
// and starts the driver and its Chromium with an empty page. ctx bounds
// the start only; Close ends the browser.
func Launch(ctx context.Context, opts Options) (*Guest, error) {
	if opts.Name == "" {
		opts.Name = "Guest"
	}
	if opts.Dir == "" {
		opts.Dir = JSDir()
	}
	if os.Getenv("GUESTCLIENT_VERBOSE") == "1" {
		opts.Verbose = true
	}
	if opts.Logf == nil {
		opts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	if opts.ViewportWidth <= 0 || opts.ViewportHeight <= 0 {
		opts.ViewportWidth, opts.ViewportHeight = 480, 900
	}
	g := &Guest{
		opts: opts, name: "guest " + strconv.Quote(opts.Name),
		oldDocs: make(map[string]bool),
		changed: make(chan struct{}),
		gone:    make(chan struct{}),
	}
	args := append([]string(nil), opts.ChromiumArgs...)
	for _, arg := range args {
		if strings.ContainsAny(arg, " \t\n") {
			return nil, fmt.Errorf("guestclient: the Chromium switch %q holds white space", arg)
		}
	}
	chromium, err := findChromium(opts.Chromium)
	if err != nil {
		return nil, err
	}
	node, err := nodejs.Find(ctx)
	if err != nil {
		return nil, fmt.Errorf("guestclient: %w", err)
	}
	if err = Prepare(ctx, opts.Dir, logfWriter{opts.Logf, g.name}); err != nil {
		return nil, err
	}

	d := &driver{
		onEvent: g.handle,
		ready:   make(chan *message, 1),
		done:    make(chan struct{}),
		pending: make(map[int64]chan reply),
		stderr:  &tailWriter{w: logfWriter{opts.Logf, g.name}},
	}
	// Everything the browser writes (profile, crash database, shared memory
	// files, the tone) goes to a directory of its own, removed on Close.
	// Its path in their command lines also finds the crash handler
	// processes, which Chromium forks away from its own tree.
	if d.stateDir, err = os.MkdirTemp("", "guestclient-"); err != nil {
		return nil, fmt.Errorf("guestclient: %w", err)
	}
	env := []string{
		"GUESTCLIENT_CHROMIUM=" + chromium,
		"GUESTCLIENT_VIEWPORT=" + strconv.Itoa(opts.ViewportWidth) + "x" + strconv.Itoa(opts.ViewportHeight),
		"TMPDIR=" + d.stateDir, "XDG_CONFIG_HOME=" + filepath.Join(d.stateDir, "config"), "XDG_CACHE_HOME=" + filepath.Join(d.stateDir, "cache"),
	}
	if opts.ToneHz != 0 {
		wav := filepath.Join(d.stateDir, "tone.wav")
		if err = jsclient.ToneWAV(wav, opts.ToneHz, toneSeconds); err != nil {
			_ = os.RemoveAll(d.stateDir)
			return nil, fmt.Errorf("guestclient: the microphone's tone: %w", err)
		}
		args = append(args, "--use-file-for-fake-audio-capture="+wav)
		env = append(env, "GUESTCLIENT_RAW_AUDIO=1")
	}
	cmd := exec.Command(node, "driver.mjs")
	cmd.Dir = opts.Dir
	cmd.Env = append(append(os.Environ(), env...), "GUESTCLIENT_CHROMIUM_ARGS="+strings.Join(args, " "))
	cmd.Stderr = d.stderr
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		_ = os.RemoveAll(d.stateDir)
		return nil, fmt.Errorf("guestclient: %w", err)
	}
	// The driver's standard output is its protocol. It runs in a process
	// group of its own, which can be killed as a whole; closing its
	// standard input asks it to close the browser and exit.
	d.proc, err = proc.Start(cmd, proc.Options{
		Name: "the guestclient driver (" + g.name + ")", OnLine: d.line, KeepLines: 1, Group: true, Grace: closeTimeout,
		Quit: func() error {
			d.wmu.Lock()
			defer d.wmu.Unlock()
			return d.stdin.Close()
		},
	})
	if err != nil {
		_ = os.RemoveAll(d.stateDir)
		return nil, fmt.Errorf("guestclient: %w", err)
	}
	g.d = d
	go func() {
		d.reaped()
		g.markGone(fmt.Errorf("the browser is gone: %w", d.exit))
	}()
	select {
	case m := <-d.ready:
		g.BrowserVersion = m.BrowserVersion
	case <-d.done:
		_ = g.Close()
		return nil, fmt.Errorf("guestclient: %s: the driver exited during start (%w):\n%s", g.name, d.exit, d.stderr.Tail())
	case <-ctx.Done():
		_ = g.Close()
		return nil, fmt.Errorf("guestclient: %s: waiting for the browser: %w", g.name, ctx.Err())
	}
	if tb := opts.Test; tb != nil {
		tb.Cleanup(func() {
			if tb.Failed() {
				tb.Logf("%s console, last lines:\n%s", g.name, g.ConsoleTail(60))
			}
			if err := g.Close(); err != nil {
				tb.Logf("closing %s: %v", g.name, err)
			}
		})
	}
	return g, nil
}

// Name is Options.Name.
func (g *Guest) Name() string { return g.opts.Name }

// handle applies an event from the driver (one at a time, in order).
func (g *Guest) handle(m *message) {
	at := browserTime(m.T)
	switch m.Event {
	case "console":
		g.addConsole(ConsoleLine{At: at, Type: m.Type, Text: m.Text})
	case "page.crashed", "browser.disconnected":
		g.addConsole(ConsoleLine{At: at, Type: "crash", Text: m.Event})
		g.markGone(errors.New(m.Event))
	case "page":
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.oldDocs[m.Doc] {
			return // the page Open navigated away from, still reporting
		}
		if m.Doc != g.doc {
			// A new document: a new page, whose history starts now.
			g.doc, g.history, g.mark = m.Doc, nil, 0
			g.view = View{}
		}
		prev := g.view.State
		g.view = m.view(at)
		if m.State != "" && (m.State != prev || len(g.history) == 0) {
			g.history = append(g.history, transition{m.State, at})
		}
		g.notifyLocked()
	}
}

func (g *Guest) notifyLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

func (g *Guest) addConsole(l ConsoleLine) {
	g.mu.Lock()
	if len(g.console) == maxConsoleLines {
		n := copy(g.console, g.console[maxConsoleLines/2:])
		g.console = g.console[:n]
	}
	g.console = append(g.console, l)
	g.notifyLocked()
	g.mu.Unlock()
	if g.opts.Verbose || l.Type == "error" || l.Type == "pageerror" || l.Type == "crash" {
		g.opts.Logf("%s: %s", g.name, l)
	}
}

func (g *Guest) markGone(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gone:
	default:
		g.goneErr = err
		close(g.gone)
	}
}

// goneError is why the page is gone, or nil.
func (g *Guest) goneError() error {
	select {
	case <-g.gone:
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.goneErr
	default:
		return nil
	}
}

// wait runs cond (under the guest's lock) on every event until it is true
// or fails.
func (g *Guest) wait(ctx context.Context, what string, cond func() (bool, error)) error {
	for {
		g.mu.Lock()
		ok, err := cond()
		changed := g.changed
		g.mu.Unlock()
		if ok || err != nil {
			return err
		}
		select {
		case <-changed:
		case <-g.gone:
			return fmt.Errorf("guestclient: %s waiting for %s: %w", g.name, what, g.goneError())
		case <-ctx.Done():
			g.mu.Lock()
			v := g.view
			g.mu.Unlock()
			return fmt.Errorf("guestclient: %s waiting for %s (the page is %q: %q): %w", g.name, what, v.State, v.Status, ctx.Err())
		}
	}
}

// do sends a driver command.
func (g *Guest) do(ctx context.Context, cmd string, args map[string]any, result any) error {
	if err := g.goneError(); err != nil {
		return fmt.Errorf("guestclient: %s: %s: %w", g.name, cmd, err)
	}
	if args == nil {
		args = map[string]any{}
	}
	if _, ok := args["timeoutMs"]; !ok {
		args["timeoutMs"] = waitMillis(ctx)
	}
	if err := g.d.call(ctx, cmd, args, result); err != nil {
		return fmt.Errorf("guestclient: %s: %w", g.name, err)
	}
	return nil
}

// Open loads url (a call link, or anything else) and returns the HTTP
// status of the response and the document's title once it has loaded: an
// error page's title says what is wrong. A call page then connects by
// itself: wait for StateReady, or Join.
func (g *Guest) Open(ctx context.Context, url string) (status int, title string, err error) {
	g.mu.Lock()
	if g.doc != "" {
		g.oldDocs[g.doc] = true
	}
	g.doc, g.history, g.mark, g.view = "", nil, 0, View{}
	g.mu.Unlock()
	var res struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	if err := g.do(ctx, "open", map[string]any{"url": url}, &res); err != nil {
		return 0, "", err
	}
	return res.Status, res.Title, nil
}

// Join waits until the page is ready (the bot's hello came), types the
// name, picks "No camera" unless Options.Video (in a call that allows
// video), and clicks Join. Then wait for StateRinging.
func (g *Guest) Join(ctx context.Context) error {
	if _, err := g.WaitState(ctx, StateReady); err != nil {
		return err
	}
	if err := g.do(ctx, "fill", map[string]any{"selector": selName, "value": g.opts.Name}, nil); err != nil {
		return err
	}
	if g.View().Video && !g.opts.Video {
		if err := g.do(ctx, "select", map[string]any{"selector": selCamera, "value": "none"}, nil); err != nil {
			return err
		}
	}
	g.mu.Lock()
	g.mark = len(g.history)
	g.mu.Unlock()
	return g.do(ctx, "click", map[string]any{"selector": selJoin}, nil)
}

// CallAgain clicks "Call again" on the ended page: a new socket, and a new
// call at once (the name is still typed). WaitState then waits for the new
// call's states.
func (g *Guest) CallAgain(ctx context.Context) error {
	if _, err := g.WaitState(ctx, StateEnded); err != nil {
		return err
	}
	g.mu.Lock()
	g.mark = len(g.history)
	g.mu.Unlock()
	return g.do(ctx, "click", map[string]any{"selector": selAgain}, nil)
}

// WaitState waits until the page has reached state in the current call
// (since Open, Join or CallAgain) and returns when it did, by the page's
// clock. Waiting for any state but ended fails once the call has ended.
func (g *Guest) WaitState(ctx context.Context, state State) (time.Time, error) {
	var at time.Time
	err := g.wait(ctx, "the state "+string(state), func() (bool, error) {
		for _, tr := range g.history[min(g.mark, len(g.history)):] {
			if tr.state == state {
				at = tr.at
				return true, nil
			}
			if tr.state == StateEnded {
				e := g.view.End
				return false, fmt.Errorf("guestclient: %s: the call ended before %s: %s (%s; %q)", g.name, state, e.Reason, e.Text, e.Detail)
			}
		}
		return false, nil
	})
	return at, err
}

// StateTime says when the page reached state in the current call, if it
// has.
func (g *Guest) StateTime(state State) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, tr := range g.history[min(g.mark, len(g.history)):] {
		if tr.state == state {
			return tr.at, true
		}
	}
	return time.Time{}, false
}

// View is what the page shows now (as of its last change).
func (g *Guest) View() View {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.view
}

// State is the page's state now.
func (g *Guest) State() State { return g.View().State }

// EndReason is why the call ended, as the page shows it (zero while it
// has not).
func (g *Guest) EndReason() End { return g.View().End }

// RemoteMuted is the other side's microphone and camera as its last
// update said.
func (g *Guest) RemoteMuted() (audio, video bool) {
	v := g.View()
	return v.RemoteAudioMuted, v.RemoteVideoMuted
}

// WaitRemoteMuted waits until the page shows the other side's mute as
// audio and video.
func (g *Guest) WaitRemoteMuted(ctx context.Context, audio, video bool) error {
	return g.wait(ctx, fmt.Sprintf("the remote mute audio=%t video=%t", audio, video), func() (bool, error) {
		return g.view.RemoteAudioMuted == audio && g.view.RemoteVideoMuted == video, nil
	})
}

// WaitView waits until cond accepts what the page shows, and returns that.
func (g *Guest) WaitView(ctx context.Context, what string, cond func(View) bool) (View, error) {
	var v View
	err := g.wait(ctx, what, func() (bool, error) {
		v = g.view
		return cond(v), nil
	})
	return v, err
}

// toggle clicks selector unless the page already shows the wanted state,
// then waits until it does.
func (g *Guest) toggle(ctx context.Context, what, selector string, want bool, is func(View) bool) error {
	if is(g.View()) != want {
		if err := g.do(ctx, "click", map[string]any{"selector": selector}, nil); err != nil {
			return err
		}
	}
	_, err := g.WaitView(ctx, fmt.Sprintf("%s %t", what, want), func(v View) bool { return is(v) == want })
	return err
}

// Mute mutes (or unmutes) the guest's microphone with the page's Mute
// button, and waits until the page shows it (it has sent its update then).
func (g *Guest) Mute(ctx context.Context, muted bool) error {
	return g.toggle(ctx, "muted", selMute, muted, func(v View) bool { return v.AudioMuted })
}

// CameraOff turns the guest's camera off (or on again) with the page's
// Camera button, and waits until the page shows it.
func (g *Guest) CameraOff(ctx context.Context, off bool) error {
	return g.toggle(ctx, "camera off", selCamOff, off, func(v View) bool { return v.VideoMuted })
}

// Hangup clicks Hang up and waits until the call has ended.
func (g *Guest) Hangup(ctx context.Context) error {
	if err := g.do(ctx, "click", map[string]any{"selector": selHangup}, nil); err != nil {
		return err
	}
	_, err := g.WaitState(ctx, StateEnded)
	return err
}

// Stats reads the page's quality readout now.
func (g *Guest) Stats(ctx context.Context) (Quality, error) {
	var s *snapshot
	if err := g.do(ctx, "snapshot", nil, &s); err != nil {
		return Quality{}, err
	}
	if s == nil {
		return Quality{}, fmt.Errorf("guestclient: %s: the page has no body", g.name)
	}
	return s.view(time.Time{}).Quality, nil
}

// WaitStats waits until cond accepts the page's quality readout (which
// the page updates every 2 s) and returns it.
func (g *Guest) WaitStats(ctx context.Context, cond func(Quality) bool) (Quality, error) {
	v, err := g.WaitView(ctx, "the quality readout", func(v View) bool { return cond(v.Quality) })
	return v.Quality, err
}

// WaitRemoteVideo waits until the page's remote <video> shows frames, and
// returns their size.
func (g *Guest) WaitRemoteVideo(ctx context.Context) (width, height int, err error) {
	var res struct {
		Width  int `json:"width"`
		Height int `json:"height"`
	}
	if err := g.do(ctx, "waitVideo", map[string]any{"selector": selRemote}, &res); err != nil {
		return 0, 0, err
	}
	return res.Width, res.Height, nil
}

// Screenshot writes a PNG of the page (the viewport) to path.
func (g *Guest) Screenshot(ctx context.Context, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("guestclient: %w", err)
	}
	return g.do(ctx, "screenshot", map[string]any{"path": abs}, nil)
}

// Console returns the console lines kept (the last 20000 at most).
func (g *Guest) Console() []ConsoleLine {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]ConsoleLine(nil), g.console...)
}

// ConsoleErrors returns the console errors and page errors so far.
func (g *Guest) ConsoleErrors() []ConsoleLine {
	var out []ConsoleLine
	for _, l := range g.Console() {
		if l.Type == "error" || l.Type == "pageerror" || l.Type == "crash" {
			out = append(out, l)
		}
	}
	return out
}

// ConsoleTail is the last n console lines, for failure messages.
func (g *Guest) ConsoleTail(n int) string {
	lines := g.Console()
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
func (g *Guest) LogTail() string { return g.d.stderr.Tail() }

// Done is closed when the page or the browser is gone (Close, a crash).
func (g *Guest) Done() <-chan struct{} { return g.gone }

// PIDs lists the driver and every process of its browser alive now.
func (g *Guest) PIDs() []int {
	var out []int
	for _, p := range g.d.processes() {
		out = append(out, p.pid)
	}
	return out
}

// Close writes the artifacts (Options.ArtifactsDir), closes the page (it
// hangs up a call in progress, as a closed tab does) and the browser, and
// waits until the driver and every browser process have exited (killing
// them if they do not within 15 s). It is safe to call more than once.
func (g *Guest) Close() error {
	g.once.Do(func() {
		if g.d == nil {
			return
		}
		var errs []error
		if dir := g.opts.ArtifactsDir; dir != "" {
			errs = append(errs, g.writeArtifacts(dir))
		}
		if err := g.d.close(); err != nil {
			errs = append(errs, err)
		}
		g.markGone(errors.New("closed"))
		if err := errors.Join(errs...); err != nil {
			g.err = fmt.Errorf("guestclient: %s: %w", g.name, err)
		}
	})
	return g.err
}

// writeArtifacts writes the console and a last screenshot into dir.
func (g *Guest) writeArtifacts(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(dir, artifactName(g.opts.Name))
	var b strings.Builder
	for _, l := range g.Console() {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	err := os.WriteFile(base+"-console.txt", []byte(b.String()), 0o644)
	if g.goneError() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = errors.Join(err, g.Screenshot(ctx, base+"-last.png"))
	}
	return err
}

// artifactName makes a guest's name a file name.
func artifactName(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, name)
}
