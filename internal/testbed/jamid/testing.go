//go:build linux

package jamid

import (
	"context"
	"os"
	"testing"
)

// RequireInstalled fails the test (it does not skip it) when jami-daemon,
// dbus-daemon or iproute2 are missing or the test does not run as root,
// saying how to get them.
func RequireInstalled(t testing.TB) {
	t.Helper()
	if err := Installed(); err != nil {
		t.Fatalf("this test needs Debian's jami-daemon (jamid 13.7.0) and a private dbus-daemon: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root: it runs jamid in a network namespace")
	}
}

// NewTestDaemon is Start for a test: it fails the test when jamid cannot
// run (RequireInstalled) or start, and stops the daemon when the test ends,
// logging the end of jamid's output if the test failed. A crash of jamid
// during the test fails it too (see Stop).
func NewTestDaemon(t testing.TB, ctx context.Context, opts Options) *Daemon {
	t.Helper()
	RequireInstalled(t)
	d, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting jamid: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("jamid (pid %d, folder %s) output, last lines:\n%s", d.PID(), d.Dir(), d.LogTail(12000))
		}
		if err := d.Stop(); err != nil {
			t.Errorf("stopping jamid: %v", err)
		}
	})
	return d
}
