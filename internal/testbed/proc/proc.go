// Package proc runs the processes of the test bed's real peers (Dendrite,
// voipbot, jamid and its dbus-daemon, dhtnode and python3-opendht scripts,
// Janus, the js-sdk driver with its Chromium): one way to start a process
// with its output captured, wait until it is ready, and stop it.
//
//   - Start runs a command with its standard output and error (those the
//     command does not set itself) captured: into a log file, a writer of the
//     caller's, a per-line callback, and memory (Tail, Lines, WaitLine).
//   - The process dies with the test process, even on SIGKILL or a test
//     timeout (PR_SET_PDEATHSIG, on Linux). The signal follows the OS thread that
//     started it; Go retires a thread only when a goroutine exits while locked
//     to it, which nothing here does. With Options.Group it runs in a process
//     group of its own, and kills reach the whole group.
//   - It is reaped at once, by a goroutine of its own: Exited is closed when
//     it has exited and every byte of its captured output was handled.
//   - Readiness: WaitLine (a line of its output), WaitTCP (a port accepts),
//     WaitHTTP (a URL answers 200), WaitUntil (any condition); each fails at
//     once if the process exits first.
//   - Stop asks it to quit (SIGTERM, or Options.Quit), waits Options.Grace,
//     then kills it with SIGKILL, and returns once it has been reaped.
//   - With Options.Test, the process is stopped when the test ends (and its
//     output logged if the test failed), if nobody stopped it before.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// DefaultGrace is how long Stop waits, after asking the process to
	// quit, before it kills it.
	DefaultGrace = 10 * time.Second
	// DefaultKeepLines is how many of the last lines of output are kept for
	// Lines and WaitLine.
	DefaultKeepLines = 1000
	// tailBytes is how much output Tail keeps.
	tailBytes = 16 << 10
	// maxKeptLine caps each kept line (OnLine still gets it whole).
	maxKeptLine = 4 << 10
	// waitDelay bounds the wait for the output pipes once the process has
	// exited (a child that inherited them can keep them open).
	waitDelay = 5 * time.Second
)

// ErrKilled is wrapped by Stop's error when the process did not exit within
// the grace period and was killed.
var ErrKilled = errors.New("killed after the grace period")

// TB is the part of testing.TB that Options.Test needs.
type TB interface {
	Cleanup(func())
	Failed() bool
	Logf(format string, args ...any)
}

// Options configure Start. The zero value captures the output in memory
// only and stops with SIGTERM and a grace of DefaultGrace.
type Options struct {
	// Name names the process in errors; default the command's base name.
	Name string
	// LogPath, if set, is a file (created or truncated) that receives the
	// captured output.
	LogPath string
	// Log, if set, receives the captured output too. It is written from
	// another goroutine until the process has exited.
	Log io.Writer
	// OnLine, if set, is called with every line of the captured output
	// (without its line break; a last line without one when the process
	// exits), in order, from one goroutine at a time, before Exited closes.
	OnLine func(line string)
	// KeepLines is how many of the last lines (at least) Lines and WaitLine
	// see: 0 is DefaultKeepLines, negative every line.
	KeepLines int
	// Grace is how long Stop waits for the process to exit after asking it
	// to, before SIGKILL; 0 is DefaultGrace.
	Grace time.Duration
	// Quit asks the process to quit (say, by closing its standard input);
	// default: SIGTERM (to the group, with Group). If it fails, Stop waits
	// the grace period anyway.
	Quit func() error
	// Group runs the process in a process group of its own; signals from
	// Stop and Kill go to the whole group.
	Group bool
	// Test, if set, stops the process when the test ends (a cleanup that
	// runs after those registered later, such as a harness's own), logging
	// the end of its output if the test failed.
	Test TB
}

// Process is a started process. Its methods are safe for concurrent use.
type Process struct {
	name  string
	cmd   *exec.Cmd
	opts  Options
	out   *capture
	pid   int
	start time.Time

	exited  chan struct{} // closed once reaped and the output handled
	waitErr error         // cmd.Wait's result; read after exited is closed

	stopping atomic.Bool
	stopOnce sync.Once
	stopErr  error
}

// Start starts cmd (not started yet) as the options say. The command's
// Stdout and Stderr, when nil, are captured (both into the same pipe, in the
// order written); set either to keep it out of the capture (StdoutPipe
// counts as set). cmd.SysProcAttr gets Pdeathsig SIGKILL unless it has a
// death signal already, and Setpgid with Options.Group.
func Start(cmd *exec.Cmd, opts Options) (*Process, error) {
	if opts.Name == "" {
		opts.Name = filepath.Base(cmd.Path)
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.KeepLines == 0 {
		opts.KeepLines = DefaultKeepLines
	}
	out := &capture{log: opts.Log, onLine: opts.OnLine, keep: opts.KeepLines, changed: make(chan struct{})}
	if opts.LogPath != "" {
		f, err := os.Create(opts.LogPath)
		if err != nil {
			return nil, fmt.Errorf("%s: creating its log: %w", opts.Name, err)
		}
		out.file = f
	}
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = out
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	setDeathSignal(cmd.SysProcAttr)
	if opts.Group {
		cmd.SysProcAttr.Setpgid = true
	}
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = waitDelay
	}
	p := &Process{name: opts.Name, cmd: cmd, opts: opts, out: out, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		out.closeFile()
		return nil, fmt.Errorf("starting %s: %w", opts.Name, err)
	}
	p.pid, p.start = cmd.Process.Pid, time.Now()
	go func() {
		err := cmd.Wait()
		out.flush()
		out.closeFile()
		p.waitErr = err
		close(p.exited)
	}()
	if tb := opts.Test; tb != nil {
		tb.Cleanup(func() {
			select {
			case <-p.exited:
				if !p.stopping.Load() && tb.Failed() {
					tb.Logf("%s (pid %d) had exited (%v); its output, last part:\n%s", p.name, p.pid, exitError(p.waitErr), p.Tail())
				}
				return
			default:
			}
			if tb.Failed() {
				tb.Logf("%s (pid %d) output, last part:\n%s", p.name, p.pid, p.Tail())
			}
			if err := p.Stop(); errors.Is(err, ErrKilled) {
				tb.Logf("%v", err)
			}
		})
	}
	return p, nil
}

// Name is the process's name in errors.
func (p *Process) Name() string { return p.name }

// PID is the process id.
func (p *Process) PID() int { return p.pid }

// Exited is closed once the process has exited, been reaped, and its
// captured output handled.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// ExitErr is cmd.Wait's error once the process has exited (nil for exit
// status 0, and while it runs).
func (p *Process) ExitErr() error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
		return nil
	}
}

// ExitCode is the exit status, or -1 while the process runs or when a
// signal ended it.
func (p *Process) ExitCode() int {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Stopping reports whether Stop or Kill was called: an exit after that was
// asked for, not a crash.
func (p *Process) Stopping() bool { return p.stopping.Load() }

// Wait waits until the process exits (or ctx ends) and returns cmd.Wait's
// error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return p.waitErr
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s to exit: %w", p.name, ctx.Err())
	}
}

// Signal sends sig to the process (to its group, with Options.Group).
func (p *Process) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return os.ErrProcessDone
	}
	if p.opts.Group {
		return syscall.Kill(-p.pid, sig)
	}
	return p.cmd.Process.Signal(sig)
}

// Stop asks the process to quit (Options.Quit, default SIGTERM), kills it
// with SIGKILL if it still runs after the grace period, and returns once it
// has been reaped. The error wraps ErrKilled if it had to be killed, else
// it is cmd.Wait's (an exit status other than 0, or the signal that ended
// it), also when the process had exited by itself before. Stop is safe to
// call more than once; every call returns the first one's result.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		p.stopping.Store(true)
		select {
		case <-p.exited:
			p.stopErr = p.exitStatus()
			return
		default:
		}
		if p.opts.Quit != nil {
			_ = p.opts.Quit()
		} else {
			_ = p.Signal(syscall.SIGTERM)
		}
		select {
		case <-p.exited:
			p.stopErr = p.exitStatus()
		case <-time.After(p.opts.Grace):
			_ = p.Signal(syscall.SIGKILL)
			<-p.exited
			p.stopErr = fmt.Errorf("%s did not exit within %s of being asked to (%w)", p.name, p.opts.Grace, ErrKilled)
		}
	})
	<-p.exited
	return p.stopErr
}

// Kill kills the process (SIGKILL, to its group with Options.Group) and
// returns once it has been reaped.
func (p *Process) Kill() {
	p.stopping.Store(true)
	_ = p.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *Process) exitStatus() error {
	if p.waitErr != nil {
		return fmt.Errorf("%s exited: %w", p.name, p.waitErr)
	}
	return nil
}

// Tail is the end of the captured output (up to 16 KiB).
func (p *Process) Tail() string { return p.out.tailString() }

// Lines are the captured lines kept (see Options.KeepLines), oldest first;
// each is cut at 4 KiB.
func (p *Process) Lines() []string {
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	return append([]string(nil), p.out.lines...)
}

// WaitLine returns the first kept line of the output (from the start, so a
// line printed before the call counts) that match accepts, waiting for one.
// It fails when the process exits without printing one, or ctx ends.
func (p *Process) WaitLine(ctx context.Context, match func(line string) bool) (string, error) {
	next := 0 // absolute line number
	for {
		p.out.mu.Lock()
		next = max(next, p.out.dropped)
		for ; next < p.out.dropped+len(p.out.lines); next++ {
			if line := p.out.lines[next-p.out.dropped]; match(line) {
				p.out.mu.Unlock()
				return line, nil
			}
		}
		changed := p.out.changed
		p.out.mu.Unlock()
		select {
		case <-changed:
		case <-p.exited:
			p.out.mu.Lock()
			more := next < p.out.dropped+len(p.out.lines)
			p.out.mu.Unlock()
			if !more {
				return "", fmt.Errorf("%s exited (%w) without printing the line waited for:\n%s", p.name, exitError(p.waitErr), p.Tail())
			}
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for a line from %s: %w\n%s", p.name, ctx.Err(), p.Tail())
		}
	}
}

// WaitOutput is WaitLine for the first line containing substr.
func (p *Process) WaitOutput(ctx context.Context, substr string) (string, error) {
	return p.WaitLine(ctx, func(line string) bool { return strings.Contains(line, substr) })
}

// WaitUntil polls cond (every 10 ms, backing off to 250 ms) until it
// reports true or fails. It fails at once when the process exits, and when
// ctx ends (with cond's last error, if any). It is for readiness with no
// line to wait for.
func (p *Process) WaitUntil(ctx context.Context, cond func(ctx context.Context) (bool, error)) error {
	var last error
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 250*time.Millisecond) {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited during start (%w):\n%s", p.name, exitError(p.waitErr), p.Tail())
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%s not ready (last: %w): %w\n%s", p.name, last, ctx.Err(), p.Tail())
			}
			return fmt.Errorf("%s not ready: %w\n%s", p.name, ctx.Err(), p.Tail())
		case <-time.After(delay):
		}
	}
}

// WaitTCP waits until addr (host:port) accepts TCP connections.
func (p *Process) WaitTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	return p.WaitUntil(ctx, func(ctx context.Context) (bool, error) {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := d.DialContext(dctx, "tcp", addr)
		if err != nil {
			return false, err
		}
		_ = c.Close()
		return true, nil
	})
}

// WaitHTTP waits until a GET of url answers 200 OK.
func (p *Process) WaitHTTP(ctx context.Context, url string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return p.WaitUntil(ctx, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("GET %s: HTTP %s", url, resp.Status)
		}
		return true, nil
	})
}

// exitError is cmd.Wait's error, or one saying the exit was clean.
func exitError(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

// capture is the captured output: a writer exec copies the pipe into.
type capture struct {
	wmu     sync.Mutex // serialises writes (and OnLine calls)
	file    *os.File
	fileErr error
	log     io.Writer
	onLine  func(string)
	partial []byte

	mu      sync.Mutex
	keep    int
	tail    []byte
	lines   []string
	dropped int           // lines dropped from the front of lines
	changed chan struct{} // closed (and replaced) at every new line
}

// Write never fails, so that the process's output pipe never breaks.
func (c *capture) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.file != nil && c.fileErr == nil {
		_, c.fileErr = c.file.Write(b)
	}
	if c.log != nil {
		_, _ = c.log.Write(b)
	}
	c.mu.Lock()
	c.tail = append(c.tail, b...)
	if len(c.tail) > tailBytes {
		c.tail = append(c.tail[:0], c.tail[len(c.tail)-tailBytes:]...)
	}
	c.mu.Unlock()
	c.partial = append(c.partial, b...)
	start := 0
	for {
		i := bytes.IndexByte(c.partial[start:], '\n')
		if i < 0 {
			break
		}
		c.lineLocked(string(c.partial[start : start+i]))
		start += i + 1
	}
	c.partial = append(c.partial[:0], c.partial[start:]...)
	return len(b), nil
}

// flush hands on a last line without a line break.
func (c *capture) flush() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.partial) > 0 {
		c.lineLocked(string(c.partial))
		c.partial = nil
	}
}

func (c *capture) lineLocked(line string) {
	line = strings.TrimSuffix(line, "\r")
	if c.onLine != nil {
		c.onLine(line)
	}
	kept := line
	if len(kept) > maxKeptLine {
		kept = kept[:maxKeptLine]
	}
	c.mu.Lock()
	c.lines = append(c.lines, kept)
	if c.keep > 0 && len(c.lines) >= 2*c.keep { // amortised: drop half at once
		n := len(c.lines) - c.keep
		c.lines = append(c.lines[:0], c.lines[n:]...)
		c.dropped += n
	}
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *capture) closeFile() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.file != nil {
		_ = c.file.Close()
		c.file = nil
	}
}

func (c *capture) tailString() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.tail)
}
