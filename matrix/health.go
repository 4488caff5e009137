package matrix

import (
	"fmt"
	"sync"
	"time"
)

// syncStaleAfter is how long after the last /sync response the bot counts as
// not syncing: a long poll lasts 30 s, so a healthy loop answers well within.
const syncStaleAfter = 90 * time.Second

// Health tracks whether the bot is logged in and taking in events.
type Health struct {
	mu         sync.Mutex
	loggedIn   bool
	loginErr   error
	needsSync  bool
	lastSync   time.Time
	syncErr    error
	syncErrAt  time.Time
	stoppingAt time.Time
}

func (h *Health) setLoggedIn(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.loggedIn, h.loginErr = err == nil, err
}

func (h *Health) synced(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastSync, h.syncErr = at, nil
}

func (h *Health) syncFailed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.syncErr == nil {
		h.syncErrAt = time.Now()
	}
	h.syncErr = err
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
	case now.Sub(h.lastSync) > syncStaleAfter:
		return false, fmt.Sprintf("no sync response for %s", now.Sub(h.lastSync).Round(time.Second))
	default:
		return true, "logged in and syncing"
	}
}
