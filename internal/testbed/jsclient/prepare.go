package jsclient

import (
	"bytes"
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

const (
	installStamp = "node_modules/.voipbot-jsclient-stamp"
	buildStamp   = "dist/.voipbot-jsclient-stamp"
)

// Prepare makes dir (js/ beside this package) ready to run: it installs the pinned npm
// packages (npm ci) unless node_modules was installed from the same
// package.json and package-lock.json, and bundles the harness (build.mjs)
// unless dist was built from the same sources and packages. A file lock
// serialises test processes that prepare at once. npm's and esbuild's
// output goes to log.
func Prepare(ctx context.Context, dir string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".prepare.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("jsclient: %w", err)
	}
	defer lock.Close()
	if err = nodejs.Lock(ctx, lock); err != nil {
		return fmt.Errorf("jsclient: %w", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	installHash, err := nodejs.Hash(dir, []string{"package.json", "package-lock.json"}, runtime.GOOS+"/"+runtime.GOARCH)
	if err != nil {
		return fmt.Errorf("jsclient: %w", err)
	}
	if !nodejs.StampMatches(filepath.Join(dir, installStamp), installHash) {
		npm, err := exec.LookPath("npm")
		if err != nil {
			return errors.New("jsclient: npm is not installed (Debian: apt-get install npm)")
		}
		start := time.Now()
		fmt.Fprintf(log, "jsclient: npm ci in %s\n", dir)
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("jsclient: npm ci in %s: %w\n%s", dir, err, out)
		}
		if err = os.WriteFile(filepath.Join(dir, installStamp), []byte(installHash), 0o644); err != nil {
			return fmt.Errorf("jsclient: %w", err)
		}
		fmt.Fprintf(log, "jsclient: npm ci took %s\n", time.Since(start).Round(time.Millisecond))
	}

	sources := []string{"build.mjs"}
	srcFiles, err := os.ReadDir(filepath.Join(dir, "src"))
	if err != nil {
		return fmt.Errorf("jsclient: %w", err)
	}
	for _, f := range srcFiles {
		if !f.IsDir() {
			sources = append(sources, filepath.Join("src", f.Name()))
		}
	}
	buildHash, err := nodejs.Hash(dir, sources, installHash)
	if err != nil {
		return fmt.Errorf("jsclient: %w", err)
	}
	if !nodejs.StampMatches(filepath.Join(dir, buildStamp), buildHash) {
		node, err := exec.LookPath("node")
		if err != nil {
			return errors.New("jsclient: node is not installed (Debian: apt-get install nodejs npm)")
		}
		cmd := exec.CommandContext(ctx, node, "build.mjs")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("jsclient: bundling the harness: %w\n%s", err, out)
		} else if len(bytes.TrimSpace(out)) > 0 {
			_, _ = log.Write(out)
		}
		if err = os.WriteFile(filepath.Join(dir, buildStamp), []byte(buildHash), 0o644); err != nil {
			return fmt.Errorf("jsclient: %w", err)
		}
	}
	return nil
}
