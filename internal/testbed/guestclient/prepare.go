package guestclient

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

const installStamp = "node_modules/.voipbot-guestclient-stamp"

// JSDir is js/ beside this package's source: package.json, its lock and
// the driver.
func JSDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "js")
}

// Prepare makes dir (JSDir by default) ready to run: it installs the
// pinned npm packages (npm ci: playwright-core) unless node_modules was
// installed from the same package.json and package-lock.json. A file lock
// serialises test processes that prepare at once. npm's output goes to
// log.
func Prepare(ctx context.Context, dir string, log io.Writer) error {
	if dir == "" {
		dir = JSDir()
	}
	if log == nil {
		log = io.Discard
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".prepare.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("guestclient: %w", err)
	}
	defer lock.Close()
	if err = nodejs.Lock(ctx, lock); err != nil {
		return fmt.Errorf("guestclient: %w", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	hash, err := nodejs.Hash(dir, []string{"package.json", "package-lock.json"}, runtime.GOOS+"/"+runtime.GOARCH)
	if err != nil {
		return fmt.Errorf("guestclient: %w", err)
	}
	if nodejs.StampMatches(filepath.Join(dir, installStamp), hash) {
		return nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return errors.New("guestclient: npm is not installed (Debian: apt-get install npm)")
	}
	start := time.Now()
	fmt.Fprintf(log, "guestclient: npm ci in %s\n", dir)
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("guestclient: npm ci in %s: %w\n%s", dir, err, out)
	}
	if err = os.WriteFile(filepath.Join(dir, installStamp), []byte(hash), 0o644); err != nil {
		return fmt.Errorf("guestclient: %w", err)
	}
	fmt.Fprintf(log, "guestclient: npm ci took %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}
