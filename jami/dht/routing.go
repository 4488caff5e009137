package dht

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Routing-table constants (OpenDHT: TARGET_NODES 8, node expiry 10 min).
const (
	bucketSize   = 8
	nodeExpiry   = 10 * time.Minute
	nodeRecords4 = HashLen + 4 + 2
	nodeRecords6 = HashLen + 16 + 2
	// maxPending is how many failed requests in a row make a node bad.
	maxPending = 3
)

// NodeInfo is a node we know: its id and address.
type NodeInfo struct {
	ID   InfoHash
	Addr netip.AddrPort
}

type knownNode struct {
	NodeInfo
	lastReply time.Time // zero: never replied
	lastSeen  time.Time
	failures  int
}

func (n *knownNode) good(now time.Time) bool {
	return !n.lastReply.IsZero() && now.Sub(n.lastReply) < nodeExpiry && n.failures < maxPending
}

// table is a Kademlia routing table of k-buckets indexed by the length of
// the prefix a node shares with our id, one per address family.
type table struct {
	self    InfoHash
	mu      sync.Mutex
	buckets [HashLen*8 + 1][]*knownNode
}

func newTable(self InfoHash) *table { return &table{self: self} }

// seen records that a node sent us something (replied: a reply to our
// request). It returns whether the node is new to the table (false too when
// it was not added: its bucket is full of good nodes).
func (t *table) seen(n NodeInfo, replied bool, now time.Time) bool {
	if n.ID == t.self || !n.Addr.IsValid() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := &t.buckets[t.self.CommonBits(n.ID)]
	for _, k := range *b {
		if k.ID == n.ID {
			k.Addr, k.lastSeen = n.Addr, now
			if replied {
				k.lastReply, k.failures = now, 0
			}
			return false
		}
	}
	k := &knownNode{NodeInfo: n, lastSeen: now}
	if replied {
		k.lastReply = now
	}
	if len(*b) < bucketSize {
		*b = append(*b, k)
		return true
	}
	// Replace a bad node, if there is one; good nodes stay (Kademlia
	// prefers long-lived nodes).
	for i, old := range *b {
		if !old.good(now) {
			(*b)[i] = k
			return true
		}
	}
	return false
}

// touch records that a node the table holds sent us a request, and says
// whether the table holds it; unlike seen, it adds no node.
func (t *table) touch(n NodeInfo, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range t.buckets[t.self.CommonBits(n.ID)] {
		if k.ID == n.ID {
			k.Addr, k.lastSeen = n.Addr, now
			return true
		}
	}
	return false
}

// failed counts a request a node did not answer.
func (t *table) failed(id InfoHash) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range t.buckets[t.self.CommonBits(id)] {
		if k.ID == id {
			k.failures++
		}
	}
}

// closest returns up to n nodes closest to target, good ones first; with
// goodOnly, only nodes that answered us lately (what we tell others).
func (t *table) closest(target InfoHash, n int, now time.Time, goodOnly bool) []NodeInfo {
	t.mu.Lock()
	var all []knownNode // copies: the read loop updates the table's nodes
	for _, b := range t.buckets {
		for _, k := range b {
			if k.failures < maxPending && (!goodOnly || k.good(now)) {
				all = append(all, *k)
			}
		}
	}
	t.mu.Unlock()
	slices.SortFunc(all, func(a, b knownNode) int {
		if ga, gb := a.good(now), b.good(now); ga != gb {
			if ga {
				return -1
			}
			return 1
		}
		return target.XorCmp(a.ID, b.ID)
	})
	out := make([]NodeInfo, 0, min(n, len(all)))
	for _, k := range all[:min(n, len(all))] {
		out = append(out, k.NodeInfo)
	}
	// Among those chosen, closest first.
	slices.SortFunc(out, func(a, b NodeInfo) int { return target.XorCmp(a.ID, b.ID) })
	return out
}

// size is how many nodes the table holds, and how many of them are good.
func (t *table) size(now time.Time) (all, good int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.buckets {
		for _, k := range b {
			all++
			if k.good(now) {
				good++
			}
		}
	}
	return all, good
}

// packNodes writes compact node records of one family.
func packNodes(nodes []NodeInfo, v6 bool) []byte {
	var out []byte
	for _, n := range nodes {
		a := n.Addr.Addr()
		if a.Is4() != !v6 {
			continue
		}
		out = append(out, n.ID[:]...)
		out = append(out, a.AsSlice()...)
		out = binary.BigEndian.AppendUint16(out, n.Addr.Port())
	}
	return out
}

// unpackNodes reads compact node records; loopback addresses are taken as
// the sender's (OpenDHT does so: a node on the same host as its peer).
func unpackNodes(raw []byte, v6 bool, from netip.AddrPort) []NodeInfo {
	size, alen := nodeRecords4, 4
	if v6 {
		size, alen = nodeRecords6, 16
	}
	if len(raw)%size != 0 {
		return nil
	}
	var out []NodeInfo
	for rec := raw; len(rec) >= size; rec = rec[size:] {
		var n NodeInfo
		copy(n.ID[:], rec[:HashLen])
		a, _ := netip.AddrFromSlice(rec[HashLen : HashLen+alen])
		port := binary.BigEndian.Uint16(rec[HashLen+alen:])
		if a.IsLoopback() && from.Addr().Is4() == a.Is4() {
			a = from.Addr()
		}
		n.Addr = netip.AddrPortFrom(a, port)
		if martian(n.Addr) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// martian says whether an address cannot be a node's (OpenDHT's
// isMartian): port 0; IPv4 0.0.0.0/8 and 224.0.0.0/3 (multicast and
// reserved); IPv6 multicast, link-local, unspecified and v4-mapped.
// Loopback is allowed (local networks and tests).
func martian(a netip.AddrPort) bool {
	ip := a.Addr()
	if a.Port() == 0 || !ip.IsValid() {
		return true
	}
	if ip.Is4() {
		b := ip.As4()[0]
		return b == 0 || b&0xE0 == 0xE0
	}
	return ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.Is4In6()
}

// good lists the nodes that answered lately, with when.
func (t *table) good(now time.Time) []knownNode {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []knownNode
	for _, b := range t.buckets {
		for _, k := range b {
			if k.good(now) {
				out = append(out, *k)
			}
		}
	}
	return out
}
