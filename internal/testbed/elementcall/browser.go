// Package elementcall drives Element Call (EC) 0.26.1, the reference
// MatrixRTC client, in Debian's Chromium for end-to-end tests: each Browser
// is one Chromium with one EC page, logged in as one Matrix user, which
// joins a room's call (LiveKit SFU, memberships as
// org.matrix.msc3401.call.member state events) and reports what it hears,
// what it shows and its WebRTC statistics.
//
// The pieces:
//   - Prepare installs the pinned npm packages in js/ (EC's package
//     @element-hq/element-call-embedded, whose dist/ is the full standalone
//     application, and playwright-core); Launch calls it.
//   - StartServer serves EC's dist/ on loopback with a generated
//     config.json naming the homeserver and the LiveKit JWT service.
//   - Launch starts js/driver.mjs (node, playwright-core), which runs
//     Chromium with fake media devices: ToneWAV's file as the microphone
//     (Options.WAV), so that each browser sends a tone of its own.
//   - Join presets EC's session in localStorage (EC then restores a logged-in
//     client instead of its login page), opens /room/#?roomId=…, clicks
//     "Join call" and waits until EC is connected to the SFU.
//   - RemoteTone and WaitRemoteTone read the dominant frequency of the
//     remote audio EC plays (its <audio> elements, per LiveKit participant
//     identity with RemoteTones and WaitParticipantTone); Participants
//     reads EC's tiles; Stats the peer connections' getStats(); WaitLog
//     waits for a line of EC's console (all of it is written to
//     ConsoleLog).
//
// EC picks its media encryption when it joins: a password in the URL means
// a shared key; else a room with m.room.encryption means per-participant
// keys (sent over Olm to-device messages); else none.
//
// Needs node 20 or later with npm (playwright-core 1.64 refuses older node)
// and Chromium (Debian: chromium). Other peers of a call: a homeserver whose
// federation userinfo endpoint answers (the JWT service checks OpenID tokens
// with it), livekit-server and a JWT service answering /sfu/get.
package elementcall

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
	// defaultWait bounds driver commands under a context without deadline.
	defaultWait = 60 * time.Second
	// maxLogLines bounds the console lines kept in memory for WaitLog (the
	// file keeps them all).
	maxLogLines = 200_000
)

// Options configure Launch. The zero value works from within this
// repository, but a browser that joins calls needs AppURL.
type Options struct {
	// Name names this browser's files and log lines (e.g. the user's
	// name); default "ec".
	Name string
	// AppURL is Element Call's base URL (Server.URL).
	AppURL string
	// WAV is a WAV file (jsclient.ToneWAV) Chromium plays, looped, as the
	// microphone (--use-file-for-fake-audio-capture; an absolute path
	// without spaces). Default: Chromium's fake beep.
	WAV string
	// Video joins with the camera on (Chromium's fake camera); default
	// audio only.
	Video bool
	// ProcessedAudio keeps EC's echo cancellation, noise suppression and
	// gain control on. By default they are off, so that the tone reaches
	// the other side as it is (noise suppression takes a steady tone for
	// noise).
	ProcessedAudio bool
	// LocalStorage holds more localStorage entries to preset, e.g. EC
	// settings ("matrix-setting-<name>": JSON value).
	LocalStorage map[string]string
	// ArtifactsDir receives the console log (<Name>-console.log) and
	// screenshots of failed joins. Default: the browser's state directory,
	// removed by Close.
	ArtifactsDir string
	// Dir is the JavaScript project; default JSDir().
	Dir string
	// Chromium is the browser binary; default $ELEMENTCALL_CHROMIUM, else
	// $JSCLIENT_CHROMIUM, else Debian's /usr/bin/chromium.
	Chromium string
	// ChromiumArgs are extra command line switches (none may contain
	// white space).
	ChromiumArgs []string
	// Log receives the driver's own stderr and npm's output (default
	// os.Stderr), and with Verbose every console line too.
	Log io.Writer
	// Verbose copies every console line to Log; $ELEMENTCALL_VERBOSE=1
	// sets it too.
	Verbose bool
}

// LogLine is one message of the page's console (or a page error: Type
// "pageerror").
type LogLine struct {
	At   time.Time
	Type string // log, debug, info, warning, error, pageerror, crash
	Text string
}

func (l LogLine) String() string {
	return fmt.Sprintf("%s [%s] %s", l.At.Format("15:04:05.000"), l.Type, l.Text)
}

// Browser is a running driver with its Chromium and one EC page. Its
// methods are safe for concurrent use.
type Browser struct {
	// Version is Chromium's version.
	Version string
	// Name is Options.Name.
	Name string
	// ConsoleLog is the file that receives every console line of the page.
	ConsoleLog string

	opts     Options
	proc     *proc.Process
	stdin    io.WriteCloser
	stateDir string
	stderr   *tailWriter
	ready    chan *message
	done     chan struct{} // closed when the driver has exited and been reaped
	exit     error
	wmu      sync.Mutex
	seq      int64

	mu      sync.Mutex
	pending map[int64]chan reply
	closed  bool
	session *Session // the user of the page, from the first Join

	logMu      sync.Mutex
	logFile    *bufio.Writer
	logF       *os.File
	logs       []LogLine     // the last lines (up to maxLogLines)
	logTotal   int           // lines since Launch
	logChanged chan struct{} // closed and replaced on every new line
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

	Event string  `json:"event"`
	T     float64 `json:"t"`
	Type  string  `json:"type"`
	Text  string  `json:"text"`

	BrowserVersion string `json:"browserVersion"`
}

// browserTime converts the page's time stamps (ms since the epoch).
func browserTime(ms float64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(ms * 1000))
}

// Launch prepares the JavaScript project (npm ci, when missing or stale),
// starts the driver and its Chromium, and waits until it is ready. ctx
// bounds the start only; Close ends the browser.
func Launch(ctx context.Context, opts Options) (*Browser, error) {
	if opts.Dir == "" {
		opts.Dir = JSDir()
	}
	if opts.Name == "" {
		opts.Name = "ec"
	}
	if opts.Log == nil {
		opts.Log = os.Stderr
	}
	if os.Getenv("ELEMENTCALL_VERBOSE") == "1" {
		opts.Verbose = true
	}
	args := append([]string(nil), opts.ChromiumArgs...)
	if opts.WAV != "" {
		if !filepath.IsAbs(opts.WAV) || strings.ContainsAny(opts.WAV, " \t\n") {
			return nil, fmt.Errorf("elementcall: the microphone file %q must be an absolute path without spaces", opts.WAV)
		}
		if _, err := os.Stat(opts.WAV); err != nil {
			return nil, fmt.Errorf("elementcall: the microphone file: %w", err)
		}
		args = append(args, "--use-file-for-fake-audio-capture="+opts.WAV)
	}
	for _, arg := range args {
		if strings.ContainsAny(arg, " \t\n") {
			return nil, fmt.Errorf("elementcall: the Chromium switch %q holds white space", arg)
		}
	}
	chromium, err := findChromium(opts.Chromium)
	if err != nil {
		return nil, err
	}
	node, err := nodejs.Find(ctx)
	if err != nil {
		return nil, fmt.Errorf("elementcall: %w", err)
	}
	if err = Prepare(ctx, opts.Dir, opts.Log); err != nil {
		return nil, err
	}

	b := &Browser{
		Name:       opts.Name,
		opts:       opts,
		done:       make(chan struct{}),
		pending:    make(map[int64]chan reply),
		stderr:     &tailWriter{w: opts.Log},
		ready:      make(chan *message, 1),
		logChanged: make(chan struct{}),
	}
	// Everything the browser writes (profile, crash database, shared memory
	// files) goes to a directory of its own, removed on Close. Its path in
	// their command lines also finds the crash handler processes, which
	// Chromium forks away from its own tree.
	if b.stateDir, err = os.MkdirTemp("", "elementcall-"); err != nil {
		return nil, fmt.Errorf("elementcall: %w", err)
	}
	artifacts := opts.ArtifactsDir
	if artifacts == "" {
		artifacts = b.stateDir
	} else if err = os.MkdirAll(artifacts, 0o755); err != nil {
		_ = os.RemoveAll(b.stateDir)
		return nil, fmt.Errorf("elementcall: %w", err)
	}
	b.opts.ArtifactsDir = artifacts
	b.ConsoleLog = filepath.Join(artifacts, opts.Name+"-console.log")
	if b.logF, err = os.Create(b.ConsoleLog); err != nil {
		_ = os.RemoveAll(b.stateDir)
		return nil, fmt.Errorf("elementcall: %w", err)
	}
	b.logFile = bufio.NewWriter(b.logF)

	cmd := exec.Command(node, "driver.mjs")
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(),
		"ELEMENTCALL_CHROMIUM="+chromium, "ELEMENTCALL_CHROMIUM_ARGS="+strings.Join(args, " "),
		"TMPDIR="+b.stateDir, "XDG_CONFIG_HOME="+filepath.Join(b.stateDir, "config"), "XDG_CACHE_HOME="+filepath.Join(b.stateDir, "cache"))
	cmd.Stderr = b.stderr
	if b.stdin, err = cmd.StdinPipe(); err != nil {
		b.closeLog()
		_ = os.RemoveAll(b.stateDir)
		return nil, err
	}
	// The driver's standard output is its protocol, a JSON line at a time.
	// It runs in a process group of its own, which can be killed as a
	// whole; closing its standard input asks it to close the browser and
	// exit.
	b.proc, err = proc.Start(cmd, proc.Options{
		Name: "the Element Call driver (" + opts.Name + ")", OnLine: b.line, KeepLines: 1, Group: true, Grace: closeTimeout,
		Quit: func() error {
			b.wmu.Lock()
			defer b.wmu.Unlock()
			return b.stdin.Close()
		},
	})
	if err != nil {
		b.closeLog()
		_ = os.RemoveAll(b.stateDir)
		return nil, fmt.Errorf("elementcall: %w", err)
	}
	go b.reaped()
	select {
	case m := <-b.ready:
		b.Version = m.BrowserVersion
		return b, nil
	case <-b.done:
		_ = b.Close()
		return nil, fmt.Errorf("elementcall: the driver exited during start (%w):\n%s", b.exit, b.stderr.Tail())
	case <-ctx.Done():
		_ = b.Close()
		return nil, fmt.Errorf("elementcall: waiting for the browser: %w", ctx.Err())
	}
}

// findChromium returns the browser binary to launch.
func findChromium(path string) (string, error) {
	for _, p := range []string{path, os.Getenv("ELEMENTCALL_CHROMIUM"), os.Getenv("JSCLIENT_CHROMIUM"), "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("elementcall: chromium not found at %s (Debian: apt-get install chromium; or set ELEMENTCALL_CHROMIUM): %w", p, err)
		}
		return p, nil
	}
	return "", errors.New("elementcall: no chromium")
}

// line dispatches a line from the driver.
func (b *Browser) line(line string) {
	m := new(message)
	if err := json.Unmarshal([]byte(line), m); err != nil {
		fmt.Fprintf(b.stderr, "elementcall: bad line from the driver: %v: %.200s\n", err, line)
		return
	}
	switch m.Event {
	case "ready":
		select {
		case b.ready <- m:
		default:
		}
	case "console":
		b.addLog(LogLine{At: browserTime(m.T), Type: m.Type, Text: m.Text})
	case "browser.disconnected":
		b.addLog(LogLine{At: browserTime(m.T), Type: "crash", Text: "the browser disconnected"})
	case "":
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

// addLog records a console line: in the file, in memory for WaitLog, and
// in Log when verbose.
func (b *Browser) addLog(l LogLine) {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	if b.logFile != nil {
		fmt.Fprintln(b.logFile, l)
		// Flushed per line: the file is for reading while a test hangs,
		// and after a crash.
		_ = b.logFile.Flush()
	}
	if len(b.logs) == maxLogLines {
		n := copy(b.logs, b.logs[maxLogLines/2:])
		b.logs = b.logs[:n]
	}
	b.logs = append(b.logs, l)
	b.logTotal++
	close(b.logChanged)
	b.logChanged = make(chan struct{})
	if b.opts.Verbose {
		fmt.Fprintf(b.stderr, "[%s] %s\n", b.Name, l)
	}
}

func (b *Browser) closeLog() {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	if b.logFile != nil {
		_ = b.logFile.Flush()
		_ = b.logF.Close()
		b.logFile, b.logF = nil, nil
	}
}

// Logs returns the console lines kept so far (the oldest are dropped
// beyond 200 000; ConsoleLog has them all).
func (b *Browser) Logs() []LogLine {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return append([]LogLine(nil), b.logs...)
}

// WaitLog waits until a console line of the page (since Launch) contains
// substr, and returns the first such line.
func (b *Browser) WaitLog(ctx context.Context, substr string) (LogLine, error) {
	next := 0 // the index (over every line since Launch) to look at next
	for {
		b.logMu.Lock()
		first := b.logTotal - len(b.logs)
		lines := append([]LogLine(nil), b.logs[max(next, first)-first:]...)
		next = b.logTotal
		changed := b.logChanged
		b.logMu.Unlock()
		for _, l := range lines {
			if strings.Contains(l.Text, substr) {
				return l, nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return LogLine{}, fmt.Errorf("elementcall: %s: no console line with %q (console log %s): %w", b.Name, substr, b.ConsoleLog, ctx.Err())
		case <-b.done:
			return LogLine{}, fmt.Errorf("elementcall: %s: waiting for %q: the browser is gone: %w", b.Name, substr, b.exit)
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
	b.mu.Unlock()
	for _, ch := range pending {
		ch <- reply{err: fmt.Errorf("the driver exited: %w", b.exit)}
	}
	close(b.done)
}

// call sends a command and waits for its reply, decoded into result (if
// not nil).
func (b *Browser) call(ctx context.Context, cmd string, args, result any) error {
	ch := make(chan reply, 1)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("elementcall: %s: the browser is closed", b.Name)
	}
	b.seq++
	id := b.seq
	b.pending[id] = ch
	b.mu.Unlock()
	line, err := json.Marshal(map[string]any{"id": id, "cmd": cmd, "args": args})
	if err != nil {
		b.forget(id)
		return err
	}
	b.wmu.Lock()
	_, err = b.stdin.Write(append(line, '\n'))
	b.wmu.Unlock()
	if err != nil {
		b.forget(id)
		return fmt.Errorf("elementcall: %s: sending %s: %w", b.Name, cmd, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("elementcall: %s: %s: %w", b.Name, cmd, r.err)
		}
		if result != nil {
			if err := json.Unmarshal(r.result, result); err != nil {
				return fmt.Errorf("elementcall: %s: %s: decoding the result: %w", b.Name, cmd, err)
			}
		}
		return nil
	case <-ctx.Done():
		b.forget(id)
		return fmt.Errorf("elementcall: %s: %s: %w", b.Name, cmd, ctx.Err())
	}
}

func (b *Browser) forget(id int64) {
	b.mu.Lock()
	delete(b.pending, id)
	b.mu.Unlock()
}

// waitMillis is how long a driver command that waits in the page may take:
// until ctx's deadline (a little before, so that the page's timeout error,
// which says what it waited for, arrives first), else defaultWait.
func waitMillis(ctx context.Context) int64 {
	d := defaultWait
	if deadline, ok := ctx.Deadline(); ok {
		d = time.Until(deadline) - 500*time.Millisecond
	}
	return max(1, d.Milliseconds())
}

// Close closes the page and the browser and waits until the driver and
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

	procs := b.processes()
	var err error
	if stopErr := b.proc.Stop(); errors.Is(stopErr, proc.ErrKilled) {
		err = fmt.Errorf("elementcall: %s: the driver did not exit within %s; killed", b.Name, closeTimeout)
	}
	<-b.done
	// The browser's helpers (zygotes and what they forked) can outlive its
	// main process for a moment, and Playwright starts the browser in a
	// process group of its own, out of reach of the driver's. They are
	// nobody's children here: poll, then kill what is left.
	deadline := time.Now().Add(5 * time.Second)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		var alive []process
		for _, p := range procs {
			if p.alive() {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("elementcall: %s: %d browser processes outlived the driver; killed", b.Name, len(alive))
			}
			for _, p := range alive {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
			break
		}
		time.Sleep(delay)
	}
	b.closeLog()
	if rmErr := os.RemoveAll(b.stateDir); rmErr != nil && err == nil {
		err = fmt.Errorf("elementcall: %w", rmErr)
	}
	return err
}

// Done is closed when the driver has exited.
func (b *Browser) Done() <-chan struct{} { return b.done }

// LogTail is the end of the driver's stderr, for failure messages.
func (b *Browser) LogTail() string { return b.stderr.Tail() }

// ConsoleTail is the last n console lines, for failure messages.
func (b *Browser) ConsoleTail(n int) string {
	lines := b.Logs()
	lines = lines[max(0, len(lines)-n):]
	var sb strings.Builder
	for _, l := range lines {
		text := l.Text
		if len(text) > 2000 {
			text = text[:2000] + "…"
		}
		fmt.Fprintf(&sb, "%s [%s] %s\n", l.At.Format("15:04:05.000"), l.Type, text)
	}
	return sb.String()
}

// process identifies a process across pid reuse.
type process struct {
	pid       int
	startTime uint64
}

func (p process) alive() bool {
	st, err := proc.ReadStat(p.pid)
	return err == nil && st.StartTime == p.startTime && st.Alive()
}

// processes lists the driver and every process of its browser: those below
// the driver, and those whose command line names the state directory
// (Chromium's crash handlers, forked away from its tree).
func (b *Browser) processes() []process {
	entries, _ := os.ReadDir("/proc")
	children := make(map[int][]int)
	stats := make(map[int]proc.Stat)
	var out []process
	seen := make(map[int]bool)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := proc.ReadStat(pid)
		if err != nil {
			continue
		}
		stats[pid] = st
		children[st.PPID] = append(children[st.PPID], pid)
		if cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(cmdline), b.stateDir) && st.Alive() {
			out = append(out, process{pid, st.StartTime})
			seen[pid] = true
		}
	}
	queue := []int{b.proc.PID()}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		st, ok := stats[pid]
		if !ok {
			continue
		}
		if st.Alive() && !seen[pid] {
			out = append(out, process{pid, st.StartTime})
			seen[pid] = true
		}
		queue = append(queue, children[pid]...)
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
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 16<<10 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-16<<10:]...)
	}
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
