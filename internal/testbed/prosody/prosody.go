// Package prosody runs the XMPP server of the QuickBlox test bed: Debian's
// Prosody 0.12 (apt-get install prosody) as a child process, with a private
// configuration in a directory of its own that listens on 127.0.0.1 only:
// client-to-server (c2s, XMPP over TCP without TLS) and HTTP with XMPP over
// WebSocket (RFC 7395, what the QuickBlox JS SDK speaks), on ports picked
// free at start. Nothing federates (no s2s), nothing is stored for offline
// users, and accounts are made by the test (Register), in the form the
// QuickBlox SDK logs in with: <user id>-<application id>@<domain>.
//
//	srv, _ := prosody.Start(ctx, prosody.Options{})
//	defer srv.Close()
//	_ = srv.Register(ctx, prosody.QuickBloxNode(1001, 77), "pw1001")
//	// the SDK: chatProtocol.websocket = srv.WebSocketURL(), endpoints.chat = srv.Domain()
//
// The modules are those the SDK needs: roster, carbons (it enables them
// after login), ping (it pings the server every 5 s and reconnects after
// three misses), disco, saslauth (SCRAM-SHA-1; PLAIN too over WebSocket,
// which counts as secure here, and over c2s with Options.AllowPlainAuth).
package prosody

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/proc"
)

const (
	// DefaultDomain is the virtual host, and the QuickBlox SDK's chat
	// endpoint (endpoints.chat) in the tests.
	DefaultDomain = "localhost"
	// startTimeout bounds a start when ctx has no earlier deadline.
	startTimeout = 30 * time.Second
	// startTries is how many times Start picks new ports when one of them
	// was taken meanwhile.
	startTries = 3
	// bindFailure is what Prosody's portmanager logs when a port is taken;
	// it goes on running without that service, so Start watches for it.
	bindFailure = "Failed to open server port"
	// shutdownDone is Prosody's last line (at info level) when it stops.
	shutdownDone = "Shutdown complete"
	// closeTimeout bounds Prosody's own shutdown in Close.
	closeTimeout = 5 * time.Second
)

// Options configure Start. The zero value runs a server for "localhost" in
// a temporary directory.
type Options struct {
	// Dir holds the configuration, the accounts and the log; default a new
	// temporary directory, removed by Close.
	Dir string
	// Domain is the virtual host; default DefaultDomain.
	Domain string
	// Logf, if set, receives every line of Prosody's output.
	Logf func(format string, args ...any)
	// Debug logs at debug level (every stanza in and out), not info.
	Debug bool
	// AllowPlainAuth offers SASL PLAIN over plain c2s too
	// (allow_unencrypted_plain_auth); WebSocket has it anyway.
	AllowPlainAuth bool
	// Test, if set, closes the server when the test ends, logging the end
	// of its output if the test failed.
	Test proc.TB
}

// Server is a running Prosody.
type Server struct {
	domain  string
	dir     string
	tempDir bool
	cfgPath string
	logPath string
	c2sPort int
	webPort int
	proc    *proc.Process
}

// Start writes the configuration and starts Prosody, and returns once it
// accepts c2s connections and serves its WebSocket endpoint (or ctx ends,
// or it exits). A port taken between picking it and Prosody's bind makes it
// try again with others.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := exec.LookPath("prosody")
	if err != nil {
		return nil, errors.New("prosody: prosody is not installed (Debian: apt-get install prosody)")
	}
	if opts.Domain == "" {
		opts.Domain = DefaultDomain
	}
	s := &Server{domain: opts.Domain, dir: opts.Dir}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "prosody-*"); err != nil {
			return nil, fmt.Errorf("prosody: making its directory: %w", err)
		}
		s.tempDir = true
	} else if s.dir, err = filepath.Abs(s.dir); err != nil {
		return nil, fmt.Errorf("prosody: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = s.Close()
		}
	}()
	// An empty certificate folder keeps Prosody from complaining that
	// there is none; nothing here uses TLS.
	for _, sub := range []string{"data", "certs"} {
		if err = os.MkdirAll(filepath.Join(s.dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("prosody: making its directory: %w", err)
		}
	}
	s.cfgPath = filepath.Join(s.dir, "prosody.cfg.lua")
	s.logPath = filepath.Join(s.dir, "prosody.log")
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	for try := 1; ; try++ {
		err = s.start(ctx, bin, opts)
		if err == nil || !errors.Is(err, errPortTaken) || try == startTries {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if tb := opts.Test; tb != nil {
		tb.Cleanup(func() {
			if tb.Failed() {
				tb.Logf("prosody output, last part:\n%s", s.LogTail())
			}
			_ = s.Close()
		})
	}
	ok = true
	return s, nil
}

// errPortTaken says that a port picked free was taken before Prosody bound
// it.
var errPortTaken = errors.New("a port was taken")

// start is one try of Start: new ports, the configuration, the process,
// the wait.
func (s *Server) start(ctx context.Context, bin string, opts Options) error {
	var err error
	if s.c2sPort, err = testbed.FreePort(); err != nil {
		return fmt.Errorf("prosody: finding a free port: %w", err)
	}
	if s.webPort, err = testbed.FreePort(); err != nil {
		return fmt.Errorf("prosody: finding a free port: %w", err)
	}
	if s.webPort == s.c2sPort {
		return fmt.Errorf("prosody: port %d picked twice: %w", s.c2sPort, errPortTaken)
	}
	if err = os.WriteFile(s.cfgPath, []byte(s.config(opts)), 0o600); err != nil {
		return fmt.Errorf("prosody: writing its config: %w", err)
	}
	// -F keeps it in the foreground (no fork, no detach): it is our child
	// and dies with the test. It writes no file outside its directory.
	cmd := exec.Command(bin, "-F", "--config", s.cfgPath)
	cmd.Dir = s.dir
	cmd.Env = s.env()
	popts := proc.Options{Name: "prosody", LogPath: s.logPath, Group: true, Grace: closeTimeout}
	if opts.Logf != nil {
		popts.OnLine = func(line string) { opts.Logf("prosody: %s", line) }
	}
	p, err := proc.Start(cmd, popts)
	if err != nil {
		return fmt.Errorf("prosody: %w", err)
	}
	s.proc = p
	if err = s.waitReady(ctx); err != nil {
		p.Kill()
		s.proc = nil
		return err
	}
	return nil
}

// waitReady waits until both listeners are up: Prosody binds them while it
// loads its modules, before its event loop runs, and answers the
// WebSocket endpoint's plain GET (its "It works!" page) only once that loop
// runs, when every host and module is loaded. A port it failed to bind is
// in its log.
func (s *Server) waitReady(ctx context.Context) error {
	taken := func() bool {
		for _, l := range s.proc.Lines() {
			if strings.Contains(l, bindFailure) {
				return true
			}
		}
		return false
	}
	web := fmt.Sprintf("http://127.0.0.1:%d/xmpp-websocket", s.webPort)
	if err := s.proc.WaitHTTP(ctx, web); err != nil {
		if taken() {
			return fmt.Errorf("prosody: %w", errPortTaken)
		}
		return fmt.Errorf("prosody: waiting for %s: %w", web, err)
	}
	if taken() {
		return fmt.Errorf("prosody: %w", errPortTaken)
	}
	if err := s.proc.WaitTCP(ctx, s.C2SAddr()); err != nil {
		return fmt.Errorf("prosody: waiting for c2s on %s: %w", s.C2SAddr(), err)
	}
	return nil
}

// env is the environment of prosody and prosodyctl: the machine's, without
// what would point them at another configuration.
func (s *Server) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PROSODY_") {
			env = append(env, kv)
		}
	}
	return env
}

// luaString quotes s as a Lua string literal.
func luaString(s string) string { return strconv.Quote(s) }

// config is the whole configuration: Debian's /etc/prosody is not read.
// run_as_root lets Debian's Prosody run as root (CI's user), which it
// otherwise refuses; no TLS anywhere, so the c2s stream needs no
// encryption, and the WebSocket endpoint counts as secure (the SDK's
// SCRAM and PLAIN both work there). allow_registration stays off: only
// Register makes accounts. On SIGTERM Prosody closes every c2s session and
// waits for each to close its stream, up to c2s_close_timeout + 1 s: 2 s
// here instead of 6.
func (s *Server) config(opts Options) string {
	level := "info"
	if opts.Debug {
		level = "debug"
	}
	return fmt.Sprintf(`-- Written by internal/testbed/prosody for one test run.
run_as_root = true
pidfile = %[1]s
data_path = %[2]s
certificates = %[3]s
log = { { levels = { min = %[4]q }, to = "console" } }

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %[5]d }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = {}
legacy_ssl_ports = {}
s2s_ports = {}
s2s_direct_tls_ports = {}
component_ports = {}
http_ports = { %[6]d }
http_interfaces = { "127.0.0.1" }
https_ports = {}
https_interfaces = {}

modules_enabled = { "disco"; "roster"; "saslauth"; "carbons"; "ping"; "websocket" }
modules_disabled = { "s2s"; "offline"; "tls" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = false
s2s_require_encryption = false
allow_unencrypted_plain_auth = %[7]t
consider_websocket_secure = true
allow_registration = false
c2s_close_timeout = 1

VirtualHost %[8]s
`, luaString(filepath.Join(s.dir, "prosody.pid")), luaString(filepath.Join(s.dir, "data")),
		luaString(filepath.Join(s.dir, "certs")), level, s.c2sPort, s.webPort, opts.AllowPlainAuth, luaString(s.domain))
}

// QuickBloxNode is the account name the QuickBlox SDK logs user userID of
// application appID in with (its JID is node@domain).
func QuickBloxNode(userID, appID uint64) string {
	return strconv.FormatUint(userID, 10) + "-" + strconv.FormatUint(appID, 10)
}

// Register makes (or, if it exists, sets the password of) the account
// node@Domain(), with prosodyctl on the server's configuration. The running
// server reads accounts from its files at each login, so it needs no
// restart.
func (s *Server) Register(ctx context.Context, node, password string) error {
	if node == "" || strings.ContainsAny(node, "@/ \t\n") {
		return fmt.Errorf("prosody: %q is not an account name", node)
	}
	if password == "" {
		return fmt.Errorf("prosody: registering %s: an empty password", node)
	}
	ctl, err := exec.LookPath("prosodyctl")
	if err != nil {
		return errors.New("prosody: prosodyctl is not installed (Debian: apt-get install prosody)")
	}
	cmd := exec.CommandContext(ctx, ctl, "--config", s.cfgPath, "register", node, s.domain, password)
	cmd.Dir = s.dir
	cmd.Env = s.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("prosody: registering %s@%s: %w\n%s", node, s.domain, err, out)
	}
	// prosodyctl exits 0 also after some failures it only prints.
	if _, err := os.Stat(filepath.Join(s.dir, "data", encodeNode(s.domain), "accounts", encodeNode(node)+".dat")); err != nil {
		return fmt.Errorf("prosody: registering %s@%s: no account file after prosodyctl: %w\n%s", node, s.domain, err, out)
	}
	return nil
}

// encodeNode is Prosody's datamanager file name encoding: every byte other
// than a letter, a digit and _ as %xx.
func encodeNode(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02x", c)
		}
	}
	return b.String()
}

// Domain is the virtual host (the domain part of every JID).
func (s *Server) Domain() string { return s.domain }

// JID is the bare JID of account node.
func (s *Server) JID(node string) string { return node + "@" + s.domain }

// C2SAddr is the client-to-server listener, 127.0.0.1:port (XMPP over
// TCP, no TLS).
func (s *Server) C2SAddr() string { return "127.0.0.1:" + strconv.Itoa(s.c2sPort) }

// WebSocketURL is the XMPP over WebSocket endpoint
// (ws://127.0.0.1:port/xmpp-websocket, subprotocol "xmpp").
func (s *Server) WebSocketURL() string {
	u := url.URL{Scheme: "ws", Host: "127.0.0.1:" + strconv.Itoa(s.webPort), Path: "/xmpp-websocket"}
	return u.String()
}

// Dir is the server's directory (configuration, accounts, log).
func (s *Server) Dir() string { return s.dir }

// LogPath is the file that receives Prosody's output.
func (s *Server) LogPath() string { return s.logPath }

// Process is the server's process, for its output (Lines, WaitLine).
func (s *Server) Process() *proc.Process { return s.proc }

// LogTail is the end of Prosody's output, for failure messages.
func (s *Server) LogTail() string {
	if s.proc == nil {
		return ""
	}
	return s.proc.Tail()
}

// Close stops Prosody and returns once it has been reaped; it removes a
// temporary directory. It is safe to call more than once. Prosody is asked
// first (SIGTERM: it sends its c2s sessions a system-shutdown stream error
// and waits up to 2 s for them to close), and killed with its process group
// once it logs that its shutdown is complete: it lingers for a second after
// that, with nothing left to do. The error is a failure to remove the
// directory.
func (s *Server) Close() error {
	if s.proc != nil && s.proc.Running() {
		if s.proc.Signal(syscall.SIGTERM) == nil {
			ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
			_, _ = s.proc.WaitOutput(ctx, shutdownDone)
			cancel()
		}
		s.proc.Kill()
	}
	var err error
	if s.tempDir {
		if rmErr := os.RemoveAll(s.dir); rmErr != nil {
			err = fmt.Errorf("prosody: removing its directory: %w", rmErr)
		}
		s.tempDir = false
	}
	return err
}
