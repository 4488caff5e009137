package dht

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Search parameters (Kademlia's k and alpha; OpenDHT asks up to 3 nodes at
// once and stores at the 8 closest).
const (
	searchNodes   = 8
	searchAlpha   = 3
	listenRenewal = 25 * time.Second
)

// Bootstrap pings the given nodes and looks up our own id, which fills the
// routing table with our neighbourhood. It fails if no node answered.
func (n *Node) Bootstrap(ctx context.Context, addrs ...netip.AddrPort) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	answered := 0
	for _, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := n.Ping(ctx, a)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			answered++
		}()
	}
	wg.Wait()
	if answered == 0 && len(addrs) > 0 {
		return fmt.Errorf("bootstrapping: no node answered: %w", errors.Join(errs...))
	}
	_, err := n.lookup(ctx, n.cfg.ID, false)
	return err
}

// candidate is a node in a lookup.
type candidate struct {
	NodeInfo
	asked, replied bool
	token          []byte
}

// lookupResult is what an iterative search found.
type lookupResult struct {
	closest []*candidate // replied, closest first, with their tokens
	values  []*Value
	hops    int
}

// lookup is an iterative Kademlia search for target over both families:
// ask the closest nodes not yet asked, alpha at a time, until the closest
// searchNodes have all replied. get asks for values too.
func (n *Node) lookup(ctx context.Context, target InfoHash, get bool) (*lookupResult, error) {
	now := time.Now()
	var mu sync.Mutex
	cands := map[netip.AddrPort]*candidate{}
	add := func(ni NodeInfo) {
		if ni.ID == n.cfg.ID {
			return
		}
		if _, ok := cands[ni.Addr]; !ok {
			cands[ni.Addr] = &candidate{NodeInfo: ni}
		}
	}
	for _, t := range []*table{n.table4, n.table6} {
		for _, ni := range t.closest(target, searchNodes, now, false) {
			add(ni)
		}
	}
	if len(cands) == 0 {
		return nil, errors.New("no known node to search from (bootstrap first)")
	}
	res := &lookupResult{}
	seenValues := map[uint64]bool{}
	want := Want4 | Want6
	for round := 1; ; round++ {
		mu.Lock()
		sorted := sortedCandidates(cands, target)
		var ask []*candidate
		closestDone := 0
		for _, c := range sorted {
			if closestDone >= searchNodes {
				break
			}
			switch {
			case c.replied:
				closestDone++
			case !c.asked && len(ask) < searchAlpha:
				c.asked = true
				ask = append(ask, c)
			}
		}
		mu.Unlock()
		if len(ask) == 0 {
			break
		}
		res.hops = round
		var wg sync.WaitGroup
		for _, c := range ask {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m, err := n.request(ctx, c.Addr, func(tid uint32) [][]byte {
					if get {
						return [][]byte{n.self.Get(tid, target, nil, want)}
					}
					return [][]byte{n.self.Find(tid, target, want)}
				})
				if err != nil {
					n.tableFor(c.Addr).failed(c.ID)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				c.replied, c.token = true, m.Token
				if !m.ID.IsZero() {
					c.ID = m.ID
				}
				for _, ni := range append(unpackNodes(m.Nodes4, false, c.Addr), unpackNodes(m.Nodes6, true, c.Addr)...) {
					n.tableFor(ni.Addr).seen(ni, false, time.Now())
					add(ni)
				}
				for _, v := range m.Values {
					if v != nil && !seenValues[v.ID] {
						seenValues[v.ID] = true
						res.values = append(res.values, v)
					}
				}
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	for _, c := range sortedCandidates(cands, target) {
		if c.replied && len(res.closest) < searchNodes {
			res.closest = append(res.closest, c)
		}
	}
	if len(res.closest) == 0 {
		return res, errors.New("no node answered the search")
	}
	return res, nil
}

func sortedCandidates(cands map[netip.AddrPort]*candidate, target InfoHash) []*candidate {
	out := make([]*candidate, 0, len(cands))
	for _, c := range cands {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *candidate) int { return target.XorCmp(a.ID, b.ID) })
	return out
}

// Get returns the values stored at hash. Signed values whose signature does
// not verify are dropped, as SecureDht does.
func (n *Node) Get(ctx context.Context, hash InfoHash) ([]*Value, error) {
	values, _, err := n.GetHops(ctx, hash)
	return values, err
}

// GetHops is Get, also saying how many rounds of requests the search took.
func (n *Node) GetHops(ctx context.Context, hash InfoHash) ([]*Value, int, error) {
	res, err := n.lookup(ctx, hash, true)
	if err != nil {
		return nil, 0, fmt.Errorf("getting %s: %w", hash, err)
	}
	out := res.values[:0]
	for _, v := range res.values {
		if v.Signed() && v.Verify() != nil {
			continue
		}
		out = append(out, v)
	}
	return out, res.hops, nil
}

// PutResult says where a value went.
type PutResult struct {
	Stored int // nodes that acknowledged it
	Hops   int
}

// Put stores v at hash on the closest nodes; it succeeds if any
// acknowledged it.
func (n *Node) Put(ctx context.Context, hash InfoHash, v *Value) (PutResult, error) {
	if len(v.Pack()) > MaxValueSize {
		return PutResult{}, fmt.Errorf("value of %d bytes is over the %d-byte limit", len(v.Pack()), MaxValueSize)
	}
	res, err := n.lookup(ctx, hash, false)
	if err != nil {
		return PutResult{}, fmt.Errorf("putting at %s: %w", hash, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	out := PutResult{Hops: res.hops}
	var errs []error
	for _, c := range res.closest {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := n.request(ctx, c.Addr, func(tid uint32) [][]byte {
				return n.self.Put(tid, hash, v, 0, c.token)
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out.Stored++
		}()
	}
	wg.Wait()
	if out.Stored == 0 {
		return out, fmt.Errorf("putting at %s: no node stored it: %w", hash, errors.Join(errs...))
	}
	return out, nil
}

// subscription is one of our listens: the nodes we listen at, renewed.
type subscription struct {
	hash    InfoHash
	sid     uint32
	fn      func(*Value)
	nodes   []*candidate
	renewed time.Time
	seen    map[uint64]bool
	mu      sync.Mutex
}

// Listen calls fn for each value put at hash from now on (and those there
// now), until ctx ends. fn is called from the node's goroutines and must
// not block.
func (n *Node) Listen(ctx context.Context, hash InfoHash, fn func(*Value)) error {
	res, err := n.lookup(ctx, hash, true)
	if err != nil {
		return fmt.Errorf("listening at %s: %w", hash, err)
	}
	n.mu.Lock()
	n.sid++
	sub := &subscription{hash: hash, sid: n.sid, fn: fn, nodes: res.closest, renewed: time.Now(), seen: map[uint64]bool{}}
	n.listens[sub.sid] = sub
	n.mu.Unlock()
	sub.deliver(res.values)
	n.sendListens(ctx, sub)
	go func() {
		<-ctx.Done()
		n.mu.Lock()
		delete(n.listens, sub.sid)
		n.mu.Unlock()
	}()
	return nil
}

func (s *subscription) deliver(values []*Value) {
	for _, v := range values {
		if v == nil || (v.Signed() && v.Verify() != nil) {
			continue
		}
		s.mu.Lock()
		fresh := !s.seen[v.ID]
		s.seen[v.ID] = true
		s.mu.Unlock()
		if fresh {
			s.fn(v)
		}
	}
}

func (n *Node) sendListens(ctx context.Context, sub *subscription) {
	sub.mu.Lock()
	nodes := sub.nodes
	sub.mu.Unlock()
	for _, c := range nodes {
		go func() {
			_, _ = n.request(ctx, c.Addr, func(tid uint32) [][]byte {
				return [][]byte{n.self.Listen(tid, sub.hash, c.token, sub.sid, nil)}
			})
		}()
	}
}

// renewListens renews listens before the storing nodes forget them (30 s).
func (n *Node) renewListens(now time.Time) {
	n.mu.Lock()
	var due []*subscription
	for _, s := range n.listens {
		if now.Sub(s.renewed) >= listenRenewal {
			s.renewed = now
			due = append(due, s)
		}
	}
	n.mu.Unlock()
	for _, s := range due {
		// Search again: the closest nodes change as nodes come and go,
		// and a listen at a node that left hears nothing.
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			ctx, cancel := context.WithTimeout(n.ctx, listenRenewal)
			defer cancel()
			if res, err := n.lookup(ctx, s.hash, false); err == nil {
				s.mu.Lock()
				s.nodes = res.closest
				s.mu.Unlock()
			}
			n.sendListens(n.ctx, s)
		}()
	}
}

// handleUpdate delivers values a storing node pushed to one of our listens.
func (n *Node) handleUpdate(m *Message) {
	n.mu.Lock()
	sub := n.listens[m.SocketID]
	n.mu.Unlock()
	if sub == nil || sub.hash != m.Hash && !m.Hash.IsZero() {
		return
	}
	sub.deliver(m.Values)
}
