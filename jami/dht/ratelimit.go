package dht

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// rateLimits counts requests per second, in all and per source address.
// A source over its limit is not answered until the next second.
type rateLimits struct {
	global, perPeer int // negative: no limit

	mu     sync.Mutex
	window time.Time
	total  int
	peers  map[netip.Addr]int
}

func (r *rateLimits) allow(from netip.Addr, now time.Time) bool {
	if r.global < 0 && r.perPeer < 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.window) >= time.Second {
		r.window, r.total = now, 0
		clear(r.peers)
	}
	if r.global >= 0 && r.total >= r.global {
		return false
	}
	if r.perPeer >= 0 {
		if r.peers[from] >= r.perPeer {
			return false
		}
		r.peers[from]++
	}
	r.total++
	return true
}

// Caps on the pings a node starts on its own, to check nodes that sent it a
// request for the first time. Such a ping holds its slot until the node
// answers, or for requestTries × requestTimeout (3 s) if it does not; junk
// requests with random ids would otherwise start one ping, and one
// goroutine, each, without bound.
//
// 64 in all: an answering node frees its slot within a round trip, so 64
// slots check hundreds of new nodes a second, more than a node meets (its
// routing table holds a few hundred). OpenDHT is more sparing still
// (Dht::onNewNode): it adds a newcomer unpinged, and pings only when a
// bucket is full, one of its dubious nodes, not one already awaiting a
// reply. When nothing answers, the cap also bounds the pings we send on
// our own to 64 a second (3 each per 3 s), so that requests with forged
// sources cannot make us send pings to third parties at their rate.
//
// 4 per source address: the sockets of one host share its address; an
// honest host runs one node, or a few (devices behind one NAT), while a
// flooding host, however many ports it sends from, holds 4 of the 64 slots,
// so that starving the others takes 16 addresses.
const (
	maxNewNodePings        = 64
	maxNewNodePingsPerPeer = 4
	// pingDropLogEvery spaces the logs of dropped pings: a flood drops
	// thousands a second.
	pingDropLogEvery = time.Minute
)

// pingSlots counts the pings in flight to new nodes, in all and per source
// address. acquire never blocks: the read loop calls it.
type pingSlots struct {
	global, perPeer int

	mu       sync.Mutex
	inFlight int
	peers    map[netip.Addr]int // only addresses with a ping in flight
	lastLog  time.Time
	unlogged uint64 // dropped since the last log

	dropped atomic.Uint64
}

func newPingSlots(global, perPeer int) *pingSlots {
	return &pingSlots{global: global, perPeer: perPeer, peers: map[netip.Addr]int{}}
}

// acquire takes a slot for a ping to from, if both caps allow it.
func (p *pingSlots) acquire(from netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inFlight >= p.global || p.peers[from] >= p.perPeer {
		return false
	}
	p.inFlight++
	p.peers[from]++
	return true
}

func (p *pingSlots) release(from netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
	if p.peers[from]--; p.peers[from] <= 0 {
		delete(p.peers, from)
	}
}

// drop counts a ping not started; it returns how many were dropped since
// the last time it said to log, when it is time to log again (else 0).
func (p *pingSlots) drop(now time.Time) uint64 {
	p.dropped.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unlogged++
	if now.Sub(p.lastLog) < pingDropLogEvery {
		return 0
	}
	n := p.unlogged
	p.lastLog, p.unlogged = now, 0
	return n
}

func (p *pingSlots) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inFlight
}
