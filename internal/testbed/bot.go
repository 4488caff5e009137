package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// BuildBot builds the voipbot binary into dir, as `make build` does.
func BuildBot(dir string) (string, error) {
	bin := filepath.Join(dir, "voipbot")
	cmd := exec.Command("go", "build", "-tags", "goolm", "-o", bin, "./cmd/voipbot")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building voipbot: %w\n%s", err, out)
	}
	return bin, nil
}

// Bot is a running voipbot process.
type Bot struct {
	// HTTP is the base URL of its HTTP listener.
	HTTP     string
	Dir      string
	LogPath  string
	cmd      *exec.Cmd
	exited   chan struct{}
	exitCode int
	started  time.Time
}

// StartBot runs the voipbot binary with the config file at configPath and
// extra environment, logging to a file in dir. httpAddr must be the config's
// http.listen.
func StartBot(bin, dir, configPath, httpAddr string, env []string) (*Bot, error) {
	b := &Bot{HTTP: "http://" + httpAddr, Dir: dir, LogPath: filepath.Join(dir, fmt.Sprintf("voipbot-%d.log", time.Now().UnixNano())), exited: make(chan struct{})}
	logFile, err := os.Create(b.LogPath)
	if err != nil {
		return nil, err
	}
	b.cmd = exec.Command(bin, "-c", configPath)
	b.cmd.Dir = dir
	b.cmd.Env = append(cleanEnv(), env...)
	b.cmd.Stdout, b.cmd.Stderr = logFile, logFile
	b.started = time.Now()
	if err = b.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting voipbot: %w", err)
	}
	go func() {
		_ = b.cmd.Wait()
		b.exitCode = b.cmd.ProcessState.ExitCode()
		logFile.Close()
		close(b.exited)
	}()
	return b, nil
}

// cleanEnv is this process's environment without VOIPBOT_ variables, which
// the bot would read as configuration.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VOIPBOT_") {
			out = append(out, kv)
		}
	}
	return out
}

// Health is the body of /health.
type Health struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

// GetHealth fetches /health.
func (b *Bot) GetHealth() (*Health, int, error) {
	resp, err := http.Get(b.HTTP + "/health")
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var h Health
	if err = json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return nil, resp.StatusCode, err
	}
	return &h, resp.StatusCode, nil
}

// WaitReady waits until /health says ready and returns how long that took
// from the start of the process. It fails if the process exits first.
func (b *Bot) WaitReady(ctx context.Context) (time.Duration, error) {
	return b.waitReady(ctx, WaitFor)
}

// WaitReadyPrecisely is WaitReady polling every millisecond, for measuring
// startup time rather than the polling interval.
func (b *Bot) WaitReadyPrecisely(ctx context.Context) (time.Duration, error) {
	return b.waitReady(ctx, func(ctx context.Context, cond func() (bool, error)) error {
		return poll(ctx, time.Millisecond, time.Millisecond, cond)
	})
}

func (b *Bot) waitReady(ctx context.Context, wait func(context.Context, func() (bool, error)) error) (time.Duration, error) {
	var readyAt time.Time
	err := wait(ctx, func() (bool, error) {
		select {
		case <-b.exited:
			return false, fmt.Errorf("voipbot exited with code %d before it was ready:\n%s", b.exitCode, b.LogTail())
		default:
		}
		h, _, err := b.GetHealth()
		readyAt = time.Now()
		return err == nil && h.Ready, nil
	})
	return readyAt.Sub(b.started), err
}

// Metrics fetches /metrics.
func (b *Bot) Metrics() (string, error) {
	resp, err := http.Get(b.HTTP + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return string(data), err
}

// Stop sends SIGTERM and returns the exit code once the process exits.
func (b *Bot) Stop() (int, error) {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
		return b.exitCode, nil
	case <-time.After(30 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
		return b.exitCode, fmt.Errorf("voipbot did not stop within 30 s of SIGTERM:\n%s", b.LogTail())
	}
}

// Exited is closed when the process has exited.
func (b *Bot) Exited() <-chan struct{} { return b.exited }

// Logs is the whole log of the process.
func (b *Bot) Logs() string {
	data, _ := os.ReadFile(b.LogPath)
	return string(data)
}

// LogTail is the end of the log, for failure messages.
func (b *Bot) LogTail() string {
	logs := b.Logs()
	if len(logs) > 6000 {
		logs = logs[len(logs)-6000:]
	}
	return logs
}

// PID is the bot process's ID.
func (b *Bot) PID() int { return b.cmd.Process.Pid }
