package dendrite_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/dendrite"
	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/proc"
)

// binary is the pinned Dendrite ($DENDRITE_BIN, or built as the test bed
// builds it).
func binary(t *testing.T) string {
	t.Helper()
	bin, err := testbed.DendriteBinary()
	require.NoError(t, err)
	return bin
}

func start(t *testing.T, opts dendrite.Options) *dendrite.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	s, err := dendrite.Start(ctx, opts)
	require.NoError(t, err)
	t.Logf("Dendrite answering at %s %s after start", s.URL, time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// login logs in with a plain POST /login and returns the user ID.
func login(t *testing.T, hs, localpart, password string) (id.UserID, int) {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": localpart},
		"password":   password,
	})
	require.NoError(t, err)
	resp, err := http.Post(hs+"/_matrix/client/v3/login", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		UserID id.UserID `json:"user_id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out.UserID, resp.StatusCode
}

// requireGone checks that no process of the server's group is left.
func requireGone(t *testing.T, s *dendrite.Server) {
	t.Helper()
	select {
	case <-s.Exited():
	default:
		t.Fatal("the server has not exited")
	}
	require.ErrorIs(t, syscall.Kill(-s.PID(), 0), syscall.ESRCH, "a process of the server's group is left")
}

func TestStartRegisterStop(t *testing.T) {
	s := start(t, dendrite.Options{Binary: binary(t), Dir: t.TempDir()})
	u, err := url.Parse(s.URL)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", u.Hostname(), "loopback only")
	require.True(t, filepath.IsAbs(s.Dir))

	ctx := context.Background()
	uid, err := s.Register(ctx, "alice", "pw-alice-1")
	require.NoError(t, err)
	require.Equal(t, id.UserID("@alice:"+dendrite.ServerName), uid)
	again, err := s.Register(ctx, "alice", "other-password")
	require.NoError(t, err, "registering an existing user is not an error")
	require.Equal(t, uid, again)
	_, err = s.Create(ctx, "alice", "pw-alice-1")
	require.ErrorIs(t, err, dendrite.ErrUserExists)

	got, code := login(t, s.URL, "alice", "pw-alice-1")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, uid, got)
	_, code = login(t, s.URL, "alice", "other-password")
	require.Equal(t, http.StatusForbidden, code, "the existing user kept its password")

	require.NoError(t, s.Stop(), "Dendrite exits cleanly on SIGTERM")
	requireGone(t, s)
	require.NoError(t, s.Stop(), "a second Stop returns the first one's result")
}

func TestSameDirKeepsKeyAndUsers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // created by Start
	bin := binary(t)
	s := start(t, dendrite.Options{Binary: bin, Dir: dir, DurableStreams: true})
	_, err := s.Register(context.Background(), "bob", "pw-bob-123")
	require.NoError(t, err)
	key, err := os.ReadFile(filepath.Join(dir, "matrix_key.pem"))
	require.NoError(t, err)

	_, err = dendrite.Start(context.Background(), dendrite.Options{Binary: bin, Dir: dir})
	require.ErrorContains(t, err, "another server is running", "one server per directory")
	require.NoError(t, s.Stop())

	s = start(t, dendrite.Options{Binary: bin, Dir: dir, DurableStreams: true})
	again, err := os.ReadFile(filepath.Join(dir, "matrix_key.pem"))
	require.NoError(t, err)
	require.Equal(t, key, again, "the signing key is kept")
	_, code := login(t, s.URL, "bob", "pw-bob-123")
	require.Equal(t, http.StatusOK, code, "the user is kept")
}

func TestFixedAddress(t *testing.T) {
	port, err := testbed.FreePort()
	require.NoError(t, err)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s := start(t, dendrite.Options{Binary: binary(t), Dir: t.TempDir(), Addr: addr})
	require.Equal(t, "http://"+addr, s.URL)

	_, err = dendrite.Start(context.Background(), dendrite.Options{Binary: "dendrite", Dir: t.TempDir(), Addr: "0.0.0.0:8008"})
	require.ErrorContains(t, err, "not a loopback IP address")
	_, err = dendrite.Start(context.Background(), dendrite.Options{Binary: "dendrite", Dir: t.TempDir(), Addr: "localhost:8008"})
	require.ErrorContains(t, err, "not a loopback IP address")
}

// fake writes an executable shell script that stands in for a Dendrite
// that never answers. It runs before, starts a child (in its process group),
// runs after, and writes
// its own pid and the child's into a FIFO, whose pids arrive on the
// channel (the script blocks until they are read).
func fake(t *testing.T, before, after string) (string, <-chan []int) {
	t.Helper()
	dir := t.TempDir()
	bin, fifo := filepath.Join(dir, "fake-dendrite"), filepath.Join(dir, "pids")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	body := "#!/bin/sh\n" + before + "\nsleep 600 &\n" + after + "\necho $$ $! > " + fifo + "\nwait\n"
	require.NoError(t, os.WriteFile(bin, []byte(body), 0o755))
	pids := make(chan []int, 1)
	go func() {
		data, err := os.ReadFile(fifo) // returns when the script has written and closed it
		var out []int
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out = append(out, pid)
			}
		}
		if err != nil || len(out) != 2 {
			t.Errorf("reading the fake's pids: %q, %v", data, err)
		}
		pids <- out
	}()
	return bin, pids
}

// requirePIDsGone checks that the processes are gone (or zombies waiting
// for init to reap them). A process killed with the group may take a
// moment to die: there is no event to await for a process that is not a
// child, so this polls.
func requirePIDsGone(t *testing.T, pids []int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, pid := range pids {
		var st proc.Stat
		err := testbed.WaitFor(ctx, func() (bool, error) {
			var err error
			st, err = proc.ReadStat(pid)
			return err != nil || !st.Alive(), nil
		})
		require.NoErrorf(t, err, "process %d is left (state %c)", pid, st.State)
	}
}

func TestExitDuringStart(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "broken-dendrite")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\necho broken config >&2\nexit 3\n"), 0o755))
	_, err := dendrite.Start(context.Background(), dendrite.Options{Binary: bin, Dir: t.TempDir()})
	require.ErrorContains(t, err, "exited during start")
	require.ErrorContains(t, err, "broken config", "the error carries the log's end")
}

func TestCancelledStartStopsTheGroup(t *testing.T) {
	bin, pids := fake(t, "", "")
	ctx, cancel := context.WithCancel(context.Background())
	var running []int
	go func() {
		running = <-pids
		cancel() // as a Ctrl-C while the server starts
	}()
	_, err := dendrite.Start(ctx, dendrite.Options{Binary: bin, Dir: t.TempDir()})
	require.ErrorIs(t, err, context.Canceled)
	requirePIDsGone(t, running)
}

func TestStopKillsTheGroupAfterGrace(t *testing.T) {
	// It ignores SIGTERM, as does its child: the start times out, and the
	// group is killed after the grace period.
	bin, pids := fake(t, "trap '' TERM", "")
	began := time.Now()
	_, err := dendrite.Start(context.Background(), dendrite.Options{Binary: bin, Dir: t.TempDir(), StartTimeout: 500 * time.Millisecond, Grace: 100 * time.Millisecond})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(began), 10*time.Second)
	requirePIDsGone(t, <-pids)
}

func TestStopKillsWhatTheServerLeaves(t *testing.T) {
	// The server exits on SIGTERM, but its child ignores it: the group is
	// killed when the server has exited, not after the grace period.
	bin, pids := fake(t, "trap '' TERM", "trap - TERM")
	began := time.Now()
	_, err := dendrite.Start(context.Background(), dendrite.Options{Binary: bin, Dir: t.TempDir(), StartTimeout: 500 * time.Millisecond, Grace: time.Minute})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(began), 30*time.Second, "not killed after the grace period")
	requirePIDsGone(t, <-pids)
}
