//go:build linux

package jami_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/dhtnode"
	"github.com/voipbot/voipbot/internal/testbed/jamid"
	"github.com/voipbot/voipbot/jami"
	"github.com/voipbot/voipbot/jami/connect"
	"github.com/voipbot/voipbot/jami/dht"
	"github.com/voipbot/voipbot/jami/mux"
)

// TestJamidFindsOurDevice: a real Jami device (Debian's jami-daemon 13.7.0)
// on a local DHT with our node finds the bot's account: calling our Jami ID,
// it reads the device announcement at the account id, gets our device's
// certificate at its key id, and sends our device an encrypted, signed
// connection request at SHA-1("peer:" + device id), which we decrypt.
func TestJamidFindsOurDevice(t *testing.T) {
	jamid.RequireInstalled(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	n := dhtnode.NewTestNetwork(t)
	require.NoError(t, jamid.DisableIPv6(n.Link))
	peer, err := n.Start(ctx, dhtnode.Options{NoRateLimit: true})
	require.NoError(t, err)

	// The bot's side: a Jami account, its device on our DHT node.
	jami.KeyBits = 2048 // the structure matters here; 4096-bit keys take seconds
	acc, err := jami.NewAccount("voipbot")
	require.NoError(t, err)
	node, err := dht.New(dht.Config{Listen4: netip.AddrPortFrom(n.HostIP, 0).String(), MaxPeerRequestsPerSec: -1}, zerolog.Nop())
	require.NoError(t, err)
	node.Start(context.Background())
	t.Cleanup(func() { _ = node.Close() })
	require.NoError(t, node.Bootstrap(ctx, peer.Addr()))
	secure := dht.NewSecure(node, acc.DeviceIdentity())
	_, err = node.PutPermanent(ctx, acc.DeviceID(), dht.CertificateValue(acc.DeviceChainPEM()))
	require.NoError(t, err)
	ann, err := acc.DeviceAnnouncement()
	require.NoError(t, err)
	_, err = node.PutPermanent(ctx, acc.ID(), ann)
	require.NoError(t, err)
	requests := make(chan *dht.Value, 8)
	// jamid 13.7.0 puts requests at the SHA-1 form of our device's key.
	peerKey := connect.KeysFor(acc.DeviceID(), acc.DeviceLongID()).Legacy
	require.NoError(t, secure.Listen(ctx, peerKey, func(v *dht.Value) { requests <- v }))

	// The Jami side.
	d := jamid.NewTestDaemon(t, ctx, jamid.Options{Link: n.Link})
	jamiAcc, err := d.AddAccount(ctx, jamid.LoopbackAccount(peer.Addr().String()))
	require.NoError(t, err)
	require.NoError(t, d.WaitRegistered(ctx, jamiAcc))

	// jamid can pin our device certificate from the DHT …
	require.NoError(t, d.FindCertificate(ctx, jamiAcc, acc.DeviceID().String()))
	// … finds our account's device when it calls us …
	lookup, err := d.FindAccount(ctx, jamiAcc, acc.ID().String())
	require.NoError(t, err)
	require.True(t, lookup.Found, "jamid found no device for %s: %s", acc.ID(), lookup.Evidence)

	// … and asks our device for a connection: a value encrypted for our
	// device key and signed by its own, with Jami's user type.
	select {
	case v := <-requests:
		require.Equal(t, "peer_request", v.UserType)
		require.True(t, v.Signed())
		sender, err := dht.PublicKeyID(v.Owner)
		require.NoError(t, err)
		device, err := d.DeviceKeyID(ctx, jamiAcc)
		require.NoError(t, err)
		require.Equal(t, device, sender.String(), "signed by jamid's device")
		// The request and the ICE message it carries parse as Jami's.
		req, err := connect.ParseRequest(v.Data)
		require.NoError(t, err)
		require.False(t, req.IsAnswer)
		ice, errs := connect.ParseICE(req.ICE)
		require.Empty(t, errs, "every line of jamid's ICE message parses: %q", req.ICE)
		require.NotEmpty(t, ice.Ufrag)
		passive := false
		for _, c := range ice.Candidates {
			passive = passive || (c.Transport == connect.TCP && c.TCPType == "passive")
			require.Contains(t, req.ICE, c.String(), "written back as jamid wrote it")
		}
		require.True(t, passive, "jamid offers a passive TCP candidate: %q", req.ICE)
	case <-ctx.Done():
		t.Fatal("no connection request reached our device")
	}
}

// jamidBed is a jamid account and the bot's Jami service on one local DHT.
type jamidBed struct {
	d        *jamid.Daemon
	jamiAcc  string // jamid's account (its local id)
	jamiID   string // its Jami ID
	svc      *jami.Service
	channels chan *mux.Channel
	peers    chan *connect.Peer
}

func newJamidBed(t *testing.T, ctx context.Context, cfg func(c *jami.Config, jamiID string)) *jamidBed {
	t.Helper()
	jamid.RequireInstalled(t)
	n := dhtnode.NewTestNetwork(t)
	require.NoError(t, jamid.DisableIPv6(n.Link))
	peer, err := n.Start(ctx, dhtnode.Options{NoRateLimit: true})
	require.NoError(t, err)
	b := &jamidBed{channels: make(chan *mux.Channel, 4), peers: make(chan *connect.Peer, 4)}
	b.d = jamid.NewTestDaemon(t, ctx, jamid.Options{Link: n.Link})
	b.jamiAcc, err = b.d.AddAccount(ctx, jamid.LoopbackAccount(peer.Addr().String()))
	require.NoError(t, err)
	b.jamiID, err = b.d.JamiID(ctx, b.jamiAcc)
	require.NoError(t, err)

	jami.KeyBits = 2048
	c := jami.Config{
		Enabled: true, Listen: netip.AddrPortFrom(n.HostIP, 0).String(), Bootstrap: []string{peer.Addr().String()},
		ICEAddresses: []string{n.HostIP.String()}, Allow: []string{"*"},
	}
	if cfg != nil {
		cfg(&c, b.jamiID)
	}
	b.svc, err = jami.Start(ctx, c, jami.NewMemStore(), zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel))
	require.NoError(t, err)
	t.Cleanup(func() { b.svc.Stop(context.Background()) })
	b.svc.SetChannelHandler(func(p *connect.Peer, ch *mux.Channel) { b.peers <- p; b.channels <- ch })
	select {
	case <-b.svc.Ready():
	case <-ctx.Done():
		t.Fatal("the service did not join the DHT")
	}
	require.NoError(t, b.d.WaitRegistered(ctx, b.jamiAcc))
	return b
}

// jamidDevice is jamid's device as the bot finds it: from the account's
// device announcements.
func (b *jamidBed) jamidDevice(t *testing.T, ctx context.Context) connect.Device {
	t.Helper()
	require.NoError(t, b.d.WaitDeviceAnnounced(ctx, b.jamiAcc))
	id, err := jami.ParseID(b.jamiID)
	require.NoError(t, err)
	devs, err := b.svc.Devices(ctx, id)
	require.NoError(t, err)
	require.Len(t, devs, 1)
	keyID, err := b.d.DeviceKeyID(ctx, b.jamiAcc)
	require.NoError(t, err)
	require.Equal(t, keyID, devs[0].ID.String())
	return devs[0]
}

// TestJamidConnectsToUs: jamid calling the bot's Jami ID gets an answer to
// its connection request, ICE-TCP (we control) and TLS (we are the client)
// succeed with the chains checked both ways, and jamid opens the "sip"
// channel on the socket and sends its INVITE from the account it is.
func TestJamidConnectsToUs(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b := newJamidBed(t, ctx, nil)
	_, err := b.d.PlaceAudioCall(ctx, b.jamiAcc, b.svc.AccountID().String())
	require.NoError(t, err)
	select {
	case ch := <-b.channels:
		p := <-b.peers
		require.True(t, p.Incoming)
		require.Equal(t, b.jamiID, p.Device.Account.String())
		require.Equal(t, "sip", ch.Name())
		buf := make([]byte, 4096)
		n, err := ch.Read(buf)
		require.NoError(t, err)
		msg := string(buf[:n])
		require.True(t, strings.HasPrefix(msg, "INVITE "), "jamid's first message on the channel: %q", msg)
		require.Contains(t, msg, b.jamiID)
	case <-ctx.Done():
		t.Fatalf("jamid opened no channel: %s", b.d.LogTail(4000))
	}
}

// TestWeConnectToJamid: the bot, as caller (ICE controlled, TLS server),
// connects to jamid's device and jamid accepts the "sip" channel.
func TestWeConnectToJamid(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b := newJamidBed(t, ctx, nil)
	dev := b.jamidDevice(t, ctx)
	p, ch, err := b.svc.OpenSIP(ctx, dev, false)
	require.NoError(t, err, "jamid log: %s", b.d.LogTail(4000))
	require.False(t, p.Incoming)
	require.Equal(t, "sip", ch.Name())
	require.GreaterOrEqual(t, p.Socket.PeerVersion(), 1, "jamid speaks the beacon protocol")
}

// TestBannedJamidIsRefused: a device of a banned account gets no answer
// to its connection request: the call fails on jamid, and no channel is
// opened.
func TestBannedJamidIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b := newJamidBed(t, ctx, func(c *jami.Config, jamiID string) { c.Ban = []string{jamiID} })
	callID, err := b.d.PlaceAudioCall(ctx, b.jamiAcc, b.svc.AccountID().String())
	require.NoError(t, err)
	st, err := b.d.WaitCallState(ctx, b.jamiAcc, callID, "OVER", "FAILURE", "HUNGUP", "CURRENT")
	require.NoError(t, err)
	require.NotEqual(t, "CURRENT", st.State)
	require.Empty(t, b.channels, "no channel from a banned account")
}
