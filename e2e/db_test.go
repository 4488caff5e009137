package e2e

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/store"
)

// openBotDB opens the bot's database beside the running bot (SQLite WAL lets
// readers in while it writes).
func openBotDB(t testing.TB, path string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Path: path}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func readAccount(t testing.TB, path string) *store.Account {
	t.Helper()
	acct, err := openBotDB(t, path).Account(context.Background())
	require.NoError(t, err)
	require.NotNil(t, acct, "the bot stored its login")
	return acct
}

func roomMembership(t *testing.T, path string, room id.RoomID) store.Membership {
	t.Helper()
	r, err := openBotDB(t, path).Room(context.Background(), room)
	require.NoError(t, err)
	if r == nil {
		return ""
	}
	return r.Membership
}
