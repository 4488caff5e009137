package dht

import (
	"net/netip"
	"sync"
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
