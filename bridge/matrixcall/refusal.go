package matrixcall

import (
	"fmt"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
)

// The refusal budget: how many invites of one sender the bot declines out
// loud (a reject, a missed-call record, a notice) — a burst, then one per
// interval. Beyond it an invite gets nothing: it rings out at the caller
// (who is flooding the bot; a person redialling a busy bot gets its rejects).
const (
	refusalBurst      = 5
	refusalEvery      = 10 * time.Second
	refusalMaxSenders = 4096
	// refusalMaxSending bounds the rejects being sent at once (each may
	// retry for a few seconds).
	refusalMaxSending = 16
	// noticeWindow is how long missed-call notices of one caller in one
	// room are folded into one.
	noticeWindow = time.Minute
)

// refusalBudget is a token bucket per sender.
type refusalBudget struct {
	now     func() time.Time
	burst   float64
	every   time.Duration
	mu      sync.Mutex
	senders map[id.UserID]*refusalBucket
}

type refusalBucket struct {
	tokens float64
	at     time.Time
}

func newRefusalBudget(now func() time.Time) *refusalBudget {
	return &refusalBudget{now: now, burst: refusalBurst, every: refusalEvery, senders: map[id.UserID]*refusalBucket{}}
}

// allow takes a token of sender's budget, if it has one.
func (r *refusalBudget) allow(sender id.UserID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	b := r.senders[sender]
	if b == nil {
		if len(r.senders) >= refusalMaxSenders {
			r.prune(now)
			if len(r.senders) >= refusalMaxSenders {
				return false
			}
		}
		b = &refusalBucket{tokens: r.burst, at: now}
		r.senders[sender] = b
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.at).Seconds()/r.every.Seconds())
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prune forgets senders whose budget is full again. Called with mu held.
func (r *refusalBudget) prune(now time.Time) {
	full := time.Duration(r.burst * float64(r.every))
	for user, b := range r.senders {
		if now.Sub(b.at) >= full {
			delete(r.senders, user)
		}
	}
}

// missedNotices tells rooms about missed calls, one notice per caller and
// room at a time: the first at once, the ones after it within noticeWindow
// as one summary at the end of the window.
type missedNotices struct {
	send    func(room id.RoomID, text string)
	metrics *callMetrics
	window  time.Duration

	mu      sync.Mutex
	folds   map[foldKey]*fold
	stopped bool
}

type foldKey struct {
	room   id.RoomID
	caller id.UserID
}

type fold struct {
	more  int
	last  string
	timer *time.Timer
}

func newMissedNotices(send func(id.RoomID, string), m *callMetrics) *missedNotices {
	return &missedNotices{send: send, metrics: m, window: noticeWindow, folds: map[foldKey]*fold{}}
}

// missed reports a missed call from caller in room; why ends the sentence
// "Missed call from @x: …".
func (n *missedNotices) missed(room id.RoomID, caller id.UserID, why string) {
	key := foldKey{room, caller}
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return
	}
	if f := n.folds[key]; f != nil {
		f.more++
		f.last = why
		n.mu.Unlock()
		n.metrics.noticesFolded.Inc()
		return
	}
	n.folds[key] = &fold{timer: time.AfterFunc(n.window, func() { n.flush(key) })}
	n.mu.Unlock()
	n.send(room, fmt.Sprintf("Missed call from %s: %s.", caller, why))
}

// flush ends a window: the calls missed during it in one notice, and a new
// window if there were any.
func (n *missedNotices) flush(key foldKey) {
	n.mu.Lock()
	f := n.folds[key]
	if f == nil || n.stopped {
		n.mu.Unlock()
		return
	}
	if f.more == 0 {
		delete(n.folds, key)
		n.mu.Unlock()
		return
	}
	more, last := f.more, f.last
	f.more = 0
	f.timer = time.AfterFunc(n.window, func() { n.flush(key) })
	n.mu.Unlock()
	calls := "calls"
	if more == 1 {
		calls = "call"
	}
	n.send(key.room, fmt.Sprintf("%d more missed %s from %s in the last %s (the last: %s).", more, calls, key.caller, spoken(n.window), last))
}

// stop drops what is still folded (at shutdown).
func (n *missedNotices) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopped = true
	for key, f := range n.folds {
		f.timer.Stop()
		delete(n.folds, key)
	}
}

// spoken says a whole duration as a person would ("minute", "30 seconds").
func spoken(d time.Duration) string {
	switch {
	case d == time.Minute:
		return "minute"
	case d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%d seconds", d/time.Second)
	}
	return d.String()
}
