package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"time"

	"github.com/voipbot/voipbot/internal/testbed/proc"
)

// BuildBot builds the voipbot binary into dir, as `make build` does.
func BuildBot(dir string) (string, error) {
	return buildBot(filepath.Join(dir, "voipbot"), "goolm", false)
}

// BuildMixerBot builds the bot as the container image does: with cgo and
// libopus (-tags opus), so that it mixes Element Call participants for a
// single-stream party, into dir.
func BuildMixerBot(dir string) (string, error) {
	return buildBot(filepath.Join(dir, "voipbot-mixer"), "goolm,opus", true)
}

func buildBot(bin, tags string, cgo bool) (string, error) {
	cmd := exec.Command("go", "build", "-tags", tags, "-o", bin, "./cmd/voipbot")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if cgo {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building voipbot (-tags %s): %w\n%s", tags, err, out)
	}
	return bin, nil
}

// Bot is a running voipbot process.
type Bot struct {
	// HTTP is the base URL of its HTTP listener.
	HTTP    string
	Dir     string
	LogPath string
	proc    *proc.Process
	started time.Time
}

// StartBot runs the voipbot binary with the config file at configPath and
// extra environment, logging to a file in dir. httpAddr must be the config's
// http.listen.
func StartBot(bin, dir, configPath, httpAddr string, env []string) (*Bot, error) {
	b := &Bot{HTTP: "http://" + httpAddr, Dir: dir, LogPath: filepath.Join(dir, fmt.Sprintf("voipbot-%d.log", time.Now().UnixNano()))}
	cmd := exec.Command(bin, "-c", configPath)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	b.started = time.Now()
	var err error
	if b.proc, err = proc.Start(cmd, proc.Options{Name: "voipbot", LogPath: b.LogPath, Grace: 30 * time.Second}); err != nil {
		return nil, err
	}
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
		case <-b.proc.Exited():
			return false, fmt.Errorf("voipbot exited with code %d before it was ready:\n%s", b.proc.ExitCode(), b.LogTail())
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

// Stop sends SIGTERM and returns the exit code once the process exits
// (killing it, with an error, if it has not within 30 s).
func (b *Bot) Stop() (int, error) {
	if err := b.proc.Stop(); errors.Is(err, proc.ErrKilled) {
		return b.proc.ExitCode(), fmt.Errorf("voipbot did not stop within 30 s of SIGTERM:\n%s", b.LogTail())
	}
	return b.proc.ExitCode(), nil
}

// Exited is closed when the process has exited.
func (b *Bot) Exited() <-chan struct{} { return b.proc.Exited() }

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
func (b *Bot) PID() int { return b.proc.PID() }

// Kill kills the bot at once (SIGKILL), as a crash or an OOM kill would:
// nothing of it gets to run. It returns once the process is gone.
func (b *Bot) Kill() { b.proc.Kill() }
