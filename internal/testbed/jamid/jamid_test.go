//go:build linux

package jamid

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/dhtnode"
)

// testTimeout bounds each test; every wait inside is bounded by it.
const testTimeout = 3 * time.Minute

var hex40 = regexp.MustCompile(`^[0-9a-f]{40}$`)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// localDHT starts a dhtnode in a namespace with IPv6 off, for jamid daemons
// to join (Options.Link) and bootstrap from (the node's address).
func localDHT(t *testing.T, ctx context.Context) (*dhtnode.Network, *dhtnode.Node) {
	t.Helper()
	RequireInstalled(t)
	n := dhtnode.NewTestNetwork(t)
	require.NoError(t, DisableIPv6(n.Link))
	node, err := n.Start(ctx, dhtnode.Options{NoRateLimit: true})
	require.NoError(t, err)
	return n, node
}

// startDaemon is NewTestDaemon with timing.
func startDaemon(t *testing.T, ctx context.Context, opts Options) *Daemon {
	t.Helper()
	begin := time.Now()
	d := NewTestDaemon(t, ctx, opts)
	t.Logf("jamid (pid %d) answered on its bus after %s", d.PID(), time.Since(begin).Round(time.Millisecond))
	return d
}

// newAccount adds a loopback account, waits until it is registered and its
// device announced, and returns its local id and Jami ID.
func newAccount(t *testing.T, ctx context.Context, d *Daemon, bootstrap string, extra map[string]string) (string, string) {
	t.Helper()
	details := LoopbackAccount(bootstrap)
	for k, v := range extra {
		details[k] = v
	}
	begin := time.Now()
	acc, err := d.AddAccount(ctx, details)
	require.NoError(t, err)
	require.NoError(t, d.WaitRegistered(ctx, acc))
	registered := time.Since(begin)
	require.NoError(t, d.WaitDeviceAnnounced(ctx, acc))
	id, err := d.JamiID(ctx, acc)
	require.NoError(t, err)
	require.Regexp(t, hex40, id)
	t.Logf("account %s (Jami ID %s): REGISTERED after %s, device announced after %s",
		acc, id, registered.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	return acc, id
}

// processesUsing lists the processes whose command line or environment
// mentions dir (jamid has HOME under it, dbus-daemon its configuration).
func processesUsing(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			data, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err == nil && bytes.Contains(data, []byte(dir)) {
				cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				found = append(found, e.Name()+": "+strings.ReplaceAll(string(cmd), "\x00", " "))
				break
			}
		}
	}
	return found
}

func namespaceExists(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// TestRegisterOnLocalDHT: a jamid in a dhtnode's namespace makes an account
// that registers on the local DHT and announces its device there (dhtnode
// holds values at the account's key); the account survives a restart; Stop
// leaves no process behind.
func TestRegisterOnLocalDHT(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n, node := localDHT(t, ctx)
	d := startDaemon(t, ctx, Options{Link: n.Link})
	require.Equal(t, n.NodeIP, d.IP())
	require.Equal(t, n.HostIP, d.HostIP())

	bootstrap := node.Addr().String()
	acc, id := newAccount(t, ctx, d, bootstrap, nil)
	details, err := d.AccountDetails(ctx, acc)
	require.NoError(t, err)
	require.Equal(t, "RING", details[KeyType])
	require.Equal(t, bootstrap, details[KeyHostname])
	require.Equal(t, id, details[KeyUsername])
	v, err := d.VolatileAccountDetails(ctx, acc)
	require.NoError(t, err)
	require.Equal(t, StateRegistered, v[KeyRegistration])
	require.Equal(t, "true", v[KeyDeviceAnnounced])
	require.Len(t, v[KeyDeviceID], 64)
	devKey, err := d.DeviceKeyID(ctx, acc)
	require.NoError(t, err)
	require.Regexp(t, hex40, devKey)

	// The registration went through the local dhtnode: it stores the
	// device announcement at the account's key and the device's
	// certificate at the device key's id.
	for _, key := range []string{id, devKey} {
		values, err := node.Get(ctx, key)
		if err != nil && !errors.Is(err, dhtnode.ErrFailed) {
			require.NoError(t, err)
		}
		require.NotEmpty(t, values, "dhtnode holds nothing at %s", key)
		t.Logf("dhtnode holds %d value(s) at %s, e.g. %s", len(values), key, values[0].Printed)
	}
	require.NoError(t, DisableIPv6(n.Link), "the namespace must have no IPv6 address")

	// Restart: the account comes back from jamid's configuration.
	begin := time.Now()
	require.NoError(t, d.Restart(ctx))
	accounts, err := d.AccountList(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{acc}, accounts)
	require.NoError(t, d.WaitRegistered(ctx, acc))
	t.Logf("restarted and registered again in %s", time.Since(begin).Round(time.Millisecond))

	jamidPID, busPID := d.PID(), d.BusPID()
	begin = time.Now()
	require.NoError(t, d.Stop())
	t.Logf("stopped in %s", time.Since(begin).Round(time.Millisecond))
	require.Empty(t, processesUsing(t, d.Dir()), "processes left after Stop")
	for _, pid := range []int{jamidPID, busPID} {
		_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
		require.True(t, os.IsNotExist(err), "process %d still exists", pid)
	}
	_, err = os.Stat(d.Dir())
	require.True(t, os.IsNotExist(err), "the temporary folder is removed")
	require.NotEmpty(t, d.Log(), "the log is kept after Stop")
	require.Contains(t, d.Log(), "Jami Daemon 13.7.0")
}

// TestOwnNamespace: without Options.Link the daemon makes a namespace of
// its own (IPv4 only) and Stop deletes it.
func TestOwnNamespace(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	var copied bytes.Buffer // written until Stop returns
	d := startDaemon(t, ctx, Options{Log: &copied})
	name := d.Link().Name
	require.True(t, namespaceExists(t, name))
	require.True(t, d.IP().Is4() && d.HostIP().Is4())
	out, err := d.Link().Command("ip", "-6", "-o", "addr", "show").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "IPv6 addresses in jamid's namespace")
	tmpl, err := d.AccountTemplate(ctx, "RING")
	require.NoError(t, err)
	require.Equal(t, "RING", tmpl[KeyType])
	require.NoError(t, d.Stop())
	require.False(t, namespaceExists(t, name), "namespace %s left after Stop", name)
	require.Empty(t, processesUsing(t, d.Dir()))
	require.Equal(t, d.Log(), copied.String(), "Options.Log gets the same lines")
	require.NotContains(t, copied.String(), "\x1b[", "no colour codes")
}

// TestCallBetweenDaemons: two jamid daemons share a dhtnode's namespace; an
// account of one calls an account of the other by its Jami ID, the callee
// gets the incoming call and answers by itself (Account.autoAnswer). Then
// FindAccount and FindCertificate tell a registered account from an
// unknown one.
func TestCallBetweenDaemons(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n, node := localDHT(t, ctx)
	bootstrap := node.Addr().String()
	caller := startDaemon(t, ctx, Options{Link: n.Link, CaptureToneHz: 660})
	callee := startDaemon(t, ctx, Options{Link: n.Link, RecordPlayback: true})
	a, aID := newAccount(t, ctx, caller, bootstrap, nil)
	b, bID := newAccount(t, ctx, callee, bootstrap, map[string]string{KeyAutoAnswer: "true"})

	begin := time.Now()
	// Audio only: jamid 13.7.0 has segfaulted (once, in CI) while stopping
	// the media of an audio and video call on hangUp, and nothing here is
	// about video (the testbed has no camera).
	callID, err := caller.PlaceCallWithMedia(ctx, a, bID, AudioMedia())
	require.NoError(t, err)
	in, err := callee.WaitIncomingCall(ctx, b, aID)
	require.NoError(t, err)
	t.Logf("callee got the incoming call %s from %s after %s (media %v)",
		in.CallID, in.From, time.Since(begin).Round(time.Millisecond), in.Media)
	require.Equal(t, aID, in.PeerID())
	require.NotEmpty(t, in.Media)
	_, err = caller.WaitCallState(ctx, a, callID, CallRinging)
	require.NoError(t, err)
	_, err = caller.WaitCallState(ctx, a, callID, CallCurrent)
	require.NoError(t, err)
	_, err = callee.WaitCallState(ctx, b, in.CallID, CallCurrent)
	require.NoError(t, err)
	t.Logf("call CURRENT on both sides after %s; caller's states %v, callee's %v",
		time.Since(begin).Round(time.Millisecond), caller.CallStates(a, callID), callee.CallStates(b, in.CallID))
	// The caller's "microphone" tone is what the callee plays.
	heard, err := callee.WaitHears(ctx, 0, 660, 25)
	require.NoError(t, err)
	t.Logf("the callee plays %v, %s after dialling (jamid → jamid setup, dial to media)", heard, time.Since(begin).Round(time.Millisecond))

	require.NoError(t, caller.HangUp(ctx, a, callID))
	_, err = caller.WaitCallState(ctx, a, callID, CallOver)
	require.NoError(t, err)
	_, err = callee.WaitCallState(ctx, b, in.CallID, CallOver)
	require.NoError(t, err)
	t.Logf("hung up; callee's states %v", callee.CallStates(b, in.CallID))

	// FindAccount: the callee is found; an account nobody announced is
	// not, at once.
	found, err := caller.FindAccount(ctx, a, bID)
	require.NoError(t, err)
	t.Logf("FindAccount(registered) after %s: %+v", found.Elapsed.Round(time.Millisecond), found)
	require.True(t, found.Found)
	unknown := strings.Repeat("0123456789", 4)
	missing, err := caller.FindAccount(ctx, a, unknown)
	require.NoError(t, err)
	t.Logf("FindAccount(unknown) after %s: %+v", missing.Elapsed.Round(time.Millisecond), missing)
	require.False(t, missing.Found)
	require.Equal(t, "FAILURE", caller.CallStates(a, missing.CallID)[0].State)
	require.EqualValues(t, 6, caller.CallStates(a, missing.CallID)[0].Code, "ENXIO: no device")

	// A third daemon, without a connection to the callee yet: FindAccount
	// sees jamid ask the callee's device for one.
	third := startDaemon(t, ctx, Options{Link: n.Link})
	c, _ := newAccount(t, ctx, third, bootstrap, nil)
	fresh, err := third.FindAccount(ctx, c, bID)
	require.NoError(t, err)
	t.Logf("FindAccount(registered, no connection yet) after %s: %+v", fresh.Elapsed.Round(time.Millisecond), fresh)
	require.True(t, fresh.Found)
	_, err = third.WaitCallState(ctx, c, fresh.CallID, CallOver)
	require.NoError(t, err, "the probe call is hung up")

	// FindCertificate: the callee's device certificate is on the DHT. (Ask
	// a daemon without a connection to the callee: a daemon's certificate
	// store keeps the certificates of the peers it talked to.)
	fourth := startDaemon(t, ctx, Options{Link: n.Link})
	e, _ := newAccount(t, ctx, fourth, bootstrap, nil)
	devKey, err := callee.DeviceKeyID(ctx, b)
	require.NoError(t, err)
	begin = time.Now()
	require.NoError(t, fourth.FindCertificate(ctx, e, devKey))
	t.Logf("FindCertificate(callee's device %s) in %s", devKey, time.Since(begin).Round(time.Millisecond))
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err = fourth.FindCertificate(short, e, unknown)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// The callee's daemon goes away: its device announcement stays on the
	// DHT (values live 10 minutes), so FindAccount still finds the account
	// although nobody answers. Found means "announced", not "reachable".
	require.NoError(t, callee.Stop())
	gone, err := fourth.FindAccount(ctx, e, bID)
	require.NoError(t, err)
	t.Logf("FindAccount(stopped daemon's account) after %s: %+v", gone.Elapsed.Round(time.Millisecond), gone)
	require.True(t, gone.Found)
}

// TestCallWithinOneDaemon: two accounts of one jamid; the callee accepts
// the call itself (Accept), then hangs up.
func TestCallWithinOneDaemon(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n, node := localDHT(t, ctx)
	d := startDaemon(t, ctx, Options{Link: n.Link})
	bootstrap := node.Addr().String()
	a, aID := newAccount(t, ctx, d, bootstrap, nil)
	b, bID := newAccount(t, ctx, d, bootstrap, nil)

	begin := time.Now()
	callID, err := d.PlaceAudioCall(ctx, a, bID)
	require.NoError(t, err)
	in, err := d.WaitIncomingCall(ctx, b, aID)
	require.NoError(t, err)
	t.Logf("incoming call after %s", time.Since(begin).Round(time.Millisecond))
	require.Len(t, in.Media, 1, "an audio-only call")
	require.Equal(t, "MEDIA_TYPE_AUDIO", in.Media[0]["MEDIA_TYPE"])
	_, err = d.WaitCallState(ctx, a, callID, CallRinging)
	require.NoError(t, err)
	require.NoError(t, d.Accept(ctx, b, in.CallID))
	_, err = d.WaitCallState(ctx, a, callID, CallCurrent)
	require.NoError(t, err)
	t.Logf("CURRENT after %s", time.Since(begin).Round(time.Millisecond))
	details, err := d.CallDetails(ctx, b, in.CallID)
	require.NoError(t, err)
	require.Equal(t, "CURRENT", details["CALL_STATE"])

	require.NoError(t, d.HangUp(ctx, b, in.CallID))
	_, err = d.WaitCallState(ctx, a, callID, CallOver)
	require.NoError(t, err)
	t.Logf("caller's states %v", d.CallStates(a, callID))

	// A contact.
	require.NoError(t, d.AddContact(ctx, a, bID))
	contacts, err := d.Contacts(ctx, a)
	require.NoError(t, err)
	var ids []string
	for _, c := range contacts {
		ids = append(ids, c["id"])
	}
	require.Contains(t, ids, bID)
}

// TestImportArchive: an account exported to an archive file, without and
// with a password, is imported into another jamid with the same Jami ID;
// a wrong password fails the import.
func TestImportArchive(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n, node := localDHT(t, ctx)
	bootstrap := node.Addr().String()
	src := startDaemon(t, ctx, Options{Link: n.Link})
	dst := startDaemon(t, ctx, Options{Link: n.Link})
	a, aID := newAccount(t, ctx, src, bootstrap, nil)

	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.gz")
	secret := filepath.Join(dir, "secret.gz")
	require.NoError(t, src.ExportArchive(ctx, a, plain, ""))
	require.NoError(t, src.ChangeArchivePassword(ctx, a, "", "s3cret"))
	require.NoError(t, src.ExportArchive(ctx, a, secret, "s3cret"))

	for _, tc := range []struct{ path, password string }{{plain, ""}, {secret, "s3cret"}} {
		begin := time.Now()
		acc, err := dst.ImportAccount(ctx, bootstrap, tc.path, tc.password)
		require.NoError(t, err, "importing %s", tc.path)
		id, err := dst.JamiID(ctx, acc)
		require.NoError(t, err)
		require.Equal(t, aID, id)
		t.Logf("imported %s (password %q) as %s, registered after %s",
			filepath.Base(tc.path), tc.password, acc, time.Since(begin).Round(time.Millisecond))
		require.NoError(t, dst.RemoveAccount(ctx, acc))
	}

	begin := time.Now()
	_, err := dst.ImportAccount(ctx, bootstrap, secret, "wrong")
	require.Error(t, err)
	require.Contains(t, err.Error(), "ERROR_GENERIC")
	t.Logf("wrong password refused after %s: %v", time.Since(begin).Round(time.Millisecond), err)
}
