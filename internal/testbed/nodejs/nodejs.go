// Package nodejs is what the test bed's browser drivers (jsclient for
// matrix-js-sdk, elementcall for Element Call) share about their Node.js
// projects: finding a node recent enough for playwright-core, locking a
// project while its npm packages are installed, and hashing what an
// install or a build was made from (the stamps that let it be skipped).
package nodejs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MinMajor is playwright-core's minimum node version.
const MinMajor = 20

// Find returns node's path, if it is recent enough for playwright-core.
func Find(ctx context.Context) (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("node is not installed (node %d or later, and npm)", MinMajor)
	}
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", node, err)
	}
	version := strings.TrimSpace(string(out))
	major, _, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < MinMajor {
		return "", fmt.Errorf("%s is node %s; playwright-core needs node %d or later (Debian bookworm's nodejs is 18)", node, version, MinMajor)
	}
	return node, nil
}

// Lock takes an exclusive lock on f (a project's lock file), giving up
// when ctx ends: test processes of several packages prepare at once.
func Lock(ctx context.Context, f *os.File) error {
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for another process preparing %s: %w", filepath.Dir(f.Name()), ctx.Err())
		case <-time.After(delay):
		}
	}
}

// Hash is a hash of the named files of dir (in name order) and extra.
func Hash(dir string, names []string, extra string) (string, error) {
	names = slices.Sorted(slices.Values(names))
	h := sha256.New()
	h.Write([]byte(extra))
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "\x00%s\x00%d\x00", name, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// StampMatches says whether the stamp file at path holds hash.
func StampMatches(path, hash string) bool {
	data, err := os.ReadFile(path)
	return err == nil && string(data) == hash
}
