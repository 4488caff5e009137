// Package testbed runs real peers for end-to-end tests: a pinned Dendrite
// homeserver on loopback in a temporary directory, and Matrix test users
// with their own devices.
package testbed

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"text/template"
	"time"

	"github.com/voipbot/voipbot/internal/testbed/proc"
)

// DendriteVersion is the pinned test homeserver (tools/dendrite/go.mod).
const DendriteVersion = "v0.15.2"

// ServerName is the test homeserver's server name.
const ServerName = "localhost"

// Dendrite is a running test homeserver.
type Dendrite struct {
	// URL is the client-server API base URL.
	URL          string
	SharedSecret string
	dir          string
	proc         *proc.Process
	logPath      string
}

// DendriteOptions configure a test homeserver.
type DendriteOptions struct {
	// AppserviceRegistrations are registration files to load.
	AppserviceRegistrations []string
	// Federation turns the federation routes on (global.disable_federation
	// false). The test bed has no other homeserver to federate with; what
	// needs the routes is the OpenID userinfo endpoint
	// (/_matrix/federation/v1/openid/userinfo), by which a LiveKit JWT
	// service checks a user's OpenID token. Dendrite serves it on the same
	// plain-HTTP listener as the client API (URL).
	Federation bool
}

// repoRoot finds the module root from this source file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// buildLocks holds one *sync.Mutex per tool: within one test process, a
// second caller waits for the first one's build and then finds the binary
// cached, while a slow build of one tool (livekit-server takes minutes)
// does not hold up another's lookup. Test processes of other packages may
// build at the same time; each writes a file of its own and renames it into
// place.
var buildLocks sync.Map

// DendriteBinary returns the path of the pinned Dendrite binary: $DENDRITE_BIN
// if set, else a build from tools/dendrite cached in the user cache
// directory under the hash of that module's go.mod and go.sum (the Go build
// cache makes a rebuild after a cache wipe a link step).
func DendriteBinary() (string, error) {
	return toolBinary("DENDRITE_BIN", "dendrite", "Dendrite", DendriteVersion, "github.com/element-hq/dendrite/cmd/dendrite")
}

// LiveKitVersion is the pinned SFU of the Element Call test bed
// (tools/livekit-server/go.mod).
const LiveKitVersion = "v1.13.5"

// LiveKitBinary returns the path of the pinned livekit-server binary:
// $LIVEKIT_BIN if set, else a build from tools/livekit-server cached like
// Dendrite's (the first build takes minutes: make tools builds it once).
func LiveKitBinary() (string, error) {
	return toolBinary("LIVEKIT_BIN", "livekit-server", "livekit-server", LiveKitVersion, "github.com/livekit/livekit-server/cmd/server")
}

// toolBinary returns $envVar if set, else builds pkg from the tools module
// tools/<dir> into the user cache directory, named after the tool, its
// version and the hash of the module's go.mod and go.sum, so that a change
// of pin builds anew and an unchanged one is found again.
func toolBinary(envVar, dir, name, version, pkg string) (string, error) {
	if bin := os.Getenv(envVar); bin != "" {
		return bin, nil
	}
	mu, _ := buildLocks.LoadOrStore(dir, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	toolDir := filepath.Join(repoRoot(), "tools", dir)
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(toolDir, f))
		if err != nil {
			return "", fmt.Errorf("reading the %s tools module: %w", name, err)
		}
		h.Write(data)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "voipbot-testbed", fmt.Sprintf("%s-%s-%s", dir, version, hex.EncodeToString(h.Sum(nil))[:12]))
	if _, err = os.Stat(bin); err == nil {
		return bin, nil
	}
	if err = os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("creating the %s build cache: %w", name, err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, pkg)
	cmd.Dir = toolDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s %s: %w\n%s", name, version, err, out)
	}
	return bin, os.Rename(tmp, bin)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

var dendriteConfig = template.Must(template.New("dendrite.yaml").Parse(`version: 2
global:
  server_name: {{.ServerName}}
  private_key: {{.Dir}}/matrix_key.pem
  key_validity_period: 168h0m0s
  database:
    max_open_conns: 10
    max_idle_conns: 2
    conn_max_lifetime: -1
  disable_federation: {{if .Federation}}false{{else}}true{{end}}
  presence:
    enable_inbound: false
    enable_outbound: false
  jetstream:
    storage_path: {{.Dir}}/jetstream
    in_memory: true
  server_notices:
    enabled: false
  report_stats:
    enabled: false
  dns_cache:
    enabled: false
app_service_api:
  disable_tls_validation: true
  config_files:
{{- range .Registrations}}
  - {{.}}
{{- end}}
client_api:
  registration_disabled: true
  registration_shared_secret: {{.SharedSecret}}
  guests_disabled: true
  rate_limiting:
    enabled: false
federation_api:
  database:
    connection_string: file:{{.Dir}}/federationapi.db
key_server:
  database:
    connection_string: file:{{.Dir}}/keyserver.db
media_api:
  database:
    connection_string: file:{{.Dir}}/mediaapi.db
  base_path: {{.Dir}}/media
room_server:
  database:
    connection_string: file:{{.Dir}}/roomserver.db
sync_api:
  database:
    connection_string: file:{{.Dir}}/syncapi.db
  search:
    enabled: false
user_api:
  bcrypt_cost: 4
  account_database:
    connection_string: file:{{.Dir}}/userapi.db
relay_api:
  database:
    connection_string: file:{{.Dir}}/relayapi.db
mscs:
  mscs: []
  database:
    connection_string: file:{{.Dir}}/mscs.db
logging:
- type: std
  level: warn
`))

// StartDendrite starts a homeserver on 127.0.0.1 with its state in dir
// (which must exist). Stop it with Stop.
func StartDendrite(dir string, opts DendriteOptions) (*Dendrite, error) {
	bin, err := DendriteBinary()
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	d := &Dendrite{SharedSecret: hex.EncodeToString(secret), dir: dir, logPath: filepath.Join(dir, "dendrite.log")}
	if err = writeMatrixKey(filepath.Join(dir, "matrix_key.pem")); err != nil {
		return nil, err
	}
	var cfg bytes.Buffer
	if err = dendriteConfig.Execute(&cfg, map[string]any{
		"ServerName": ServerName, "Dir": dir, "SharedSecret": d.SharedSecret, "Registrations": opts.AppserviceRegistrations,
		"Federation": opts.Federation,
	}); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "dendrite.yaml")
	if err = os.WriteFile(cfgPath, cfg.Bytes(), 0o600); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	d.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command(bin, "--config", cfgPath, "--http-bind-address", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Dir = dir
	if d.proc, err = proc.Start(cmd, proc.Options{Name: "dendrite", LogPath: d.logPath, Grace: 15 * time.Second}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err = d.proc.WaitHTTP(ctx, d.URL+"/_matrix/client/versions"); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// LogTail is the end of the homeserver's log, for failure messages.
func (d *Dendrite) LogTail() string {
	data, _ := os.ReadFile(d.logPath)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// Stop stops the homeserver (SIGTERM, SIGKILL after 15 s) and waits for it
// to exit.
func (d *Dendrite) Stop() {
	if d.proc != nil {
		_ = d.proc.Stop()
	}
}

// writeMatrixKey writes a fresh ed25519 signing key in Dendrite's PEM form.
func writeMatrixKey(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	seed := priv.Seed()
	block := &pem.Block{Type: "MATRIX PRIVATE KEY", Headers: map[string]string{"Key-ID": "ed25519:test"}, Bytes: seed}
	return os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

// WaitFor polls cond until it reports true, fails, or ctx ends. It is for
// conditions with no event to wait on (a process becoming ready, a row
// appearing in another process's database); the interval starts at 10 ms
// and backs off to 250 ms.
func WaitFor(ctx context.Context, cond func() (bool, error)) error {
	return poll(ctx, 10*time.Millisecond, 250*time.Millisecond, cond)
}

func poll(ctx context.Context, delay, maxDelay time.Duration, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("condition not met: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, maxDelay)
	}
}
