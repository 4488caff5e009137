package e2e

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/jami"
	"github.com/voipbot/voipbot/jami/dht"
)

// TestJamiID: with jami.enabled the bot makes its Jami account (once),
// joins the DHT, announces its device there, and `!voip jami` shows the ID
// a Jami user adds.
func TestJamiID(t *testing.T) {
	boot, err := dht.New(dht.Config{Listen4: "127.0.0.1:0", MaxPeerRequestsPerSec: -1}, zerolog.Nop())
	require.NoError(t, err)
	boot.Start(context.Background())
	t.Cleanup(func() { _ = boot.Close() })
	setup := newBotSetup(t, hs, fmt.Sprintf("jami:\n  enabled: true\n  listen: 127.0.0.1:0\n  bootstrap: [%q]\n", boot.Addr4()))
	bot := setup.start(t)
	alice := newUser(t, hs, "alice", false)
	room := inviteBot(t, alice, setup.UserID, false)

	var id dht.InfoHash
	require.NoError(t, testbed.WaitFor(ctxFor(t), func() (bool, error) {
		reply := body(command(t, alice, room, setup.UserID, "!voip jami"))
		m := regexp.MustCompile("Jami ID is `([0-9a-f]{40})`").FindStringSubmatch(reply)
		if m == nil {
			return false, nil
		}
		id, err = dht.ParseHash(m[1])
		return err == nil, err
	}), "the reply names the Jami ID")

	// A Jami device looking the bot up finds its device announcement,
	// signed by the account key, at that ID.
	client, err := dht.New(dht.Config{Listen4: "127.0.0.1:0", Client: true}, zerolog.Nop())
	require.NoError(t, err)
	client.Start(context.Background())
	t.Cleanup(func() { _ = client.Close() })
	require.NoError(t, client.Bootstrap(ctxFor(t), boot.Addr4()))
	require.NoError(t, testbed.WaitFor(ctxFor(t), func() (bool, error) {
		values, err := client.Get(ctxFor(t), id)
		if err != nil {
			return false, nil
		}
		for _, v := range values {
			owner, _ := dht.PublicKeyID(v.Owner)
			if _, err := jami.ParseAnnouncement(v.Data); err == nil && v.Signed() && owner == id {
				return true, nil
			}
		}
		return false, nil
	}), "the device announcement is on the DHT")
	stopBot(t, bot)
}
