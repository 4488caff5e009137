// Package livekit runs the SFU of the Element Call (MatrixRTC) test bed: the
// pinned livekit-server (testbed.LiveKitBinary) in development mode, on
// loopback only, with a key pair of its own and a STUN responder on
// loopback for its clients. With lkjwt (the JWT service) and a Dendrite with
// federation routes on, it is what a MatrixRTC call needs:
//
//	hs, _ := testbed.StartDendrite(t.TempDir(), testbed.DendriteOptions{Federation: true})
//	lk, _ := livekit.Start(ctx, livekit.Options{Test: t})
//	jwt, _ := lkjwt.Start(lk.JWTConfig(map[string]string{testbed.ServerName: hs.URL}))
//	// a member's focus: {"type":"livekit","livekit_service_url":jwt.URL,…}
package livekit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pion/stun/v4"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/lkjwt"
	"github.com/voipbot/voipbot/internal/testbed/proc"
)

// Options configure Start.
type Options struct {
	// Dir holds the generated config and the log; default a new temporary
	// directory, removed by Stop.
	Dir string
	// Test, if set, stops the server (as Stop does) when the test ends,
	// logging the end of its output if the test failed.
	Test proc.TB
	// LogLevel is livekit-server's (debug, info, warn, error); default
	// info, since --dev would make it debug, which is very verbose.
	LogLevel string
}

// Server is a running livekit-server.
type Server struct {
	// URL is the signalling URL clients connect to (ws://127.0.0.1:port).
	URL string
	// HTTPURL is the same listener over HTTP (its health check is /).
	HTTPURL string
	// APIKey and APISecret sign the access tokens this server accepts.
	APIKey, APISecret string
	// UDPPort is the one UDP port of its media (the ICE UDP mux).
	UDPPort int

	dir     string
	tempDir bool
	logPath string
	proc    *proc.Process
	stun    net.PacketConn
	stunErr chan error
}

// Start starts livekit-server on 127.0.0.1 and returns once it answers its
// health check (or ctx ends, or it exits).
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := testbed.LiveKitBinary()
	if err != nil {
		return nil, err
	}
	s := &Server{dir: opts.Dir, APIKey: "testbed", APISecret: randomHex(24)}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "livekit-*"); err != nil {
			return nil, fmt.Errorf("livekit: making its directory: %w", err)
		}
		s.tempDir = true
	}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	if err = s.startSTUN(); err != nil {
		return nil, err
	}
	port, err := testbed.FreePort()
	if err != nil {
		return nil, fmt.Errorf("livekit: finding a free TCP port: %w", err)
	}
	if s.UDPPort, err = freeUDPPort(); err != nil {
		return nil, fmt.Errorf("livekit: finding a free UDP port: %w", err)
	}
	level := opts.LogLevel
	if level == "" {
		level = "info"
	}
	cfgPath := filepath.Join(s.dir, "lk.yaml")
	if err = os.WriteFile(cfgPath, []byte(s.config(port, level)), 0o600); err != nil {
		return nil, fmt.Errorf("livekit: writing its config: %w", err)
	}
	s.URL = fmt.Sprintf("ws://127.0.0.1:%d", port)
	s.HTTPURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	s.logPath = filepath.Join(s.dir, "livekit.log")
	if opts.Test != nil {
		// Registered before proc.Start's own cleanup, so that one runs
		// first: it logs the output of a failed test, then this removes
		// the STUN responder and a temporary directory.
		opts.Test.Cleanup(s.Stop)
	}
	cmd := exec.Command(bin, "--dev", "--config", cfgPath)
	cmd.Dir = s.dir
	// The environment may carry LIVEKIT_* settings of a developer's own
	// server (livekit-server reads LIVEKIT_KEYS, LIVEKIT_CONFIG …), which
	// must not leak into the test bed's.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LIVEKIT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if s.proc, err = proc.Start(cmd, proc.Options{Name: "livekit-server", LogPath: s.logPath, Test: opts.Test}); err != nil {
		return nil, err
	}
	// Its health check answers 200 only once the node has published its
	// first stats, i.e. it is up and routing.
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err = s.proc.WaitHTTP(waitCtx, s.HTTPURL+"/"); err != nil {
		return nil, fmt.Errorf("livekit: waiting for it to be ready: %w\n%s", err, s.LogTail())
	}
	ok = true
	return s, nil
}

// config is the loopback-only configuration. --dev alone binds signalling
// to loopback but its UDP mux and ICE-TCP beyond it; here media is one UDP
// port on 127.0.0.1 (node_ip, the lo interface, the loopback candidate),
// ICE-TCP is off (tcp_port 0) and the clients' STUN server is the
// responder on loopback, instead of the Google servers livekit-server
// hands out when none is configured. Rooms are made on first join, since
// MatrixRTC tokens are join-only.
func (s *Server) config(port int, level string) string {
	return fmt.Sprintf(`port: %d
bind_addresses: [127.0.0.1]
keys:
  %s: %s
rtc:
  tcp_port: 0
  udp_port: %d
  use_external_ip: false
  node_ip: 127.0.0.1
  enable_loopback_candidate: true
  interfaces:
    includes: [lo]
  stun_servers: [%q]
room:
  auto_create: true
logging:
  level: %s
  pion_level: error
`, port, s.APIKey, s.APISecret, s.UDPPort, s.stun.LocalAddr().String(), level)
}

// JWTConfig is the configuration of a JWT service (lkjwt) for this server,
// checking OpenID tokens at the given homeservers (server name → base URL).
func (s *Server) JWTConfig(homeservers map[string]string) lkjwt.Config {
	return lkjwt.Config{LiveKitURL: s.URL, APIKey: s.APIKey, APISecret: s.APISecret, Homeservers: homeservers}
}

// Process is the server's process, for its output (Lines, WaitLine).
func (s *Server) Process() *proc.Process { return s.proc }

// LogTail is the end of the server's output, for failure messages.
func (s *Server) LogTail() string {
	if s.proc == nil {
		return ""
	}
	return s.proc.Tail()
}

// Stop stops the server (SIGTERM, SIGKILL after the grace period) and the
// STUN responder, and removes a temporary directory. It is safe to call
// more than once.
func (s *Server) Stop() {
	if s.proc != nil {
		_ = s.proc.Stop()
	}
	if s.stun != nil {
		_ = s.stun.Close()
		<-s.stunErr
		s.stun = nil
	}
	if s.tempDir {
		_ = os.RemoveAll(s.dir)
		s.tempDir = false
	}
}

// startSTUN answers STUN binding requests on a loopback UDP port with the
// sender's address: all a WebRTC client asks of a STUN server. It gives
// the clients' server-reflexive gathering an answer on loopback, at once.
func (s *Server) startSTUN() error {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("livekit: listening for STUN: %w", err)
	}
	s.stun, s.stunErr = conn, make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					err = nil
				}
				s.stunErr <- err
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil || req.Type != stun.BindingRequest {
				continue
			}
			addr, ok := from.(*net.UDPAddr)
			if !ok {
				continue
			}
			resp, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: addr.IP, Port: addr.Port}, stun.Fingerprint)
			if err == nil {
				_, _ = conn.WriteTo(resp.Raw, from)
			}
		}
	}()
	return nil
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort() (int, error) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
