// Package jsclient drives matrix-js-sdk (the reference Matrix VoIP client)
// in Debian's Chromium for end-to-end tests: each Client is one js-sdk
// MatrixClient on its own page (its own browser context, fake camera and
// microphone), which can place, answer, reject and hang up 1:1 calls and
// report their states and WebRTC statistics.
//
// Real audio: ToneWAV writes a tone that a browser plays as its clients'
// microphone (Options.FakeAudioCapture), and Call.WaitRemoteTone checks the
// dominant frequency of what a call receives (a WebAudio analyser on the
// remote audio track): that each party hears the other's tone. TonesWAV
// and Call.WaitRemoteTones do the same for a mix of several tones at once
// (several people mixed into one stream), judged in Go from the analyser's
// spectrum (Spectrum.FindTones).
//
// The JavaScript side lives in js/ beside this package: a bundle of
// matrix-js-sdk and src/harness.js built with esbuild, and driver.mjs, a
// node process that launches Chromium with playwright-core and speaks JSON
// lines on its stdin and stdout (run through internal/testbed/proc). Launch installs the pinned npm packages (npm ci) and builds the
// bundle when they are missing or stale, as the test bed builds Dendrite.
//
// Needs node 20 or later with npm (playwright-core 1.64 refuses older node;
// Debian bookworm's nodejs is 18) and Chromium (Debian: chromium).
package jsclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/voipbot/voipbot/internal/testbed/nodejs"
	"github.com/voipbot/voipbot/internal/testbed/proc"
)

const (
	// closeTimeout bounds a graceful shutdown of the driver and browser
	// before they are killed.
	closeTimeout = 15 * time.Second
	// clientCloseTimeout bounds closing one client's page.
	clientCloseTimeout = 15 * time.Second
)

// Options configure Launch. The zero value works from within this
// repository.
type Options struct {
	// Dir is the JavaScript project (package.json, driver.mjs); default
	// js/ beside this package's source.
	Dir string
	// Chromium is the browser binary; default $JSCLIENT_CHROMIUM, else
	// Debian's /usr/bin/chromium.
	Chromium string
	// ChromiumArgs are extra command line switches for Chromium (none may
	// contain a space).
	ChromiumArgs []string
	// FakeAudioCapture is a WAV file (see ToneWAV) that Chromium plays,
	// looped, as the microphone of every client of this browser instead of
	// its beep (--use-file-for-fake-audio-capture; the path must be absolute
	// and hold no space). The clients then capture audio without echo
	// cancellation, noise suppression and gain control (ClientOptions.RawAudio),
	// so that the tone reaches their peers as it is. A tone per party needs a
	// browser per party.
	FakeAudioCapture string
	// Log receives the driver's stderr: browser console errors, page
	// errors, and npm's output when it installs. Default os.Stderr.
	Log io.Writer
	// Verbose forwards every browser console message (js-sdk's debug log)
	// to Log, not only errors. $JSCLIENT_VERBOSE=1 sets it too.
	Verbose bool
}

// Browser is a running driver with its Chromium. Its methods are safe for
// concurrent use.
type Browser struct {
	// Version is Chromium's version.
	Version string
	// URL is the harness page the clients load.
	URL string
	// FakeAudioCapture is Options.FakeAudioCapture.
	FakeAudioCapture string

	proc     *proc.Process
	stdin    io.WriteCloser
	stateDir string
	wmu      sync.Mutex
	seq      int64
	done     chan struct{} // closed when the driver has exited and been reaped
	exit     error
	stderr   *tailWriter
	ready    chan *message

	mu      sync.Mutex
	pending map[int64]chan reply
	clients map[string]*Client
	early   map[string][]*message // events for clients not registered yet
	closed  bool
}

type reply struct {
	result json.RawMessage
	err    error
}

// message is one line from the driver: a reply (ID set) or an event.
type message struct {
	ID     int64           `json:"id"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`

	Event string `json:"event"`
	// T is the browser's wall clock in milliseconds since the Unix epoch,
	// with sub-millisecond resolution.
	T      float64 `json:"t"`
	Client string  `json:"client"`
	callInfo
	Old     string `json:"old"`
	Code    string `json:"code"`
	Message string `json:"message"`
	OnHold  bool   `json:"onHold"`

	// ready
	BrowserVersion string `json:"browserVersion"`
	URL            string `json:"url"`
}

// callInfo is the harness's description of a call (callInfo in harness.js).
type callInfo struct {
	Call            string `json:"call"`
	Room            string `json:"room"`
	State           string `json:"state"`
	Direction       string `json:"direction"`
	Type            string `json:"type"`
	HangupReason    string `json:"hangupReason"`
	HangupParty     string `json:"hangupParty"`
	Opponent        string `json:"opponent"`
	RemoteOnHold    bool   `json:"remoteOnHold"`
	LocalOnHold     bool   `json:"localOnHold"`
	MicrophoneMuted bool   `json:"microphoneMuted"`
	// The other party's user-media feed, as its stream metadata says.
	RemoteAudioMuted bool `json:"remoteAudioMuted"`
	RemoteVideoMuted bool `json:"remoteVideoMuted"`
}

// browserTime converts the harness's time stamps.
func browserTime(ms float64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(ms * 1000))
}

// repoDir is js/ beside this package, found from this source file's location.
func repoDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "js")
}

// Launch prepares the JavaScript project (npm ci and the bundle, when
// missing or stale), starts the driver and its Chromium, and waits until it
// is ready. ctx bounds the start only; Close ends the browser.
func Launch(ctx context.Context, opts Options) (*Browser, error) {
	if opts.Dir == "" {
		opts.Dir = repoDir()
	}
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	if os.Getenv("JSCLIENT_VERBOSE") == "1" {
		opts.Verbose = true
	}
	if opts.FakeAudioCapture != "" {
		if !filepath.IsAbs(opts.FakeAudioCapture) || strings.ContainsAny(opts.FakeAudioCapture, " \t\n") {
			return nil, fmt.Errorf("jsclient: the fake audio capture file %q must be an absolute path without spaces", opts.FakeAudioCapture)
		}
		if _, err := os.Stat(opts.FakeAudioCapture); err != nil {
			return nil, fmt.Errorf("jsclient: the fake audio capture file: %w", err)
		}
		opts.ChromiumArgs = append(opts.ChromiumArgs, "--use-file-for-fake-audio-capture="+opts.FakeAudioCapture)
	}
	for _, arg := range opts.ChromiumArgs {
		if strings.ContainsAny(arg, " \t\n") {
			return nil, fmt.Errorf("jsclient: the Chromium switch %q holds white space", arg)
		}
	}
	chromium, err := findChromium(opts.Chromium)
	if err != nil {
		return nil, err
	}
	node, err := nodejs.Find(ctx)
	if err != nil {
		return nil, fmt.Errorf("jsclient: %w", err)
	}
	if err = Prepare(ctx, opts.Dir, opts.Log); err != nil {
		return nil, err
	}

	b := &Browser{
		done:    make(chan struct{}),
		pending: make(map[int64]chan reply),
		clients: make(map[string]*Client),
		early:   make(map[string][]*message),
		stderr:  &tailWriter{w: opts.Log},
		ready:   make(chan *message, 1),

		FakeAudioCapture: opts.FakeAudioCapture,
	}
	// Everything the browser writes (profile, crash database, shared memory
	// files) goes to a directory of its own, removed on Close. Its path in
	// their command lines also finds the crash handler processes, which
	// Chromium forks away from its own tree.
	if b.stateDir, err = os.MkdirTemp("", "jsclient-"); err != nil {
		return nil, fmt.Errorf("jsclient: %w", err)
	}
	cmd := exec.Command(node, "driver.mjs")
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(),
		"JSCLIENT_CHROMIUM="+chromium, "JSCLIENT_CHROMIUM_ARGS="+strings.Join(opts.ChromiumArgs, " "),
		"TMPDIR="+b.stateDir, "XDG_CONFIG_HOME="+filepath.Join(b.stateDir, "config"), "XDG_CACHE_HOME="+filepath.Join(b.stateDir, "cache"))
	if opts.Verbose {
		cmd.Env = append(cmd.Env, "JSCLIENT_VERBOSE=1")
	}
	cmd.Stderr = b.stderr
	if b.stdin, err = cmd.StdinPipe(); err != nil {
		_ = os.RemoveAll(b.stateDir)
		return nil, err
	}
	// The driver's standard output is its protocol, a JSON line at a time.
	// It runs in a process group of its own: a test's Ctrl-C reaches the
	// test, which closes the browser; and the driver's group can be killed
	// as a whole. Closing its standard input asks it to close the browser
	// and exit.
	b.proc, err = proc.Start(cmd, proc.Options{
		Name: "the jsclient driver", OnLine: b.line, KeepLines: 1, Group: true, Grace: closeTimeout,
		Quit: func() error {
			b.wmu.Lock()
			defer b.wmu.Unlock()
			return b.stdin.Close()
		},
	})
	if err != nil {
		_ = os.RemoveAll(b.stateDir)
		return nil, fmt.Errorf("jsclient: %w", err)
	}
	go b.reaped()
	select {
	case m := <-b.ready:
		b.Version, b.URL = m.BrowserVersion, m.URL
		return b, nil
	case <-b.done:
		_ = b.Close()
		return nil, fmt.Errorf("jsclient: the driver exited during start (%w):\n%s", b.exit, b.stderr.Tail())
	case <-ctx.Done():
		_ = b.Close()
		return nil, fmt.Errorf("jsclient: waiting for the browser: %w", ctx.Err())
	}
}

// findChromium returns the browser binary to launch.
func findChromium(path string) (string, error) {
	if path == "" {
		path = os.Getenv("JSCLIENT_CHROMIUM")
	}
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(path); err != nil {
		return "", fmt.Errorf("jsclient: chromium not found at %s (Debian: apt-get install chromium; or set JSCLIENT_CHROMIUM): %w", path, err)
	}
	return path, nil
}

// line dispatches a line from the driver.
func (b *Browser) line(line string) {
	m := new(message)
	if err := json.Unmarshal([]byte(line), m); err != nil {
		fmt.Fprintf(b.stderr, "jsclient: bad line from the driver: %v: %.200s\n", err, line)
		return
	}
	switch {
	case m.Event == "ready":
		select {
		case b.ready <- m:
		default:
		}
	case m.Event != "":
		b.dispatch(m)
	default:
		b.mu.Lock()
		ch := b.pending[m.ID]
		delete(b.pending, m.ID)
		b.mu.Unlock()
		if ch != nil {
			r := reply{result: m.Result}
			if !m.OK {
				r.err = errors.New(m.Error)
			}
			ch <- r
		}
	}
}

// reaped waits until the driver has exited (and every line of it was
// dispatched), then fails what still waits on it.
func (b *Browser) reaped() {
	<-b.proc.Exited()
	err := b.proc.ExitErr()
	b.mu.Lock()
	b.exit = err
	if b.exit == nil {
		b.exit = errors.New("the driver exited")
	}
	pending := b.pending
	b.pending = make(map[int64]chan reply)
	clients := make([]*Client, 0, len(b.clients))
	for _, c := range b.clients {
		clients = append(clients, c)
	}
	b.mu.Unlock()
	for _, ch := range pending {
		ch <- reply{err: fmt.Errorf("jsclient: the driver exited: %w", b.exit)}
	}
	for _, c := range clients {
		c.markClosed(errors.New("the browser is gone"))
	}
	close(b.done)
}

// dispatch routes an event to its client.
func (b *Browser) dispatch(m *message) {
	if m.Client == "" {
		if m.Event == "browser.disconnected" {
			fmt.Fprintln(b.stderr, "jsclient: the browser disconnected")
		}
		return
	}
	b.mu.Lock()
	c := b.clients[m.Client]
	if c == nil {
		if !b.closed && len(b.early[m.Client]) < 1000 {
			b.early[m.Client] = append(b.early[m.Client], m)
		}
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	c.handle(m)
}

// call sends a command and waits for its reply, decoded into result (if
// not nil).
func (b *Browser) call(ctx context.Context, cmd string, args, result any) error {
	ch := make(chan reply, 1)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("jsclient: the browser is closed")
	}
	b.seq++
	id := b.seq
	b.pending[id] = ch
	b.mu.Unlock()
	line, err := json.Marshal(map[string]any{"id": id, "cmd": cmd, "args": args})
	if err != nil {
		return err
	}
	b.wmu.Lock()
	_, err = b.stdin.Write(append(line, '\n'))
	b.wmu.Unlock()
	if err != nil {
		b.forget(id)
		return fmt.Errorf("jsclient: sending %s: %w", cmd, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("jsclient: %s: %w", cmd, r.err)
		}
		if result != nil {
			if err := json.Unmarshal(r.result, result); err != nil {
				return fmt.Errorf("jsclient: %s: decoding the result: %w", cmd, err)
			}
		}
		return nil
	case <-ctx.Done():
		b.forget(id)
		return fmt.Errorf("jsclient: %s: %w", cmd, ctx.Err())
	}
}

func (b *Browser) forget(id int64) {
	b.mu.Lock()
	delete(b.pending, id)
	b.mu.Unlock()
}

// Close closes every client and the browser and waits until the driver and
// every browser process have exited (killing them if they do not within
// 15 s). It is safe to call more than once.
func (b *Browser) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.done
		return nil
	}
	b.closed = true
	b.mu.Unlock()

	// Every process of the browser now: they must all be gone at the end.
	procs := b.Processes()
	// Closing stdin asks the driver to close the browser and exit; after
	// 15 s its group is killed.
	var err error
	if stopErr := b.proc.Stop(); errors.Is(stopErr, proc.ErrKilled) {
		err = fmt.Errorf("jsclient: the driver did not exit within %s; killed", closeTimeout)
	}
	<-b.done
	// The browser's helpers (zygotes and what they forked) can outlive its
	// main process for a moment, and Playwright starts the browser in a
	// process group of its own, out of reach of the driver's. Wait for them
	// (they are nobody's children here: poll), then kill what is left.
	deadline := time.Now().Add(5 * time.Second)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		var alive []Process
		for _, p := range procs {
			if p.Alive() {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("jsclient: %d browser processes outlived the driver; killed", len(alive))
			}
			for _, p := range alive {
				_ = syscall.Kill(p.Pid, syscall.SIGKILL)
			}
			break
		}
		time.Sleep(delay)
	}
	if rmErr := os.RemoveAll(b.stateDir); rmErr != nil && err == nil {
		err = fmt.Errorf("jsclient: %w", rmErr)
	}
	return err
}

// Done is closed when the driver has exited.
func (b *Browser) Done() <-chan struct{} { return b.done }

// Processes lists the driver and every process of its browser (zygotes,
// renderers, GPU, utility and crash handler processes) alive now.
func (b *Browser) Processes() []Process {
	procs := descendants(b.proc.PID())
	seen := make(map[int]bool, len(procs))
	for _, p := range procs {
		seen[p.Pid] = true
	}
	for _, p := range mentioning(b.stateDir) {
		if !seen[p.Pid] {
			procs = append(procs, p)
		}
	}
	return procs
}

// LogTail is the end of the driver's stderr, for failure messages.
func (b *Browser) LogTail() string { return b.stderr.Tail() }

// StateDir is the folder the driver and the browser run in (their TMPDIR
// and XDG folders): every process of this browser has it in its
// environment, even one that left the driver's process tree.
func (b *Browser) StateDir() string { return b.stateDir }

// Process identifies a process across pid reuse.
type Process struct {
	Pid       int
	StartTime uint64 // clock ticks after boot (/proc/<pid>/stat field 22)
}

// Alive reports whether the process still runs (a zombie does not).
func (p Process) Alive() bool {
	st, err := proc.ReadStat(p.Pid)
	return err == nil && st.StartTime == p.StartTime && st.Alive()
}

// ProcessOf identifies a running process.
func ProcessOf(pid int) (Process, bool) {
	st, err := proc.ReadStat(pid)
	return Process{Pid: pid, StartTime: st.StartTime}, err == nil
}

// descendants lists root and the processes below it, alive now.
func descendants(root int) []Process {
	entries, _ := os.ReadDir("/proc")
	children := make(map[int][]int)
	stats := make(map[int]proc.Stat)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := proc.ReadStat(pid); err == nil {
			stats[pid] = st
			children[st.PPID] = append(children[st.PPID], pid)
		}
	}
	var out []Process
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		st, ok := stats[pid]
		if !ok {
			continue
		}
		if st.Alive() {
			out = append(out, Process{Pid: pid, StartTime: st.StartTime})
		}
		queue = append(queue, children[pid]...)
	}
	return out
}

// mentioning lists the live processes whose command line contains s.
func mentioning(s string) []Process {
	entries, _ := os.ReadDir("/proc")
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), s) {
			continue
		}
		if p, ok := ProcessOf(pid); ok && p.Alive() {
			out = append(out, p)
		}
	}
	return out
}

// tailWriter passes writes on and keeps the last 16 KiB.
type tailWriter struct {
	w   io.Writer
	mu  sync.Mutex
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 16<<10 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-16<<10:]...)
	}
	t.mu.Unlock()
	if t.w != nil {
		_, _ = t.w.Write(p)
	}
	return len(p), nil
}

// Tail returns the kept output.
func (t *tailWriter) Tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
