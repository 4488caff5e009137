//go:debug x509negativeserial=1

package connect_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/jami"
	"github.com/voipbot/voipbot/jami/connect"
	"github.com/voipbot/voipbot/jami/dht"
	"github.com/voipbot/voipbot/jami/mux"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// botDevice is one Go Jami device on a loopback DHT.
type botDevice struct {
	acc      *jami.Account
	node     *dht.Node
	secure   *dht.Secure
	mgr      *connect.Manager
	channels chan *mux.Channel
}

func newBotDevice(t *testing.T, ctx context.Context, bootstrap *dht.Node, cfg func(*connect.Config)) *botDevice {
	t.Helper()
	jami.KeyBits = 2048 // structure, not strength, is what is tested
	acc, err := jami.NewAccount("test")
	require.NoError(t, err)
	node, err := dht.New(dht.Config{Listen4: "127.0.0.1:0", MaxPeerRequestsPerSec: -1}, zerolog.Nop())
	require.NoError(t, err)
	node.Start(context.Background())
	t.Cleanup(func() { _ = node.Close() })
	require.NoError(t, node.Bootstrap(ctx, bootstrap.Addr4()))
	d := &botDevice{acc: acc, node: node, secure: dht.NewSecure(node, acc.DeviceIdentity()), channels: make(chan *mux.Channel, 4)}
	_, err = node.PutPermanent(ctx, acc.DeviceID(), dht.CertificateValue(acc.DeviceChainPEM()))
	require.NoError(t, err)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	c := connect.Config{
		DHT:           d.secure,
		Self:          connect.Identity{Key: acc.DeviceKey, Chain: acc.DeviceChain()},
		ICE:           connect.ICEConfig{TCP: l, IPs: []netip.Addr{loopback}, Loopback: true},
		AcceptChannel: func(_ connect.Device, name string) bool { return name == "sip" },
		OnChannel:     func(_ *connect.Peer, ch *mux.Channel) { d.channels <- ch },
		Log:           zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel),
	}
	if cfg != nil {
		cfg(&c)
	}
	d.mgr, err = connect.New(c)
	require.NoError(t, err)
	require.NoError(t, d.mgr.Start(ctx))
	t.Cleanup(func() { _ = d.mgr.Close() })
	return d
}

// newHub is the DHT node the devices join through.
func newHub(t *testing.T) *dht.Node {
	t.Helper()
	node, err := dht.New(dht.Config{Listen4: "127.0.0.1:0", MaxPeerRequestsPerSec: -1}, zerolog.Nop())
	require.NoError(t, err)
	node.Start(context.Background())
	t.Cleanup(func() { _ = node.Close() })
	return node
}

// device is how the other side finds d: its chain on the DHT.
func (d *botDevice) device(t *testing.T, ctx context.Context, via *dht.Secure) connect.Device {
	t.Helper()
	chain, _, err := via.FindCertificate(ctx, d.acc.DeviceID())
	require.NoError(t, err)
	dev, err := connect.ParseDevice(chain)
	require.NoError(t, err)
	require.Equal(t, d.acc.ID(), dev.Account)
	return dev
}

// TestBotCallsBot: a device connects to another over the DHT (request on
// both key forms, answer, ICE-TCP, TLS 1.3 with both chains checked), opens
// the "sip" channel, and both ends carry data; a second channel reuses the
// socket.
func TestBotCallsBot(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	hub := newHub(t)
	b := newBotDevice(t, ctx, hub, nil)
	a := newBotDevice(t, ctx, hub, nil)
	devB := b.device(t, ctx, a.secure)

	p, ch, err := a.mgr.OpenChannel(ctx, devB, "sip", "audioCall")
	require.NoError(t, err)
	require.False(t, p.Incoming)
	var in *mux.Channel
	select {
	case in = <-b.channels:
	case <-ctx.Done():
		t.Fatal("the callee got no channel")
	}
	require.Equal(t, "sip", in.Name())
	_, err = ch.Write([]byte("INVITE"))
	require.NoError(t, err)
	buf := make([]byte, 16)
	n, err := in.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "INVITE", string(buf[:n]))
	_, err = in.Write([]byte("200 OK"))
	require.NoError(t, err)
	n, err = ch.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "200 OK", string(buf[:n]))

	p2, ch2, err := a.mgr.OpenChannel(ctx, devB, "sip", "audioCall")
	require.NoError(t, err)
	require.Same(t, p.Socket, p2.Socket, "one socket per device")
	require.NotEqual(t, ch.ID(), ch2.ID())

	// A channel the callee does not serve is declined.
	_, _, err = a.mgr.OpenChannel(ctx, devB, "git://x", "")
	require.ErrorIs(t, err, mux.ErrDeclined)
}

// TestRefusedCaller: a device the policy refuses gets no answer.
func TestRefusedCaller(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	refused := make(chan connect.Device, 1)
	hub := newHub(t)
	b := newBotDevice(t, ctx, hub, func(c *connect.Config) {
		c.Allow = func(d connect.Device) error { refused <- d; return errors.New("not in jami.allow") }
	})
	a := newBotDevice(t, ctx, hub, nil)
	devB := b.device(t, ctx, a.secure)
	dctx, dcancel := context.WithCancel(ctx)
	defer dcancel()
	errc := make(chan error, 1)
	go func() { _, err := a.mgr.Connect(dctx, devB, ""); errc <- err }()
	select {
	case d := <-refused:
		require.Equal(t, a.acc.ID(), d.Account)
	case <-ctx.Done():
		t.Fatal("the request never reached the policy")
	}
	dcancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}

// TestChainMismatch: a device presenting in TLS a chain other than the one
// on the DHT is refused by its peer.
func TestChainMismatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	hub := newHub(t)
	b := newBotDevice(t, ctx, hub, func(c *connect.Config) {
		c.Self.Chain = c.Self.Chain[:2] // the DHT has the CA too
	})
	a := newBotDevice(t, ctx, hub, nil)
	devB := b.device(t, ctx, a.secure)
	_, err := a.mgr.Connect(ctx, devB, "")
	require.Error(t, err)
	require.Contains(t, err.Error(), "differs from its chain on the DHT")
}
