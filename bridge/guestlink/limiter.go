package guestlink

import (
	"container/list"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The Limiter's defaults.
const (
	// LinkJoinsPerMinute and LinkBurst: how often guests may join through
	// one link.
	LinkJoinsPerMinute = 10
	LinkBurst          = 5
	// AddrRequestsPerMinute and AddrBurst: how often one address may ask
	// for any link, bad tokens included, so that guessing tokens is slow.
	AddrRequestsPerMinute = 20
	AddrBurst             = 10
	// MaxTracked bounds how many links, and how many addresses, the
	// Limiter keeps a budget for.
	MaxTracked = 10000
)

// LimiterConfig sets a Limiter's limits; a zero field takes its default.
type LimiterConfig struct {
	// LinkPerMinute and LinkBurst limit the joins through one link
	// (default LinkJoinsPerMinute, LinkBurst).
	LinkPerMinute float64
	LinkBurst     int
	// AddrPerMinute and AddrBurst limit the requests from one address
	// (default AddrRequestsPerMinute, AddrBurst).
	AddrPerMinute float64
	AddrBurst     int
	// MaxTracked bounds each of the two tables (default MaxTracked).
	MaxTracked int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Limiter limits how often guests join through a link and how often an
// address asks for links. It keeps a token bucket (golang.org/x/time/rate)
// per link and per address in two bounded tables: an entry idle long
// enough for its bucket to be full again is forgotten (a fresh bucket is
// the same), and when a table is full of busy entries the least recently
// used is forgotten. It is safe for concurrent use.
type Limiter struct {
	now   func() time.Time
	mu    sync.Mutex
	links *buckets
	addrs *buckets
}

// NewLimiter returns a Limiter with the limits of c.
func NewLimiter(c LimiterConfig) *Limiter {
	if c.LinkPerMinute <= 0 {
		c.LinkPerMinute = LinkJoinsPerMinute
	}
	if c.LinkBurst <= 0 {
		c.LinkBurst = LinkBurst
	}
	if c.AddrPerMinute <= 0 {
		c.AddrPerMinute = AddrRequestsPerMinute
	}
	if c.AddrBurst <= 0 {
		c.AddrBurst = AddrBurst
	}
	if c.MaxTracked <= 0 {
		c.MaxTracked = MaxTracked
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Limiter{
		now:   c.Now,
		links: newBuckets(c.LinkPerMinute, c.LinkBurst, c.MaxTracked),
		addrs: newBuckets(c.AddrPerMinute, c.AddrBurst, c.MaxTracked),
	}
}

// Allow counts one request from remoteIP and, if linkID is not "", one
// join through that link, and returns an ErrRateLimited error if either is
// over its limit. Call it before Resolve, for every request, bad tokens
// included: with "" where a request only shows the page, with the link's
// id (IDOf the token) where a guest joins (the WebSocket). The address is
// counted first; a request refused for its address does not count against
// the link.
//
// remoteIP may be an address or host:port. IPv6 addresses are counted by
// their /64 (one host usually has a whole /64).
func (l *Limiter) Allow(linkID, remoteIP string) error {
	now := l.now()
	addr := addrKey(remoteIP)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.addrs.allow(addr, now) {
		return fmt.Errorf("%w from %s", ErrRateLimited, addr)
	}
	if linkID != "" && !l.links.allow(linkID, now) {
		return fmt.Errorf("%w through link %s", ErrRateLimited, linkID)
	}
	return nil
}

// tracked returns how many links and addresses have a budget kept.
func (l *Limiter) tracked() (links, addrs int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.links.order.Len(), l.addrs.order.Len()
}

// addrKey is what an address is counted by.
func addrKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// buckets is a bounded table of token buckets, the most recently used at
// the front of order.
type buckets struct {
	limit rate.Limit
	burst int
	max   int
	// idle is how long a bucket takes to fill up from empty: an entry
	// unused that long is the same as a fresh one.
	idle  time.Duration
	byKey map[string]*list.Element
	order *list.List
}

type bucket struct {
	key  string
	lim  *rate.Limiter
	last time.Time
}

func newBuckets(perMinute float64, burst, limit int) *buckets {
	return &buckets{
		limit: rate.Limit(perMinute / 60),
		burst: burst,
		max:   limit,
		idle:  time.Duration(float64(burst) / perMinute * float64(time.Minute)),
		byKey: map[string]*list.Element{},
		order: list.New(),
	}
}

func (b *buckets) allow(key string, now time.Time) bool {
	b.evictIdle(now)
	e, ok := b.byKey[key]
	if ok {
		b.order.MoveToFront(e)
	} else {
		if b.order.Len() >= b.max {
			oldest := b.order.Back()
			b.order.Remove(oldest)
			delete(b.byKey, oldest.Value.(*bucket).key)
		}
		e = b.order.PushFront(&bucket{key: key, lim: rate.NewLimiter(b.limit, b.burst)})
		b.byKey[key] = e
	}
	k := e.Value.(*bucket)
	k.last = now
	return k.lim.AllowN(now, 1)
}

// evictIdle forgets the entries unused for b.idle or longer.
func (b *buckets) evictIdle(now time.Time) {
	for e := b.order.Back(); e != nil; e = b.order.Back() {
		k := e.Value.(*bucket)
		if now.Sub(k.last) < b.idle {
			return
		}
		b.order.Remove(e)
		delete(b.byKey, k.key)
	}
}
