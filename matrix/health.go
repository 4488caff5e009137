package matrix

import (
	"fmt"
	"sync"
	"time"
)

// Health tracks whether the bot is logged in and taking in events.
type Health struct {
	mu sync.Mutex
	// staleAfter is homeserver.sync_stale_after: how long after the last
	// stored /sync response the bot counts as not syncing.
	staleAfter time.Duration
	loggedIn   bool
	loginErr   error
	needsSync  bool
	// lastSync is when the last /sync response was stored, which is when
	// mautrix sends the next long poll: the age of lastSync is how long the
	// homeserver has had that request.
	lastSync time.Time
	// receivedAt is when the /sync response being stored arrived; zero
	// while none is, so a stall on the bot's side is told apart from a
	// homeserver that does not answer.
	receivedAt time.Time
	syncErr    error
	syncErrAt  time.Time
	stoppingAt time.Time
}

// newHealth starts the health of a bot that takes in events through /sync
// (needsSync) or only through appservice transactions.
func newHealth(needsSync bool, staleAfter time.Duration) *Health {
	return &Health{needsSync: needsSync, staleAfter: staleAfter}
}

func (h *Health) setLoggedIn(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.loggedIn, h.loginErr = err == nil, err
}

// syncReceived notes that a /sync response arrived and is being stored.
func (h *Health) syncReceived(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.receivedAt = at
}

// synced notes that a /sync response was stored at the given time.
func (h *Health) synced(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastSync, h.receivedAt, h.syncErr = at, time.Time{}, nil
}

func (h *Health) syncFailed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.syncErr == nil {
		h.syncErrAt = time.Now()
	}
	h.syncErr, h.receivedAt = err, time.Time{}
}

func (h *Health) stopping() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stoppingAt = time.Now()
}

// Ready reports whether the bot is logged in and taking in events, and if
// not, why.
func (h *Health) Ready(now time.Time) (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case !h.stoppingAt.IsZero():
		return false, "shutting down"
	case !h.loggedIn && h.loginErr != nil:
		return false, fmt.Sprintf("not logged in: %v", h.loginErr)
	case !h.loggedIn:
		return false, "logging in"
	case !h.needsSync:
		return true, "logged in; events arrive as appservice transactions"
	case h.syncErr != nil:
		return false, fmt.Sprintf("sync failing since %s: %v", h.syncErrAt.UTC().Format(time.RFC3339), h.syncErr)
	case h.lastSync.IsZero():
		return false, "first sync not finished"
	case now.Sub(h.lastSync) <= h.staleAfter:
		return true, "logged in and syncing"
	case !h.receivedAt.IsZero():
		return false, fmt.Sprintf("no sync response stored for %s: the one that arrived %s ago is still being stored",
			now.Sub(h.lastSync).Round(time.Second), now.Sub(h.receivedAt).Round(time.Second))
	default:
		return false, fmt.Sprintf("no sync response for %s (homeserver.sync_stale_after: %s): the homeserver is not answering",
			now.Sub(h.lastSync).Round(time.Second), h.staleAfter)
	}
}
