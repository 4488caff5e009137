//go:build linux

package dht_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/dhtnode"
	"github.com/voipbot/voipbot/jami/dht"
)

// Our node against Debian's dhtnode 2.4.12 and python3-opendht, in a
// network namespace: each side reads what the other puts, plain, signed
// and encrypted, in parts, and by listening.

func interopContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// goNode starts our node on the test side of the namespace's veth pair and
// bootstraps it from peer.
func goNode(t *testing.T, ctx context.Context, n *dhtnode.Network, peer *dhtnode.Node) *dht.Node {
	node, err := dht.New(dht.Config{Listen4: netip.AddrPortFrom(n.HostIP, 0).String(), MaxPeerRequestsPerSec: -1}, zerolog.Nop())
	require.NoError(t, err)
	node.Start(context.Background())
	t.Cleanup(func() { _ = node.Close() })
	require.NoError(t, node.Bootstrap(ctx, peer.Addr()))
	return node
}

// untilGo polls our side until get returns a value ok accepts: a DHT has no
// event for "now reachable".
func untilGo(t *testing.T, ctx context.Context, what string, get func() ([]*dht.Value, error), ok func(*dht.Value) bool) *dht.Value {
	t.Helper()
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		values, err := get()
		if err == nil {
			for _, v := range values {
				if ok(v) {
					return v
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not found (last error %v)", what, err)
		case <-time.After(delay):
		}
	}
}

// untilPeer polls a dhtnode's get until a value ok accepts.
func untilPeer(t *testing.T, ctx context.Context, peer *dhtnode.Node, key string, ok func(dhtnode.Value) bool) dhtnode.Value {
	t.Helper()
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		values, _ := peer.Get(ctx, key)
		for _, v := range values {
			if ok(v) {
				return v
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dhtnode did not find %s", key)
		case <-time.After(delay):
		}
	}
}

func dataIs(s string) func(*dht.Value) bool {
	return func(v *dht.Value) bool { return string(v.Data) == s }
}

func TestInteropPlainValuesAndListen(t *testing.T) {
	ctx := interopContext(t)
	n := dhtnode.NewTestNetwork(t)
	peer, err := n.Start(ctx, dhtnode.Options{NoRateLimit: true})
	require.NoError(t, err)
	node := goNode(t, ctx, n, peer)

	// dhtnode → us.
	_, err = peer.Put(ctx, "from-dhtnode", "hello-go")
	require.NoError(t, err)
	untilGo(t, ctx, "dhtnode's value", func() ([]*dht.Value, error) { return node.Get(ctx, dht.HashString("from-dhtnode")) }, dataIs("hello-go"))

	// Us → dhtnode, small and in parts.
	_, err = node.Put(ctx, dht.HashString("from-go"), &dht.Value{ID: dht.RandomValueID(), Data: []byte("hello-dhtnode")})
	require.NoError(t, err)
	untilPeer(t, ctx, peer, "from-go", func(v dhtnode.Value) bool { return v.Text() == "hello-dhtnode" })
	big := strings.Repeat("x", 3000)
	_, err = node.Put(ctx, dht.HashString("big-from-go"), &dht.Value{ID: dht.RandomValueID(), Data: []byte(big)})
	require.NoError(t, err)
	// dhtnode prints a value of 1024 bytes or more by its size only.
	untilPeer(t, ctx, peer, "big-from-go", func(v dhtnode.Value) bool { return v.Size == len(big) })

	// Listen: we hear dhtnode's put; dhtnode hears ours.
	heard := make(chan *dht.Value, 8)
	require.NoError(t, node.Listen(ctx, dht.HashString("listen-go"), func(v *dht.Value) { heard <- v }))
	_, err = peer.Put(ctx, "listen-go", "for-the-listener")
	require.NoError(t, err)
	select {
	case v := <-heard:
		require.Equal(t, "for-the-listener", string(v.Data))
	case <-ctx.Done():
		t.Fatal("our listen heard nothing")
	}
	values, err := peer.Listen(ctx, "listen-peer")
	require.NoError(t, err)
	_, err = node.Put(ctx, dht.HashString("listen-peer"), &dht.Value{ID: dht.RandomValueID(), Data: []byte("pushed")})
	require.NoError(t, err)
	select {
	case v := <-values:
		require.Equal(t, "pushed", v.Text())
	case <-ctx.Done():
		t.Fatal("dhtnode's listen heard nothing")
	}

	// python3-opendht reads ours too.
	out, err := n.RunPython(ctx, dhtnode.PythonPrelude+`
import time
for _ in range(50):
    vals = r.get(dht.InfoHash.get("from-go"))
    if vals:
        print("GOT", vals[0].data.decode(), flush=True)
        break
    time.sleep(0.1)
`, "DHT_BOOTSTRAP="+peer.Addr().String())
	require.NoError(t, err)
	require.Contains(t, out, "GOT hello-dhtnode")
}

func TestInteropSignedEncryptedAndCertificates(t *testing.T) {
	ctx := interopContext(t)
	n := dhtnode.NewTestNetwork(t)
	peer, err := n.Start(ctx, dhtnode.Options{NoRateLimit: true, Identity: true})
	require.NoError(t, err)
	node := goNode(t, ctx, n, peer)
	key, err := rsa.GenerateKey(rand.Reader, 4096) // Jami's size: signed values go in parts
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "voipbot interop"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	id := &dht.Identity{Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	secure := dht.NewSecure(node, id)
	_, err = secure.AnnounceCertificate(ctx)
	require.NoError(t, err)

	// Signed by dhtnode, verified by us.
	require.NoError(t, peer.PutSigned(ctx, "signed-by-peer", "peer-signed"))
	v := untilGo(t, ctx, "dhtnode's signed value", func() ([]*dht.Value, error) { return secure.Get(ctx, dht.HashString("signed-by-peer")) }, dataIs("peer-signed"))
	require.True(t, v.Signed())
	peerKey, err := dht.PublicKeyID(v.Owner)
	require.NoError(t, err)
	require.Equal(t, peer.PublicKeyID(), peerKey.String(), "signed by dhtnode's key")

	// Signed by us (RSA-4096: in parts), verified by dhtnode.
	_, err = secure.PutSigned(ctx, dht.HashString("signed-by-go"), &dht.Value{Data: []byte("go-signed")})
	require.NoError(t, err)
	pv := untilPeer(t, ctx, peer, "signed-by-go", func(v dhtnode.Value) bool { return v.Text() == "go-signed" })
	require.True(t, pv.Signed)

	// Encrypted by dhtnode for us: it found our certificate at our key id.
	require.NoError(t, peer.PutEncrypted(ctx, "for-go", id.KeyID().String(), "secret-for-go"))
	v = untilGo(t, ctx, "dhtnode's encrypted value", func() ([]*dht.Value, error) { return secure.Get(ctx, dht.HashString("for-go")) }, dataIs("secret-for-go"))
	require.True(t, v.Signed(), "decrypted and its signature checked")

	// Encrypted by us for dhtnode: we found its certificate at its key id.
	peerID, err := dht.ParseHash(peer.PublicKeyID())
	require.NoError(t, err)
	_, peerPub, err := secure.FindCertificate(ctx, peerID)
	require.NoError(t, err)
	_, err = secure.PutEncrypted(ctx, dht.HashString("for-peer"), peerPub, &dht.Value{Data: []byte("secret-for-peer")})
	require.NoError(t, err)
	pv = untilPeer(t, ctx, peer, "for-peer", func(v dhtnode.Value) bool { return v.Text() == "secret-for-peer" })
	require.True(t, pv.Decrypted)
}

// TestLocalNetwork: 50 of our nodes and 3 dhtnode processes form one DHT:
// every value put (by ours or by dhtnode) is found by every node.
func TestLocalNetwork(t *testing.T) {
	ctx := interopContext(t)
	n := dhtnode.NewTestNetwork(t)
	peers, err := n.StartN(ctx, 3, dhtnode.Options{NoRateLimit: true})
	require.NoError(t, err)
	const ours = 50
	nodes := make([]*dht.Node, ours)
	for i := range nodes {
		node, err := dht.New(dht.Config{Listen4: netip.AddrPortFrom(n.HostIP, 0).String(), MaxPeerRequestsPerSec: -1}, zerolog.Nop())
		require.NoError(t, err)
		node.Start(context.Background())
		t.Cleanup(func() { _ = node.Close() })
		nodes[i] = node
		boot := []netip.AddrPort{peers[i%len(peers)].Addr()}
		if i > 0 {
			boot = append(boot, nodes[i-1].Addr4())
		}
		require.NoError(t, node.Bootstrap(ctx, boot...))
	}
	for _, node := range nodes {
		require.NoError(t, node.Bootstrap(ctx, peers[0].Addr()), "second round: learn the later nodes")
	}

	keys := map[string]string{}
	for i := range 8 {
		k := "net-key-" + string(rune('a'+i))
		keys[k] = "value-" + string(rune('a'+i))
		if i%4 == 3 {
			_, err = peers[i%len(peers)].Put(ctx, k, keys[k])
		} else {
			_, err = nodes[(i*7)%ours].Put(ctx, dht.HashString(k), &dht.Value{ID: dht.RandomValueID(), Data: []byte(keys[k])})
		}
		require.NoError(t, err)
	}
	for k, want := range keys {
		for i, node := range nodes {
			untilGo(t, ctx, k+" from our node "+string(rune('0'+i%10)), func() ([]*dht.Value, error) { return node.Get(ctx, dht.HashString(k)) }, dataIs(want))
		}
		for _, p := range peers {
			untilPeer(t, ctx, p, k, func(v dhtnode.Value) bool { return v.Text() == want })
		}
	}
}
