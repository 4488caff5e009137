// Package testbed runs real peers for end-to-end tests: a pinned Dendrite
// homeserver on loopback in a temporary directory, and Matrix test users
// with their own devices.
package testbed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/voipbot/voipbot/internal/dendrite"
)

// DendriteVersion is the pinned test homeserver (tools/dendrite/go.mod).
const DendriteVersion = dendrite.Version

// ServerName is the test homeserver's server name.
const ServerName = dendrite.ServerName

// Dendrite is a running test homeserver: a server of internal/dendrite.
type Dendrite struct {
	// URL is the client-server API base URL.
	URL          string
	SharedSecret string
	srv          *dendrite.Server
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

// StartDendrite starts a homeserver on 127.0.0.1 with its state in dir.
// Stop it with Stop.
func StartDendrite(dir string, opts DendriteOptions) (*Dendrite, error) {
	bin, err := DendriteBinary()
	if err != nil {
		return nil, err
	}
	srv, err := dendrite.Start(context.Background(), dendrite.Options{
		Binary: bin, Dir: dir, AppserviceRegistrations: opts.AppserviceRegistrations, Federation: opts.Federation,
	})
	if err != nil {
		return nil, err
	}
	return &Dendrite{URL: srv.URL, SharedSecret: srv.SharedSecret, srv: srv}, nil
}

// LogTail is the end of the homeserver's log, for failure messages.
func (d *Dendrite) LogTail() string { return d.srv.LogTail() }

// Stop stops the homeserver (SIGTERM, SIGKILL after 15 s) and waits for it
// to exit.
func (d *Dendrite) Stop() { _ = d.srv.Stop() }

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
