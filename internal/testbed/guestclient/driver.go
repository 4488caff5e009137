package guestclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/voipbot/voipbot/internal/testbed/proc"
)

// The driver (js/driver.mjs) is a node process that runs one Chromium
// with one page and speaks JSON lines on its stdin and stdout: commands
// with an id and their replies, and events.

const (
	// closeTimeout bounds a graceful shutdown of the driver and browser
	// before they are killed.
	closeTimeout = 15 * time.Second
	// defaultWait bounds a driver command under a context without a
	// deadline.
	defaultWait = 60 * time.Second
)

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
	T float64 `json:"t"`

	// ready
	BrowserVersion string `json:"browserVersion"`
	// console
	Type string `json:"type"`
	Text string `json:"text"`
	// page
	snapshot
}

// browserTime converts the page's time stamps.
func browserTime(ms float64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(ms * 1000))
}

// driver is the running driver process and its protocol.
type driver struct {
	proc     *proc.Process
	stdin    io.WriteCloser
	stateDir string
	stderr   *tailWriter
	onEvent  func(*message)
	ready    chan *message
	done     chan struct{} // closed when the driver has exited and been reaped
	exit     error
	wmu      sync.Mutex

	mu      sync.Mutex
	seq     int64
	pending map[int64]chan reply
	closed  bool
}

// line dispatches a line from the driver (one at a time, in order).
func (d *driver) line(line string) {
	m := new(message)
	if err := json.Unmarshal([]byte(line), m); err != nil {
		fmt.Fprintf(d.stderr, "guestclient: bad line from the driver: %v: %.200s\n", err, line)
		return
	}
	switch m.Event {
	case "ready":
		select {
		case d.ready <- m:
		default:
		}
	case "":
		d.mu.Lock()
		ch := d.pending[m.ID]
		delete(d.pending, m.ID)
		d.mu.Unlock()
		if ch != nil {
			r := reply{result: m.Result}
			if !m.OK {
				r.err = errors.New(m.Error)
			}
			ch <- r
		}
	default:
		d.onEvent(m)
	}
}

// reaped waits until the driver has exited (and every line of it was
// dispatched), then fails what still waits on it.
func (d *driver) reaped() {
	<-d.proc.Exited()
	err := d.proc.ExitErr()
	d.mu.Lock()
	d.exit = err
	if d.exit == nil {
		d.exit = errors.New("the driver exited")
	}
	pending := d.pending
	d.pending = make(map[int64]chan reply)
	d.mu.Unlock()
	for _, ch := range pending {
		ch <- reply{err: fmt.Errorf("the driver exited: %w", d.exit)}
	}
	close(d.done)
}

// call sends a command and waits for its reply, decoded into result (if
// not nil).
func (d *driver) call(ctx context.Context, cmd string, args, result any) error {
	ch := make(chan reply, 1)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return fmt.Errorf("%s: the browser is closed", cmd)
	}
	d.seq++
	id := d.seq
	d.pending[id] = ch
	d.mu.Unlock()
	line, err := json.Marshal(map[string]any{"id": id, "cmd": cmd, "args": args})
	if err != nil {
		d.forget(id)
		return err
	}
	d.wmu.Lock()
	_, err = d.stdin.Write(append(line, '\n'))
	d.wmu.Unlock()
	if err != nil {
		d.forget(id)
		return fmt.Errorf("sending %s: %w", cmd, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("%s: %w", cmd, r.err)
		}
		if result != nil {
			if err := json.Unmarshal(r.result, result); err != nil {
				return fmt.Errorf("%s: decoding the result: %w", cmd, err)
			}
		}
		return nil
	case <-ctx.Done():
		d.forget(id)
		return fmt.Errorf("%s: %w", cmd, ctx.Err())
	}
}

func (d *driver) forget(id int64) {
	d.mu.Lock()
	delete(d.pending, id)
	d.mu.Unlock()
}

// waitMillis is how long a driver command that waits in the page may take:
// until ctx's deadline, else defaultWait.
func waitMillis(ctx context.Context) int64 {
	w := defaultWait
	if deadline, ok := ctx.Deadline(); ok {
		w = time.Until(deadline)
	}
	return max(1, w.Milliseconds())
}

// close stops the driver (closing its stdin asks it to close the page and
// the browser and exit; its group is killed after closeTimeout) and waits
// until every browser process is gone, then removes the state directory.
func (d *driver) close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		<-d.done
		return nil
	}
	d.closed = true
	d.mu.Unlock()

	// Every process of the browser now: they must all be gone at the end.
	procs := d.processes()
	var err error
	if stopErr := d.proc.Stop(); errors.Is(stopErr, proc.ErrKilled) {
		err = fmt.Errorf("the driver did not exit within %s; killed", closeTimeout)
	}
	<-d.done
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
				err = fmt.Errorf("%d browser processes outlived the driver; killed", len(alive))
			}
			for _, p := range alive {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
			break
		}
		time.Sleep(delay)
	}
	if rmErr := os.RemoveAll(d.stateDir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
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

// processes lists the driver and every process of its browser alive now:
// those below the driver, and those whose command line names the state
// directory (Chromium's crash handlers, forked away from its tree).
func (d *driver) processes() []process {
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
		if cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(cmdline), d.stateDir) && st.Alive() {
			out = append(out, process{pid, st.StartTime})
			seen[pid] = true
		}
	}
	queue := []int{d.proc.PID()}
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
