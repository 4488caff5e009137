package voip

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
)

// The NACK generator of a session's video receivers. pion's generator
// cannot be used: it sees only packets that arrive on the media SSRC, never
// those repaired from an RTX stream, so it asks for every repaired packet
// again on each tick until it leaves its window; and it asks again each
// tick (not after a round trip) and at once for packets merely reordered.
// This one learns arrivals from the forwarder, which reads both, and asks
// for a packet once it is overdue by half the stream's jitter, again only
// after a round trip and the jitter (as libwebrtc's NACK requester does,
// which asks again after a round trip).
const (
	// nackMaxGap is the largest gap asked for; a larger jump is a restart
	// of the sender's numbering, not loss.
	nackMaxGap = 256
	// nackMaxAge is how long a packet is asked for: after that a receiver
	// has played past it, and a video receiver has asked for a keyframe.
	nackMaxAge = time.Second
	// nackMaxTries bounds how often one packet is asked for.
	nackMaxTries = 10
	// A missing packet is asked for once it is overdue by half the
	// stream's jitter (it may be merely reordered), within these bounds.
	nackMinWait = 5 * time.Millisecond
	nackMaxWait = 20 * time.Millisecond
	// nackDefaultRTT is assumed until the session has measured one.
	nackDefaultRTT = 100 * time.Millisecond
)

// nackTracker remembers the missing packets of one inbound stream and asks
// the sender for them.
type nackTracker struct {
	ssrc uint32
	// send writes a NACK; rtt and jitter describe the path now.
	send        func(*rtcp.TransportLayerNack) error
	rtt, jitter func() time.Duration

	pending atomic.Int32 // len(missing), read without the lock on the hot path
	mu      sync.Mutex
	missing map[uint32]*nackEntry // by extended sequence number
	timer   *time.Timer
	armed   bool      // the timer will run at due
	due     time.Time //
	closed  bool
	asked   atomic.Uint64 // sequence numbers asked for, counting repeats
}

type nackEntry struct {
	missedAt, askedAt time.Time
	tries             int
}

func newNackTracker(ssrc uint32, send func(*rtcp.TransportLayerNack) error, rtt, jitter func() time.Duration) *nackTracker {
	return &nackTracker{ssrc: ssrc, send: send, rtt: rtt, jitter: jitter, missing: map[uint32]*nackEntry{}}
}

// gap notes that the packets from first to last (extended sequence
// numbers) did not come before a later one.
func (n *nackTracker) gap(first, last uint32, now time.Time) {
	if last-first >= nackMaxGap {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	for s := first; s != last+1; s++ {
		n.missing[s] = &nackEntry{missedAt: now}
	}
	n.pending.Store(int32(len(n.missing)))
	n.armAt(now.Add(n.wait()), now)
}

// arrived notes a packet that came late, and reports whether it had been
// asked for (so is most likely a retransmission, not a reordered packet).
func (n *nackTracker) arrived(seq uint32) bool {
	if n.pending.Load() == 0 {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.missing[seq]
	if e == nil {
		return false
	}
	delete(n.missing, seq)
	n.pending.Store(int32(len(n.missing)))
	return e.tries > 0
}

// wait is how long a missing packet may still be on its way, reordered.
func (n *nackTracker) wait() time.Duration {
	return min(max(n.jitter()/2, nackMinWait), nackMaxWait)
}

// armAt makes the timer run at (or before) at.
func (n *nackTracker) armAt(at, now time.Time) {
	if n.armed && !at.Before(n.due) {
		return
	}
	n.armed, n.due = true, at
	if n.timer == nil {
		n.timer = time.AfterFunc(at.Sub(now), n.run)
		return
	}
	n.timer.Stop() // if it fired already, the extra run finds nothing due
	n.timer.Reset(at.Sub(now))
}

// run asks for the packets that are due and forgets the hopeless ones.
func (n *nackTracker) run() {
	now := time.Now()
	n.mu.Lock()
	n.armed = false
	if n.closed {
		n.mu.Unlock()
		return
	}
	wait, retry := n.wait(), n.rtt()
	if retry <= 0 {
		retry = nackDefaultRTT
	}
	retry += n.jitter() // a retransmission may be late by the stream's jitter
	var seqs []uint32
	next := nackMaxAge
	for s, e := range n.missing {
		if now.Sub(e.missedAt) > nackMaxAge || e.tries >= nackMaxTries {
			delete(n.missing, s)
			continue
		}
		due := e.missedAt.Add(wait)
		if e.tries > 0 {
			due = e.askedAt.Add(retry)
		}
		if d := due.Sub(now); d > 0 {
			next = min(next, d)
			continue
		}
		seqs = append(seqs, s)
		e.tries++
		e.askedAt = now
		next = min(next, retry)
	}
	n.pending.Store(int32(len(n.missing)))
	if len(n.missing) > 0 {
		n.armAt(now.Add(next), now)
	}
	n.mu.Unlock()
	if len(seqs) == 0 {
		return
	}
	n.asked.Add(uint64(len(seqs)))
	slices.Sort(seqs) // NACK pairs are built from ascending numbers
	wire := make([]uint16, len(seqs))
	for i, s := range seqs {
		wire[i] = uint16(s)
	}
	_ = n.send(&rtcp.TransportLayerNack{MediaSSRC: n.ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(wire)})
}

// close stops asking.
func (n *nackTracker) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	if n.timer != nil {
		n.timer.Stop()
	}
}
