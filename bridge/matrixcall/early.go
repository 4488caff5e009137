package matrixcall

import (
	"context"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/callevent"
)

// Bounds of the early-candidate buffer. Candidates come before their
// call's invite is rung mostly in the invite's own sync batch (the invite
// waits for the end of the batch), so they are kept briefly; most
// candidates for unknown calls belong to calls between other members, whose
// invites the bot ignores, and a member can send them on purpose. What is
// kept is bounded per sender and in all, in bytes and in events, and only
// what an invite can use is kept: a browser gathers 5–20 candidates per
// call, so 32 of an event, each of ICE's usual length.
const (
	earlyMaxAge          = time.Minute
	earlySweepEvery      = 10 * time.Second
	earlyMaxPerEvent     = 32
	earlyMaxCandidateLen = 512
	earlyMaxSenderBytes  = 64 << 10
	earlyMaxSenderEvents = 64
	earlyMaxBytes        = 1 << 20
	earlyMaxEvents       = 1024
	// earlyEntryOverhead is what an entry costs besides its bytes (the
	// entry, its slice slot, the map's share), so that a flood of tiny
	// events is bounded by the byte limits too.
	earlyEntryOverhead = 96
	// earlyMaxRefused is how many refused calls are remembered (for
	// earlyMaxAge), so that their candidates are not kept for an invite
	// that was already declined.
	earlyMaxRefused = 1024
)

// earlyEntry is one candidates event kept for a later invite: its content
// re-encoded with only the candidates kept, so that memory follows what was
// kept and not the parsed tree of what was sent.
type earlyEntry struct {
	sender id.UserID
	raw    []byte
	at     time.Time
}

func (e earlyEntry) cost() int { return len(e.raw) + earlyEntryOverhead }

// earlyBuffer holds candidates that arrived before their call's invite.
type earlyBuffer struct {
	metrics *callMetrics

	mu      sync.Mutex
	calls   map[callKey][]earlyEntry
	senders map[id.UserID]*earlyUse
	bytes   int
	events  int
	refused map[callKey]time.Time
}

type earlyUse struct{ bytes, events int }

func newEarlyBuffer(m *callMetrics) *earlyBuffer {
	return &earlyBuffer{metrics: m, calls: map[callKey][]earlyEntry{}, senders: map[id.UserID]*earlyUse{}, refused: map[callKey]time.Time{}}
}

// trimEarly re-encodes a candidates event with only what an invite can use:
// at most earlyMaxPerEvent candidates of at most earlyMaxCandidateLen bytes,
// and the end marker. It returns nil if nothing is left.
func trimEarly(c *callevent.Candidates) (raw []byte, trimmed int) {
	kept := make([]callevent.Candidate, 0, min(len(c.Candidates), earlyMaxPerEvent+1))
	ended := false
	for _, cand := range c.Candidates {
		switch {
		case cand.IsEnd():
			ended = true
		case len(cand.Candidate) <= earlyMaxCandidateLen && len(kept) < earlyMaxPerEvent &&
			(cand.SDPMid == nil || len(*cand.SDPMid) <= earlyMaxCandidateLen):
			kept = append(kept, cand)
		default:
			trimmed++
		}
	}
	if ended {
		kept = append(kept, callevent.EndOfCandidates())
	}
	if len(kept) == 0 {
		return nil, trimmed
	}
	raw, err := callevent.Marshal(&callevent.Candidates{Common: c.Common, Candidates: kept})
	if err != nil {
		return nil, trimmed
	}
	return raw, trimmed
}

// keep buffers one candidates event (raw from trimEarly) for key, within
// the bounds; it reports why not ("" if kept).
func (b *earlyBuffer) keep(key callKey, sender id.UserID, raw []byte, now time.Time) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := earlyEntry{sender: sender, raw: raw, at: now}
	use := b.senders[sender]
	if use == nil {
		use = &earlyUse{}
	}
	why := ""
	switch {
	case !b.refused[key].IsZero():
		why = "refused_call"
	case use.bytes+e.cost() > earlyMaxSenderBytes || use.events >= earlyMaxSenderEvents:
		why = "sender_full"
	case b.bytes+e.cost() > earlyMaxBytes || b.events >= earlyMaxEvents:
		why = "buffer_full"
	}
	if why != "" {
		b.metrics.earlyDropped.WithLabelValues(why).Inc()
		return why
	}
	b.senders[sender] = use
	use.bytes += e.cost()
	use.events++
	b.bytes += e.cost()
	b.events++
	b.calls[key] = append(b.calls[key], e)
	b.metrics.earlyBytes.Set(float64(b.bytes))
	return ""
}

// take removes and returns the candidates kept for key, parsed.
func (b *earlyBuffer) take(key callKey) []earlyEvent {
	b.mu.Lock()
	entries := b.calls[key]
	b.forget(key, entries)
	b.mu.Unlock()
	out := make([]earlyEvent, 0, len(entries))
	for _, e := range entries {
		c, err := callevent.Parse(callevent.TypeCandidates, e.raw)
		if err != nil {
			continue // what we encoded ourselves parses; nothing to do otherwise
		}
		out = append(out, earlyEvent{sender: e.sender, content: c})
	}
	return out
}

// refuse drops what is kept for a call the bot declined, and keeps no more
// for it for a while.
func (b *earlyBuffer) refuse(key callKey, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forget(key, b.calls[key])
	if len(b.refused) < earlyMaxRefused {
		b.refused[key] = now
	}
}

// forget removes the entries of key. Called with mu held.
func (b *earlyBuffer) forget(key callKey, entries []earlyEntry) {
	if len(entries) == 0 {
		return
	}
	delete(b.calls, key)
	for _, e := range entries {
		b.unaccount(e)
	}
	b.metrics.earlyBytes.Set(float64(b.bytes))
}

// unaccount takes an entry out of the totals. Called with mu held.
func (b *earlyBuffer) unaccount(e earlyEntry) {
	b.bytes -= e.cost()
	b.events--
	if use := b.senders[e.sender]; use != nil {
		use.bytes -= e.cost()
		if use.events--; use.events <= 0 {
			delete(b.senders, e.sender)
		}
	}
}

// sweep drops what is older than earlyMaxAge.
func (b *earlyBuffer) sweep(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for key, entries := range b.calls {
		// Entries of a call are in arrival order: the stale ones first.
		stale := 0
		for stale < len(entries) && now.Sub(entries[stale].at) > earlyMaxAge {
			b.unaccount(entries[stale])
			stale++
		}
		switch {
		case stale == 0:
			continue
		case stale == len(entries):
			delete(b.calls, key)
		default:
			b.calls[key] = append([]earlyEntry(nil), entries[stale:]...)
		}
		b.metrics.earlyDropped.WithLabelValues("expired").Add(float64(stale))
	}
	for key, at := range b.refused {
		if now.Sub(at) > earlyMaxAge {
			delete(b.refused, key)
		}
	}
	b.metrics.earlyBytes.Set(float64(b.bytes))
}

// held says how much is kept: events and bytes (for tests and status).
func (b *earlyBuffer) held() (events, bytes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.events, b.bytes
}

// run sweeps the buffer until ctx ends.
func (b *earlyBuffer) run(ctx context.Context, now func() time.Time) {
	tick := time.NewTicker(earlySweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			b.sweep(now())
		}
	}
}
