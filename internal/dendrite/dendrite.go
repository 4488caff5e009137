// Package dendrite runs the pinned Dendrite homeserver on loopback, with
// all of its state in one directory: the local demo (voipbot demo) and,
// through internal/testbed, the tests use it.
//
//   - Start writes the server's config and, once, its signing key, starts
//     the binary as a child process in a process group of its own (on
//     Linux it dies with this process, even on SIGKILL), and returns when
//     the server answers /_matrix/client/versions.
//   - The directory keeps the server between starts: the same directory
//     gives the same signing key, users and rooms. One server at a time
//     uses a directory (a lock file says so).
//   - Register makes users with shared-secret registration.
//   - Stop sends the group SIGTERM, then SIGKILL after a grace period, and
//     returns once the server has exited.
package dendrite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Version is the pinned Dendrite release (tools/dendrite/go.mod), as
// `dendrite -version` prints it with a "v" in front.
const Version = "v0.15.2"

// ServerName is the server name of every server started here.
const ServerName = "localhost"

const (
	// DefaultStartTimeout bounds Start's wait for the server to answer.
	DefaultStartTimeout = 60 * time.Second
	// DefaultGrace is how long Stop waits after SIGTERM before SIGKILL.
	DefaultGrace = 15 * time.Second
	// logTailBytes is how much of the log LogTail returns.
	logTailBytes = 4000
)

// Options configure Start.
type Options struct {
	// Binary is the dendrite executable; it should be Version.
	Binary string
	// Dir holds the server's state: its config, signing key, databases,
	// media and log (dendrite.log). It is created if missing.
	Dir string
	// Addr is the loopback host:port of the client-server API (plain
	// HTTP); empty picks a free port.
	Addr string
	// AppserviceRegistrations are registration files to load.
	AppserviceRegistrations []string
	// Federation turns the federation routes on (global.disable_federation
	// false). There is no other server to federate with; what needs the
	// routes is the OpenID userinfo endpoint
	// (/_matrix/federation/v1/openid/userinfo), by which a LiveKit JWT
	// service checks a user's OpenID token. Dendrite serves it on the same
	// listener as the client API.
	Federation bool
	// DurableStreams keeps Dendrite's internal message streams (JetStream)
	// on disk in Dir rather than in memory, so that what was in flight at
	// a stop is handled after the next start: for a server that is started
	// again on the same Dir.
	DurableStreams bool
	// StartTimeout bounds the wait for the server to answer; 0 is
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// Grace is how long Stop waits after SIGTERM before SIGKILL; 0 is
	// DefaultGrace.
	Grace time.Duration
}

// Server is a running Dendrite. Its methods are safe for concurrent use.
type Server struct {
	// URL is the client-server API base URL, http://127.0.0.1:PORT.
	URL string
	// SharedSecret is the registration shared secret (new at every start).
	SharedSecret string
	// Dir is the state directory (absolute).
	Dir string

	logPath string
	grace   time.Duration
	lock    *os.File
	pid     int

	exited  chan struct{} // closed once reaped
	waitErr error         // cmd.Wait's; read after exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Start starts a server as opts say and returns once it answers. If ctx
// ends first, the server is stopped and the error wraps ctx's.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Binary == "" {
		return nil, errors.New("dendrite: no binary given")
	}
	if opts.Dir == "" {
		return nil, errors.New("dendrite: no state directory given")
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("dendrite: %w", err)
	}
	if err = os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dendrite: creating its state directory: %w", err)
	}
	addr, err := listenAddr(opts.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		URL: "http://" + addr, SharedSecret: randomHex(16), Dir: dir,
		logPath: filepath.Join(dir, "dendrite.log"), grace: opts.Grace, exited: make(chan struct{}),
	}
	if s.lock, err = lockDir(dir); err != nil {
		return nil, err
	}
	if err = ensureMatrixKey(filepath.Join(dir, "matrix_key.pem")); err != nil {
		s.unlock()
		return nil, err
	}
	cfgPath, err := writeConfig(dir, s.SharedSecret, opts)
	if err != nil {
		s.unlock()
		return nil, err
	}
	if err = s.start(exec.Command(opts.Binary, "--config", cfgPath, "--http-bind-address", addr)); err != nil {
		s.unlock()
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err = s.waitReady(wctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// listenAddr checks that addr is a loopback IP and port, or picks a free
// port on 127.0.0.1 for an empty one.
func listenAddr(addr string) (string, error) {
	if addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("dendrite: finding a free port: %w", err)
		}
		defer ln.Close()
		return ln.Addr().String(), nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("dendrite: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("dendrite: address %q: not a loopback IP address", addr)
	}
	return addr, nil
}

// lockDir takes dir/dendrite.lock, so that a second server does not share
// the databases of a running one. The lock goes with this process.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "dendrite.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dendrite: %w", err)
	}
	if err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("dendrite: another server is running in %s", dir)
		}
		return nil, fmt.Errorf("dendrite: locking %s: %w", dir, err)
	}
	return f, nil
}

func (s *Server) unlock() {
	if s.lock != nil {
		_ = s.lock.Close()
	}
}

// start starts cmd with its output written to the log, in a process group
// of its own; when it exits, whatever is left of its group is killed. On
// Linux the process gets SIGKILL when the thread that started
// it ends (PR_SET_PDEATHSIG), which is when this process ends: the goroutine
// that starts it stays locked to its thread until the process is reaped,
// and Go never retires a thread while a goroutine is locked to it.
func (s *Server) start(cmd *exec.Cmd) error {
	log, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("dendrite: creating its log: %w", err)
	}
	defer log.Close() // the child has its own copy
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(cmd.SysProcAttr)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("dendrite: starting %s: %w", cmd.Path, err)
			return
		}
		s.pid = cmd.Process.Pid
		started <- nil
		if awaitExit(s.pid) {
			// What the server started is not left behind: the group is
			// killed while its id is still the server's.
			_ = syscall.Kill(-s.pid, syscall.SIGKILL)
		}
		s.waitErr = cmd.Wait()
		s.unlock()
		close(s.exited)
	}()
	return <-started
}

// waitReady polls /_matrix/client/versions until it answers 200 (a request
// to a port nobody listens on yet fails at once, so the polls start close
// together), failing at once if the server exits.
func (s *Server) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	url := s.URL + "/_matrix/client/versions"
	var last error
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		if last = get(ctx, client, url); last == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("dendrite exited during start (%v):\n%s", s.exitStatus(), s.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("dendrite: not answering %s (last: %w): %w\n%s", url, last, ctx.Err(), s.LogTail())
		case <-time.After(delay):
		}
	}
}

func get(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// PID is the server's process id, which is also its process group's.
func (s *Server) PID() int { return s.pid }

// Exited is closed once the server has exited and been reaped.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// ExitErr is cmd.Wait's error once the server has exited (nil for exit
// status 0, and while it runs).
func (s *Server) ExitErr() error {
	select {
	case <-s.exited:
		return s.waitErr
	default:
		return nil
	}
}

func (s *Server) exitStatus() string {
	if s.waitErr == nil {
		return "exit status 0"
	}
	return s.waitErr.Error()
}

// Stop sends the server's process group SIGTERM, then SIGKILL if the server
// still runs after the grace period, and returns once it has exited (and,
// on Linux, the rest of its group has been sent SIGKILL). The
// error says it had to be killed, or that it had exited by itself before
// (with how). Stop is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
			s.stopErr = fmt.Errorf("dendrite had exited (%s)", s.exitStatus())
			return
		default:
		}
		_ = syscall.Kill(-s.pid, syscall.SIGTERM)
		timer := time.NewTimer(s.grace)
		defer timer.Stop()
		select {
		case <-s.exited:
		case <-timer.C:
			_ = syscall.Kill(-s.pid, syscall.SIGKILL)
			<-s.exited
			s.stopErr = fmt.Errorf("dendrite did not exit within %s of SIGTERM and was killed", s.grace)
		}
	})
	<-s.exited
	return s.stopErr
}

// LogPath is the server's log file (standard output and error).
func (s *Server) LogPath() string { return s.logPath }

// LogTail is the end of the server's log, for error messages.
func (s *Server) LogTail() string {
	data, _ := os.ReadFile(s.logPath)
	if len(data) > logTailBytes {
		data = data[len(data)-logTailBytes:]
	}
	return strings.TrimRight(string(data), "\n")
}
