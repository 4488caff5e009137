//go:build linux

package proc_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/proc"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCaptureWaitLineAndStop(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "sh.log")
	var lines []string
	var mu sync.Mutex
	p, err := proc.Start(exec.Command("sh", "-c", "echo hello; echo ready >&2; exec sleep 60"), proc.Options{
		Name: "shell", LogPath: logPath,
		OnLine: func(l string) { mu.Lock(); lines = append(lines, l); mu.Unlock() },
	})
	require.NoError(t, err)
	line, err := p.WaitOutput(ctxFor(t), "read")
	require.NoError(t, err)
	require.Equal(t, "ready", line)
	require.True(t, p.Running())
	require.Equal(t, -1, p.ExitCode())
	require.False(t, p.Stopping())

	err = p.Stop()
	require.ErrorContains(t, err, "signal: terminated", "sleep does not handle SIGTERM")
	require.NotErrorIs(t, err, proc.ErrKilled)
	require.Equal(t, err, p.Stop(), "a second Stop returns the first one's result")
	require.True(t, p.Stopping())
	require.False(t, p.Running())
	select {
	case <-p.Exited():
	default:
		t.Fatal("Stop returned before the process was reaped")
	}
	require.Equal(t, "hello\nready\n", p.Tail())
	require.Equal(t, []string{"hello", "ready"}, p.Lines())
	require.Equal(t, []string{"hello", "ready"}, lines)
	data, err := os.ReadFile(logPath)
	require.NoError(t, err)
	require.Equal(t, "hello\nready\n", string(data))
}

func TestStopKillsAfterGrace(t *testing.T) {
	// The shell ignores SIGTERM, and so does the sleep it execs.
	p, err := proc.Start(exec.Command("sh", "-c", `trap "" TERM; echo up; exec sleep 60`), proc.Options{Grace: 200 * time.Millisecond})
	require.NoError(t, err)
	_, err = p.WaitOutput(ctxFor(t), "up")
	require.NoError(t, err)
	start := time.Now()
	err = p.Stop()
	require.ErrorIs(t, err, proc.ErrKilled)
	require.ErrorContains(t, err, "sh did not exit within 200ms")
	require.Less(t, time.Since(start), 3*time.Second)
}

func TestGroupStopReachesChildren(t *testing.T) {
	// sleep runs as the shell's child: without a group it would outlive
	// the shell and hold the output pipe open.
	p, err := proc.Start(exec.Command("sh", "-c", `trap "" TERM; sleep 60; echo never`), proc.Options{Group: true, Grace: 200 * time.Millisecond})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(children(t, p.PID())) > 0 }, 5*time.Second, 10*time.Millisecond)
	child := children(t, p.PID())[0]
	start := time.Now()
	require.ErrorIs(t, p.Stop(), proc.ErrKilled)
	require.Less(t, time.Since(start), 3*time.Second, "the pipe was not held open by the child")
	require.Eventually(t, func() bool {
		st, err := proc.ReadStat(child)
		return err != nil || !st.Alive()
	}, 5*time.Second, 10*time.Millisecond, "the child was killed with the group")
}

func TestQuitAndPartialLastLine(t *testing.T) {
	cmd := exec.Command("sh", "-c", `read x; printf 'got %s\nno newline' "$x"`)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	p, err := proc.Start(cmd, proc.Options{Quit: stdin.Close})
	require.NoError(t, err)
	_, err = stdin.Write([]byte("it\n"))
	require.NoError(t, err)
	_, err = p.WaitOutput(ctxFor(t), "no newline")
	require.NoError(t, err, "the last line without a line break counts")
	require.NoError(t, p.Stop())
	require.Equal(t, []string{"got it", "no newline"}, p.Lines())
	require.Equal(t, 0, p.ExitCode())
}

func TestExitDuringWait(t *testing.T) {
	p, err := proc.Start(exec.Command("sh", "-c", "echo bye; exit 3"), proc.Options{Name: "quitter"})
	require.NoError(t, err)
	err = p.WaitTCP(ctxFor(t), "127.0.0.1:1")
	require.ErrorContains(t, err, "quitter exited during start (exit status 3)")
	require.ErrorContains(t, err, "bye")
	require.Equal(t, 3, p.ExitCode())
	_, err = p.WaitOutput(ctxFor(t), "never printed")
	require.ErrorContains(t, err, "quitter exited (exit status 3) without printing")
	err = p.Stop()
	require.ErrorContains(t, err, "exit status 3", "Stop reports how it had exited")
	require.Error(t, p.ExitErr())
}

func TestWaitHTTPAndTCP(t *testing.T) {
	var hits int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if hits++; hits < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	p, err := proc.Start(exec.Command("sleep", "60"), proc.Options{})
	require.NoError(t, err)
	defer p.Kill()
	require.NoError(t, p.WaitHTTP(ctxFor(t), srv.URL))
	require.Equal(t, 3, hits)
	require.NoError(t, p.WaitTCP(ctxFor(t), strings.TrimPrefix(srv.URL, "http://")))

	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = p.WaitUntil(short, func(context.Context) (bool, error) { return false, errors.New("not yet") })
	require.ErrorContains(t, err, "last: not yet")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	p.Kill()
	require.True(t, p.Stopping())
	require.ErrorContains(t, p.ExitErr(), "killed")
}

func TestKeepLines(t *testing.T) {
	p, err := proc.Start(exec.Command("seq", "3000"), proc.Options{KeepLines: 10})
	require.NoError(t, err)
	require.NoError(t, p.Wait(ctxFor(t)))
	lines := p.Lines()
	require.GreaterOrEqual(t, len(lines), 10)
	require.Less(t, len(lines), 20)
	require.Equal(t, "3000", lines[len(lines)-1])

	all, err := proc.Start(exec.Command("seq", "3000"), proc.Options{KeepLines: -1})
	require.NoError(t, err)
	require.NoError(t, all.Wait(ctxFor(t)))
	require.Len(t, all.Lines(), 3000)
}

// fakeTB records cleanups, to run them at a time of the test's choosing.
type fakeTB struct {
	cleanups []func()
	failed   bool
	logs     []string
}

func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Failed() bool      { return f.failed }
func (f *fakeTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func TestStoppedOnTestCleanup(t *testing.T) {
	tb := &fakeTB{failed: true}
	p, err := proc.Start(exec.Command("sh", "-c", "echo some output; exec sleep 60"), proc.Options{Test: tb})
	require.NoError(t, err)
	_, err = p.WaitOutput(ctxFor(t), "some output")
	require.NoError(t, err)
	require.Len(t, tb.cleanups, 1)
	tb.cleanups[0]()
	require.False(t, p.Running())
	require.True(t, p.Stopping())
	require.Len(t, tb.logs, 1)
	require.Contains(t, tb.logs[0], "some output", "the output of a failed test's process is logged")
}

func TestReadStat(t *testing.T) {
	st, err := proc.ReadStat(os.Getpid())
	require.NoError(t, err)
	require.Equal(t, os.Getppid(), st.PPID)
	require.True(t, st.Alive())
	require.Positive(t, st.StartTime)
	_, err = proc.ReadStat(1 << 30)
	require.Error(t, err)
}

// children lists the pids whose parent is pid.
func children(t *testing.T, pid int) []int {
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var out []int
	for _, e := range entries {
		var child int
		if _, err := fmt.Sscan(e.Name(), &child); err != nil {
			continue
		}
		if st, err := proc.ReadStat(child); err == nil && st.PPID == pid && st.Alive() {
			out = append(out, child)
		}
	}
	return out
}
