package qbclient

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
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
	// SDKVersion is the pinned QuickBlox JS SDK (npm quickblox).
	SDKVersion = "2.23.0"
	// sdkIntegrity is the npm registry's integrity of quickblox-2.23.0.tgz
	// (npm view quickblox@2.23.0 dist.integrity): the tarball is checked
	// against it before anything of it is used.
	sdkIntegrity = "sha512-ADSPBeiIUnsvY7unpjZ/HR4w9f/u4gzaW+QLcOErCAtb1UTX+FKZ886hci9xeqJW0UlPWhL8nOxrlY1jTExjMw=="
	// sdkFiles are what the page needs of the tarball (the browser bundle)
	// and what must come with any copy of it (its licence).
	sdkBundle  = "quickblox.min.js"
	sdkLicense = "LICENSE.md"

	installStamp = "node_modules/.voipbot-qbclient-stamp"
	sdkStamp     = "vendor/.voipbot-qbclient-stamp"
)

// JSDir is js/ beside this package's source: package.json, the driver and
// the page.
func JSDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "js")
}

// Prepare makes dir (JSDir by default) ready to run: it installs the
// pinned npm packages (npm ci: playwright-core) unless node_modules was
// installed from the same package.json and package-lock.json, and unpacks
// the SDK's browser bundle into vendor/ unless it is there at the pinned
// version. A file lock serialises test processes that prepare at once.
// npm's output goes to log.
//
// The SDK is not an npm dependency: `npm install quickblox` fails, for one
// of its Node-only dependencies is a git tarball from a code host that
// cannot be reached, and the browser bundle needs none of them. So its
// tarball is fetched alone (npm pack, through npm's cache), checked
// against the pinned integrity, and only the bundle and its licence are
// taken from it.
func Prepare(ctx context.Context, dir string, log io.Writer) error {
	if dir == "" {
		dir = JSDir()
	}
	if log == nil {
		log = io.Discard
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".prepare.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("qbclient: %w", err)
	}
	defer lock.Close()
	if err = nodejs.Lock(ctx, lock); err != nil {
		return fmt.Errorf("qbclient: %w", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()

	npm, err := exec.LookPath("npm")
	if err != nil {
		return errors.New("qbclient: npm is not installed (Debian: apt-get install npm)")
	}
	hash, err := nodejs.Hash(dir, []string{"package.json", "package-lock.json"}, runtime.GOOS+"/"+runtime.GOARCH)
	if err != nil {
		return fmt.Errorf("qbclient: %w", err)
	}
	if !nodejs.StampMatches(filepath.Join(dir, installStamp), hash) {
		start := time.Now()
		fmt.Fprintf(log, "qbclient: npm ci in %s\n", dir)
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("qbclient: npm ci in %s: %w\n%s", dir, err, out)
		}
		if err = os.WriteFile(filepath.Join(dir, installStamp), []byte(hash), 0o644); err != nil {
			return fmt.Errorf("qbclient: %w", err)
		}
		fmt.Fprintf(log, "qbclient: npm ci took %s\n", time.Since(start).Round(time.Millisecond))
	}
	if nodejs.StampMatches(filepath.Join(dir, sdkStamp), sdkIntegrity) {
		return nil
	}
	return unpackSDK(ctx, npm, dir, log)
}

// unpackSDK fetches the pinned SDK tarball with npm pack, checks it, and
// puts its bundle and licence into dir/vendor (replaced whole, by a
// rename).
func unpackSDK(ctx context.Context, npm, dir string, log io.Writer) error {
	start := time.Now()
	tmp, err := os.MkdirTemp(dir, ".vendor-*.tmp")
	if err != nil {
		return fmt.Errorf("qbclient: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	fmt.Fprintf(log, "qbclient: npm pack quickblox@%s\n", SDKVersion)
	// Run in the temporary folder, not in dir: npm pack of a spec fetches
	// it from the registry and touches no project.
	cmd := exec.CommandContext(ctx, npm, "pack", "quickblox@"+SDKVersion, "--loglevel=error")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("qbclient: npm pack quickblox@%s: %w\n%s", SDKVersion, err, out)
	}
	tgz := filepath.Join(tmp, "quickblox-"+SDKVersion+".tgz")
	data, err := os.ReadFile(tgz)
	if err != nil {
		return fmt.Errorf("qbclient: npm pack quickblox@%s: %w", SDKVersion, err)
	}
	sum := sha512.Sum512(data)
	if got := "sha512-" + base64.StdEncoding.EncodeToString(sum[:]); got != sdkIntegrity {
		return fmt.Errorf("qbclient: quickblox-%s.tgz has integrity %s, not the pinned %s", SDKVersion, got, sdkIntegrity)
	}
	out := filepath.Join(tmp, "vendor")
	if err = os.Mkdir(out, 0o755); err != nil {
		return fmt.Errorf("qbclient: %w", err)
	}
	if err = extract(tgz, out, map[string]string{"package/" + sdkBundle: sdkBundle, "package/" + sdkLicense: sdkLicense}); err != nil {
		return fmt.Errorf("qbclient: unpacking quickblox-%s.tgz: %w", SDKVersion, err)
	}
	if err = os.WriteFile(filepath.Join(out, "VERSION"), []byte("quickblox "+SDKVersion+"\n"), 0o644); err != nil {
		return fmt.Errorf("qbclient: %w", err)
	}
	if err = os.WriteFile(filepath.Join(out, filepath.Base(sdkStamp)), []byte(sdkIntegrity), 0o644); err != nil {
		return fmt.Errorf("qbclient: %w", err)
	}
	vendor := filepath.Join(dir, "vendor")
	if err = os.RemoveAll(vendor); err != nil {
		return fmt.Errorf("qbclient: %w", err)
	}
	if err = os.Rename(out, vendor); err != nil {
		return fmt.Errorf("qbclient: %w", err)
	}
	fmt.Fprintf(log, "qbclient: the QuickBlox SDK %s unpacked in %s\n", SDKVersion, time.Since(start).Round(time.Millisecond))
	return nil
}

// extract writes the tarball's files named in want (tarball path → file
// name in dir) into dir, and fails if one is missing.
func extract(tgz, dir string, want map[string]string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	found := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name, ok := want[h.Name]
		if !ok || h.Typeflag != tar.TypeReg {
			continue
		}
		w, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		_, err = io.Copy(w, io.LimitReader(tr, 64<<20))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		found++
	}
	if found != len(want) {
		return fmt.Errorf("%d of the %d files wanted are in it", found, len(want))
	}
	return nil
}
