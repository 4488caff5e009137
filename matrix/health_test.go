package matrix

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
)

func TestHealthReadiness(t *testing.T) {
	now := time.Now()
	h := newHealth(true, 40*time.Second)
	ok, why := h.Ready(now)
	require.False(t, ok)
	require.Equal(t, "logging in", why)
	h.setLoggedIn(context.DeadlineExceeded)
	ok, why = h.Ready(now)
	require.False(t, ok)
	require.Contains(t, why, "not logged in")
	h.setLoggedIn(nil)
	ok, why = h.Ready(now)
	require.False(t, ok)
	require.Equal(t, "first sync not finished", why)
	h.synced(now)
	ok, _ = h.Ready(now)
	require.True(t, ok)
	h.syncFailed(context.Canceled)
	ok, why = h.Ready(now)
	require.False(t, ok)
	require.Contains(t, why, "sync failing since")
	h.synced(now)
	h.stopping()
	ok, why = h.Ready(now)
	require.False(t, ok)
	require.Equal(t, "shutting down", why)

	as := newHealth(false, 40*time.Second)
	as.setLoggedIn(nil)
	ok, _ = as.Ready(now.Add(time.Hour))
	require.True(t, ok, "an appservice fed only by transactions is ready once logged in, with no sync to wait for")
}

// TestHealthSyncStaleAfter: a /sync unanswered for longer than
// homeserver.sync_stale_after makes the bot not ready, and not a moment
// before (issue 9: a hung homeserver stayed invisible for 90 s).
func TestHealthSyncStaleAfter(t *testing.T) {
	stored := time.Now()
	cases := []struct {
		staleAfter time.Duration
		age        time.Duration
		ready      bool
		why        string
	}{
		{40 * time.Second, 0, true, "logged in and syncing"},
		{40 * time.Second, 30 * time.Second, true, "logged in and syncing"}, // an idle long poll answered on time
		{40 * time.Second, 40 * time.Second, true, "logged in and syncing"},
		{40 * time.Second, 41 * time.Second, false, "no sync response for 41s (homeserver.sync_stale_after: 40s): the homeserver is not answering"},
		{40 * time.Second, 89 * time.Second, false, "no sync response for 1m29s (homeserver.sync_stale_after: 40s): the homeserver is not answering"},
		{35 * time.Second, 36 * time.Second, false, "no sync response for 36s (homeserver.sync_stale_after: 35s): the homeserver is not answering"},
		{2 * time.Minute, 89 * time.Second, true, "logged in and syncing"},
	}
	for _, tc := range cases {
		h := newHealth(true, tc.staleAfter)
		h.setLoggedIn(nil)
		h.synced(stored)
		ok, why := h.Ready(stored.Add(tc.age))
		require.Equalf(t, tc.ready, ok, "sync_stale_after %s, last response stored %s ago", tc.staleAfter, tc.age)
		require.Equal(t, tc.why, why)
	}
}

// TestHealthTellsAStallInStoringFromAHomeserverNotAnswering: a response that
// arrived but is not stored yet is the bot's stall, and the reason says so.
func TestHealthTellsAStallInStoringFromAHomeserverNotAnswering(t *testing.T) {
	stored := time.Now()
	h := newHealth(true, 40*time.Second)
	h.setLoggedIn(nil)
	h.synced(stored)
	h.syncReceived(stored.Add(30 * time.Second))
	ok, _ := h.Ready(stored.Add(40 * time.Second))
	require.True(t, ok, "within the threshold, storing a response is normal")
	ok, why := h.Ready(stored.Add(45 * time.Second))
	require.False(t, ok)
	require.Equal(t, "no sync response stored for 45s: the one that arrived 15s ago is still being stored", why)

	h.syncFailed(errors.New("database is locked"))
	ok, why = h.Ready(stored.Add(45 * time.Second))
	require.False(t, ok)
	require.Contains(t, why, "sync failing since")
	require.Contains(t, why, "database is locked")
	h.synced(stored.Add(46 * time.Second))
	ok, _ = h.Ready(stored.Add(46 * time.Second))
	require.True(t, ok)
	ok, why = h.Ready(stored.Add(90 * time.Second))
	require.False(t, ok)
	require.Contains(t, why, "the homeserver is not answering", "a failure ends the storing, so a later stall is the homeserver's")
}

// TestHealthCountsOnlySyncResponses: in appservice mode with to_device: sync,
// transactions arriving must not hide a /sync that the homeserver does not
// answer.
func TestHealthCountsOnlySyncResponses(t *testing.T) {
	s, _, _ := newTestSyncer(t)
	s.health.setLoggedIn(nil)
	ctx := context.Background()
	require.NoError(t, s.processTransaction(ctx, "txn1", &mautrix.RespSync{}, nil))
	ok, why := s.health.Ready(time.Now())
	require.False(t, ok)
	require.Equal(t, "first sync not finished", why, "a transaction is not a sync response")

	require.NoError(t, s.ProcessResponse(ctx, &mautrix.RespSync{NextBatch: "s1"}, ""))
	ok, _ = s.health.Ready(time.Now())
	require.True(t, ok)
	stale := time.Now().Add(41 * time.Second)
	ok, _ = s.health.Ready(stale)
	require.False(t, ok)

	require.NoError(t, s.processTransaction(ctx, "txn2", &mautrix.RespSync{}, nil))
	ok, why = s.health.Ready(stale)
	require.False(t, ok, "a later transaction does not refresh the sync")
	require.Contains(t, why, "the homeserver is not answering")
}
