package jami

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/jami/dht"
)

// The bot's DHT node keeps its id and key across restarts, remembers the
// peers that answered, and announces its values again after a restart.
func TestDHTServiceRestart(t *testing.T) {
	KeyBits = 2048 // 4096-bit keys take seconds to make
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	boot, err := dht.New(dht.Config{Listen4: "127.0.0.1:0", MaxPeerRequestsPerSec: -1}, zerolog.Nop())
	require.NoError(t, err)
	boot.Start(context.Background())
	defer boot.Close()
	st := &memStore{}
	cfg := Config{Enabled: true, Listen: "127.0.0.1:0", Bootstrap: []string{boot.Addr4().String()}}
	// A node's own gets ask others, never its own storage: a client looks.
	client, err := dht.New(dht.Config{Listen4: "127.0.0.1:0", Client: true}, zerolog.Nop())
	require.NoError(t, err)
	client.Start(context.Background())
	defer client.Close()

	s, err := Start(ctx, cfg, st, zerolog.Nop())
	require.NoError(t, err)
	firstID, firstKey, jamiID := s.node.ID(), s.DeviceKeyID(), s.AccountID()
	require.Eventually(t, func() bool { peers, _ := st.DHTPeers(ctx); return len(peers) > 0 }, 20*time.Second, 20*time.Millisecond, "joined and remembered its peers")
	// The collector reports nothing until the running service is attached.
	reg := prometheus.NewPedanticRegistry()
	coll := NewCollector()
	reg.MustRegister(coll)
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Zero(t, n)
	coll.Attach(s)
	n, err = testutil.GatherAndCount(reg, "voipbot_dht_nodes", "voipbot_dht_pings_in_flight", "voipbot_dht_pings_dropped_total")
	require.NoError(t, err)
	assert.Equal(t, 4+1+1, n, "nodes by family and goodness, pings in flight, pings dropped")
	key := dht.HashString("kept")
	require.NoError(t, s.PutPermanent(ctx, key, &dht.Value{ID: 42, Data: []byte("kept across restarts")}))
	// The device certificate is announced at the device's key id, and the
	// device announcement, signed by the account key, at the Jami ID.
	require.NoError(t, client.Bootstrap(ctx, boot.Addr4()))
	require.Eventually(t, func() bool {
		values, err := client.Get(ctx, firstKey)
		return err == nil && len(values) == 1 && values[0].Type == dht.TypeCertificate
	}, 20*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		values, err := client.Get(ctx, jamiID)
		if err != nil || len(values) != 1 || values[0].Verify() != nil {
			return false
		}
		ann, err := ParseAnnouncement(values[0].Data)
		owner, _ := dht.PublicKeyID(values[0].Owner)
		return err == nil && ann.Device == firstKey && owner == jamiID
	}, 20*time.Second, 20*time.Millisecond)
	s.Stop(ctx)

	// The network forgets (as if its nodes restarted too); our node comes
	// back as itself and announces its value again.
	boot.ClearStorage()
	s, err = Start(ctx, cfg, st, zerolog.Nop())
	require.NoError(t, err)
	defer s.Stop(ctx)
	assert.Equal(t, firstID, s.node.ID(), "same node id")
	assert.Equal(t, firstKey, s.DeviceKeyID(), "same device")
	assert.Equal(t, jamiID, s.AccountID(), "same Jami account")
	require.Eventually(t, func() bool {
		values, err := client.Get(ctx, key)
		return err == nil && len(values) == 1 && string(values[0].Data) == "kept across restarts"
	}, 20*time.Second, 50*time.Millisecond)
	assert.Contains(t, s.Describe(), firstID.String())
}

// An operator's existing Jami account is imported from its archive at the
// first start, with a device of the bot's own.
func TestDHTServiceImportsArchive(t *testing.T) {
	KeyBits = 2048
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	acc, err := NewAccount("phone")
	require.NoError(t, err)
	archive, err := acc.Export("secret")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "account.gz")
	require.NoError(t, os.WriteFile(path, archive, 0o600))
	st := &memStore{}
	cfg := Config{Enabled: true, Listen: "127.0.0.1:0", Bootstrap: []string{"127.0.0.1:9"}, Archive: path, ArchivePassword: "secret"}
	s, err := Start(ctx, cfg, st, zerolog.Nop())
	require.NoError(t, err)
	defer s.Stop(ctx)
	assert.Equal(t, acc.ID(), s.AccountID(), "the same Jami account")
	assert.NotEqual(t, acc.DeviceID(), s.DeviceKeyID(), "a device of the bot's own")
	require.NoError(t, s.account.VerifyChain())

	cfg.ArchivePassword = "wrong"
	_, err = Start(ctx, cfg, &memStore{}, zerolog.Nop())
	assert.ErrorContains(t, err, "does not open with this password")
}
