package elementcall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/voipbot/voipbot/internal/testbed/nodejs"
)

// Version is the pinned Element Call (js/package.json).
const Version = "0.26.1"

// installStamp records the package.json and package-lock.json node_modules
// was installed from.
const installStamp = "node_modules/.voipbot-elementcall-stamp"

// distPath is Element Call's built web application inside js/.
const distPath = "node_modules/@element-hq/element-call-embedded/dist"

// JSDir is js/ beside this package's source: package.json, the driver and
// the page script.
func JSDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "js")
}

// Dist is Element Call's dist/ (index.html, assets/, config.json) in the
// JavaScript project dir, as Prepare installs it.
func Dist(dir string) string { return filepath.Join(dir, distPath) }

// Prepare makes dir (JSDir by default) ready to run: it installs the pinned
// npm packages (npm ci: Element Call and playwright-core) unless
// node_modules was installed from the same package.json and
// package-lock.json. A file lock serialises test processes that prepare at
// once. npm's output goes to log.
func Prepare(ctx context.Context, dir string, log io.Writer) error {
	if dir == "" {
		dir = JSDir()
	}
	if log == nil {
		log = io.Discard
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".prepare.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("elementcall: %w", err)
	}
	defer lock.Close()
	if err = nodejs.Lock(ctx, lock); err != nil {
		return fmt.Errorf("elementcall: %w", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	hash, err := nodejs.Hash(dir, []string{"package.json", "package-lock.json"}, runtime.GOOS+"/"+runtime.GOARCH)
	if err != nil {
		return fmt.Errorf("elementcall: %w", err)
	}
	if nodejs.StampMatches(filepath.Join(dir, installStamp), hash) {
		return checkDist(dir)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return errors.New("elementcall: npm is not installed (Debian: apt-get install npm)")
	}
	start := time.Now()
	fmt.Fprintf(log, "elementcall: npm ci in %s\n", dir)
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("elementcall: npm ci in %s: %w\n%s", dir, err, out)
	}
	if err = checkDist(dir); err != nil {
		return err
	}
	if err = os.WriteFile(filepath.Join(dir, installStamp), []byte(hash), 0o644); err != nil {
		return fmt.Errorf("elementcall: %w", err)
	}
	fmt.Fprintf(log, "elementcall: npm ci took %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// checkDist fails unless the package holds the standalone application.
func checkDist(dir string) error {
	for _, f := range []string{"index.html", "assets"} {
		if _, err := os.Stat(filepath.Join(Dist(dir), f)); err != nil {
			return fmt.Errorf("elementcall: Element Call %s is not installed in %s: %w", Version, dir, err)
		}
	}
	return nil
}
