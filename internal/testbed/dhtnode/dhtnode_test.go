//go:build linux

// OpenDHT writes a random int64's bytes as its certificates' serial number,
// negative in DER half of the time, which crypto/x509 refuses since Go 1.23
// unless x509negativeserial=1.
//
//go:debug x509negativeserial=1
package dhtnode

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// testTimeout bounds each test; every wait inside is bounded by it.
const testTimeout = 90 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// pair starts two nodes, b bootstrapped from a, and waits until each knows
// the other.
func pair(t *testing.T, ctx context.Context, n *Network, opts Options) (a, b *Node) {
	t.Helper()
	begin := time.Now()
	nodes, err := n.StartN(ctx, 2, opts)
	require.NoError(t, err)
	t.Logf("two nodes (%s, %s) connected in %s", nodes[0].Addr(), nodes[1].Addr(), time.Since(begin).Round(time.Millisecond))
	return nodes[0], nodes[1]
}

// getUntil polls node's Get of key until a value satisfies ok: the DHT
// sends no event when a value becomes reachable.
func getUntil(t *testing.T, ctx context.Context, node *Node, key string, ok func(Value) bool) Value {
	t.Helper()
	begin := time.Now()
	var delay time.Duration
	for {
		values, err := node.Get(ctx, key)
		if err != nil && !errors.Is(err, ErrFailed) {
			require.NoError(t, err)
		}
		for _, v := range values {
			if ok(v) {
				t.Logf("%s: %s after %s", key, v.Printed, time.Since(begin).Round(time.Millisecond))
				return v
			}
		}
		delay = pollBackoff(delay)
		select {
		case <-ctx.Done():
			t.Fatalf("%s: no matching value on node %s (last: %v, %v)", key, node.Addr(), values, err)
		case <-time.After(delay):
		}
	}
}

func textIs(s string) func(Value) bool {
	return func(v Value) bool { return v.Text() == s }
}

// TestPutGetAcrossNodes: a value put on one node is read from the other,
// and a python DhtRunner reads it too and puts one the node reads.
func TestPutGetAcrossNodes(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n := NewTestNetwork(t)
	a, b := pair(t, ctx, n, Options{NoRateLimit: true})
	require.Len(t, a.NodeID(), 40)
	require.NotEqual(t, a.NodeID(), b.NodeID())
	require.Empty(t, a.PublicKeyID(), "no identity without -i")

	id, err := a.Put(ctx, "harness-key", "hello-from-a")
	require.NoError(t, err)
	require.NotZero(t, id)
	v := getUntil(t, ctx, b, "harness-key", textIs("hello-from-a"))
	require.Equal(t, id, v.ID)
	require.Equal(t, "text/plain", v.UserType)
	require.False(t, v.Signed || v.Encrypted)

	// python3-opendht: reads a's value, and puts one that a reads.
	begin := time.Now()
	out, err := n.RunPython(ctx, PythonPrelude+`
key = dht.InfoHash.get("harness-key")
for _ in range(100):
    values = r.get(key)
    if values:
        break
    time.sleep(0.1)
for v in values:
    print("GOT", v.id, v.user_type, v.data.decode())
r.put(dht.InfoHash.get("py-key"), dht.Value(b"hello-from-python"))
print("PUT", flush=True)
r.shutdown()
`)
	require.NoError(t, err)
	t.Logf("python ran in %s:\n%s", time.Since(begin).Round(time.Millisecond), out)
	require.Contains(t, out, "text/plain hello-from-a")
	require.Contains(t, out, "PUT")
	v = getUntil(t, ctx, a, "py-key", textIs("hello-from-python"))
	require.Empty(t, v.UserType, "python's Value(bytes) has no user type")
	require.Equal(t, "data:"+hex.EncodeToString([]byte("hello-from-python")), v.Body)
}

// TestListen: a listen on one node hears a put on the other, ends with its
// context, and the node can listen again.
func TestListen(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n := NewTestNetwork(t)
	a, b := pair(t, ctx, n, Options{NoRateLimit: true})

	lctx, stop := context.WithCancel(ctx)
	values, err := b.Listen(lctx, "listen-key")
	require.NoError(t, err)
	_, err = b.Listen(ctx, "other-key")
	require.ErrorIs(t, err, ErrListenBusy)

	begin := time.Now()
	_, err = a.Put(ctx, "listen-key", "first")
	require.NoError(t, err)
	select {
	case v := <-values:
		require.Equal(t, "first", v.Text())
		require.False(t, v.Expired)
		t.Logf("listen heard %s after %s", v.Printed, time.Since(begin).Round(time.Millisecond))
	case <-ctx.Done():
		t.Fatal("the listen heard nothing")
	}
	stop()
	for range values {
	}

	// Again on another key: the old listen is cancelled in dhtnode first.
	values, err = b.Listen(ctx, "listen-key-2")
	require.NoError(t, err)
	_, err = a.Put(ctx, "listen-key-2", "second")
	require.NoError(t, err)
	select {
	case v := <-values:
		require.Equal(t, "second", v.Text())
	case <-ctx.Done():
		t.Fatal("the second listen heard nothing")
	}
	// The first key's values no longer reach the (new) listen.
	_, err = a.Put(ctx, "listen-key", "late")
	require.NoError(t, err)
	_, err = a.Put(ctx, "listen-key-2", "third")
	require.NoError(t, err)
	v := <-values
	require.Equal(t, "third", v.Text(), "a value of the cancelled listen's key leaked into the new one")
}

// TestPythonListen: a python listener (StartPython, WaitOutput) hears a
// dhtnode's put.
func TestPythonListen(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n := NewTestNetwork(t)
	a, _ := pair(t, ctx, n, Options{NoRateLimit: true})
	py, err := n.StartPython(ctx, PythonPrelude+`
def heard(v, expired):
    print("HEARD", v.data.decode(), expired, flush=True)
    return True
r.listen(dht.InfoHash.get("py-listen"), heard)
print("LISTENING", flush=True)
time.sleep(600)
`)
	require.NoError(t, err)
	_, err = py.WaitOutput(ctx, "LISTENING")
	require.NoError(t, err)
	begin := time.Now()
	_, err = a.Put(ctx, "py-listen", "to-python")
	require.NoError(t, err)
	line, err := py.WaitOutput(ctx, "HEARD")
	require.NoError(t, err)
	require.Equal(t, "HEARD to-python False", line)
	t.Logf("python heard the put after %s", time.Since(begin).Round(time.Millisecond))
	py.Stop()
	_, err = py.Wait()
	require.Error(t, err, "killed")
}

// TestConcurrentCommands: commands from several goroutines are sent one at
// a time, each getting its own output.
func TestConcurrentCommands(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n := NewTestNetwork(t)
	a, b := pair(t, ctx, n, Options{NoRateLimit: true})
	var g errgroup.Group
	for i := range 8 {
		g.Go(func() error {
			key, value := fmt.Sprintf("c%d", i), fmt.Sprintf("v%d", i)
			if _, err := a.Put(ctx, key, value); err != nil {
				return err
			}
			if _, err := b.Stats(ctx); err != nil {
				return err
			}
			values, err := a.Get(ctx, key)
			if err != nil {
				return err
			}
			if len(values) != 1 || values[0].Text() != value {
				return fmt.Errorf("%s: got %v, want %s", key, values, value)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
}

// TestSignedAndEncrypted: with identities (-i), a signed put is read as
// signed by another node, and an encrypted put is decrypted by its
// recipient only.
func TestSignedAndEncrypted(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n := NewTestNetwork(t)
	a, b := pair(t, ctx, n, Options{Identity: true, NoRateLimit: true})
	require.Len(t, a.PublicKeyID(), 40)
	require.NotEqual(t, a.PublicKeyID(), b.PublicKeyID())
	plain, err := n.Start(ctx, Options{Bootstrap: a.Addr().String(), NoRateLimit: true})
	require.NoError(t, err)
	require.NoError(t, plain.WaitConnected(ctx, 1))

	require.NoError(t, a.PutSigned(ctx, "signed-key", "signed-by-a"))
	v := getUntil(t, ctx, b, "signed-key", textIs("signed-by-a"))
	require.True(t, v.Signed)
	require.False(t, v.Decrypted)
	require.Equal(t, "text/plain", v.UserType)
	require.ErrorIs(t, plain.PutSigned(ctx, "signed-key", "x"), ErrNoIdentity)

	require.NoError(t, b.PutEncrypted(ctx, "secret-key", a.PublicKeyID(), "for-a-only"))
	v = getUntil(t, ctx, a, "secret-key", textIs("for-a-only"))
	require.True(t, v.Decrypted)
	require.True(t, v.Signed)
	// Other nodes, with an identity or without, drop what they cannot
	// decrypt (SecureDht::checkValue) rather than print it.
	for _, other := range []*Node{b, plain} {
		values, err := other.Get(ctx, "secret-key")
		require.NoError(t, err)
		require.Empty(t, values, "node %s", other.Addr())
	}
}

// TestStartN: three nodes bootstrapped from the first; a value put on the
// last is read on the second.
func TestStartN(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n := NewTestNetwork(t)
	begin := time.Now()
	nodes, err := n.StartN(ctx, 3, Options{NoRateLimit: true})
	require.NoError(t, err)
	t.Logf("three nodes connected in %s", time.Since(begin).Round(time.Millisecond))
	require.Equal(t, nodes, n.Nodes())
	ports := map[int]bool{}
	for _, node := range nodes {
		ports[node.Port()] = true
	}
	require.Len(t, ports, 3)
	_, err = nodes[2].Put(ctx, "star", "from-the-last")
	require.NoError(t, err)
	getUntil(t, ctx, nodes[1], "star", textIs("from-the-last"))
	s, err := nodes[0].Stats(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, s.IPv4.Good+s.IPv4.Dubious, 2, "%+v", s)
}

// TestBootstrapCommand: two nodes of another network id (-n) that were
// started apart connect when one is told of the other (b).
func TestBootstrapCommand(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n := NewTestNetwork(t)
	opts := Options{NetworkID: 7, NoRateLimit: true, Verbose: true}
	a, err := n.Start(ctx, opts)
	require.NoError(t, err)
	b, err := n.Start(ctx, opts)
	require.NoError(t, err)
	require.NoError(t, b.Bootstrap(ctx, a.Addr().String()))
	require.NoError(t, a.WaitConnected(ctx, 1))
	require.NoError(t, b.WaitConnected(ctx, 1))
	require.Contains(t, a.LogTail(), "dhtnode-4222.log", "Verbose logs to a file")
	require.Error(t, b.Bootstrap(ctx, "bad address"))
}

// TestGoReachesNode: a Go UDP socket pings a dhtnode (a hand-made OpenDHT
// ping, jami-dht.md §1.3) across the veth pair, and from inside the
// namespace on 127.0.0.1 (Network.Do).
func TestGoReachesNode(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n := NewTestNetwork(t)
	node, err := n.Start(ctx, Options{})
	require.NoError(t, err)
	nodeID, err := hex.DecodeString(node.NodeID())
	require.NoError(t, err)

	// Across the veth pair, from this namespace.
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(n.HostIP, 0)))
	require.NoError(t, err)
	defer conn.Close()
	ping(t, ctx, conn, node.Addr(), nodeID)

	// Inside the namespace: the socket is made there and used here.
	var inside *net.UDPConn
	require.NoError(t, n.Do(func() error {
		var err error
		inside, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	}))
	defer inside.Close()
	ping(t, ctx, inside, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(node.Port())), nodeID)
	// This goroutine's namespace is untouched: 127.0.0.1 here has no dhtnode.
	_, err = os.Stat("/proc/thread-self/ns/net")
	require.NoError(t, err)
}

// ping sends an OpenDHT ping from conn to addr and checks that the reply
// carries nodeID.
func ping(t *testing.T, ctx context.Context, conn *net.UDPConn, addr netip.AddrPort, nodeID []byte) {
	t.Helper()
	myID := make([]byte, 20)
	_, _ = rand.Read(myID)
	const tid = 0x01020304
	// {"a":{"id":bin20},"q":"ping","t":uint32,"y":"q","v":"RNG1"}
	msg := []byte{0x85, 0xa1, 'a', 0x81, 0xa2, 'i', 'd', 0xc4, 20}
	msg = append(msg, myID...)
	msg = append(msg, 0xa1, 'q', 0xa4, 'p', 'i', 'n', 'g', 0xa1, 't', 0xce)
	msg = binary.BigEndian.AppendUint32(msg, tid)
	msg = append(msg, 0xa1, 'y', 0xa1, 'q', 0xa1, 'v', 0xa4, 'R', 'N', 'G', '1')
	deadline, _ := ctx.Deadline()
	require.NoError(t, conn.SetReadDeadline(deadline))
	begin := time.Now()
	_, err := conn.WriteToUDPAddrPort(msg, addr)
	require.NoError(t, err)
	buf := make([]byte, 1500)
	nr, from, err := conn.ReadFromUDPAddrPort(buf)
	require.NoError(t, err)
	reply := buf[:nr]
	require.Equal(t, addr.Port(), from.Port())
	require.True(t, bytes.Contains(reply, append([]byte{0xc4, 20}, nodeID...)), "reply %x lacks node id %x", reply, nodeID)
	require.True(t, bytes.Contains(reply, []byte{0xa1, 'y', 0xa1, 'r'}), "reply %x is not a reply", reply)
	t.Logf("ping %s → %s answered in %s", conn.LocalAddr(), addr, time.Since(begin).Round(time.Microsecond))
}

// TestStopLeavesNoProcess: Stop ends dhtnode (and a node's own network),
// Close ends the python scripts and removes the namespace.
func TestStopLeavesNoProcess(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)

	// A node with a network of its own.
	node, err := Start(ctx, Options{Identity: true})
	require.NoError(t, err)
	pid, ns := node.PID(), node.Network().Link.Name
	require.True(t, alive(pid))
	begin := time.Now()
	require.NoError(t, node.Stop())
	t.Logf("Stop took %s", time.Since(begin).Round(time.Millisecond))
	require.False(t, alive(pid), "dhtnode %d still runs", pid)
	require.NoError(t, node.Stop(), "Stop twice")
	require.NotContains(t, netnsList(t), ns)
	_, err = node.Get(ctx, "x")
	require.ErrorIs(t, err, ErrStopped)

	// A network with nodes and a python script still running at Close.
	n, err := NewNetwork()
	require.NoError(t, err)
	nodes, err := n.StartN(ctx, 2, Options{})
	require.NoError(t, err)
	py, err := n.StartPython(ctx, PythonPrelude+`
print("RUNNING")
time.sleep(600)
`)
	require.NoError(t, err)
	_, err = py.WaitOutput(ctx, "RUNNING")
	require.NoError(t, err)
	pids := []int{nodes[0].PID(), nodes[1].PID(), py.PID()}
	for _, pid := range pids {
		require.True(t, alive(pid))
	}
	require.NoError(t, n.Close())
	for _, pid := range pids {
		require.False(t, alive(pid), "process %d still runs", pid)
	}
	require.NotContains(t, netnsList(t), n.Link.Name)
	_, err = os.Stat(n.Dir)
	require.True(t, os.IsNotExist(err), "%s remains", n.Dir)
	_, err = n.Start(ctx, Options{})
	require.Error(t, err)
}

// alive reports whether process pid exists (waited-for processes do not).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

func netnsList(t *testing.T) string {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

// TestGivenIdentity: dhtnode runs with an identity made in Go
// (--certificate, --privkey), and its public key id is SHA-1 of the DER
// SubjectPublicKeyInfo (jami-dht.md §1.6).
func TestGivenIdentity(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n := NewTestNetwork(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "voipbot test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "id.crt"), filepath.Join(dir, "id.pem")
	require.NoError(t, os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600))

	node, err := n.Start(ctx, Options{Certificate: certPath, PrivateKey: keyPath})
	require.NoError(t, err)
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	want := sha1.Sum(spki)
	require.Equal(t, hex.EncodeToString(want[:]), node.PublicKeyID())
}

// TestSaveIdentity: a generated identity is written where asked.
func TestSaveIdentity(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	n := NewTestNetwork(t)
	path := filepath.Join(t.TempDir(), "node")
	node, err := n.Start(ctx, Options{Identity: true, SaveIdentity: path})
	require.NoError(t, err)
	data, err := os.ReadFile(path + ".crt")
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block, "%s.crt is not PEM", path)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	spki, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	require.NoError(t, err)
	want := sha1.Sum(spki)
	require.Equal(t, hex.EncodeToString(want[:]), node.PublicKeyID())
	require.FileExists(t, path+".pem")
	require.FileExists(t, path+"_ca.crt")
}

// TestCommandChecks: what dhtnode's command line cannot carry is refused
// before anything is sent.
func TestCommandChecks(t *testing.T) {
	n := &Node{}
	ctx := context.Background()
	for _, bad := range []string{"two words", "tab\there", "new\nline", "é", "\x7f"} {
		_, err := n.Put(ctx, "k", bad)
		require.Error(t, err, "%q", bad)
		require.True(t, strings.Contains(err.Error(), "printable ASCII"), "%v", err)
	}
	require.Error(t, n.PutEncrypted(ctx, "k", "nothex", "v"))
}
