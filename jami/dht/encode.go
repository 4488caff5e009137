package dht

import (
	"net/netip"
)

// The senders below write each message as OpenDHT 2.4.12's NetworkEngine
// does (same keys, same order, same integer forms), so a capture of ours
// reads like one of theirs.

// MaxPacketValueSize is the most value bytes sent inline in one datagram;
// larger values are announced by size and sent in parts of MTU bytes.
const (
	MaxPacketValueSize = 600
	partMTU            = 1280
	maxInlineValues    = 50
)

// Sender identifies us in what we send.
type Sender struct {
	ID      InfoHash
	Network uint32
	// Client adds "s": true (a node that only asks).
	Client bool
}

// header writes the top-level map header: n fields plus "n" when the
// network is not 0, plus "s" for a client.
func (s Sender) header(p *packer, n int) {
	if s.Network != 0 {
		n++
	}
	if s.Client {
		n++
	}
	p.mapLen(n)
}

// trailer writes "q" (requests), "t", "y", "v" and "n".
func (s Sender) trailer(p *packer, query string, tid uint32, y string) {
	if query != "" {
		p.str("q")
		p.str(query)
	}
	p.str("t")
	p.uint(uint64(tid))
	p.str("y")
	p.str(y)
	p.str("v")
	p.str(UserAgent)
	if s.Network != 0 {
		p.str("n")
		p.uint(uint64(s.Network))
	}
	if s.Client {
		p.str("s")
		p.bool(true)
	}
}

func (s Sender) id(p *packer) {
	p.str("id")
	p.bin(s.ID[:])
}

func packAddr(p *packer, addr netip.Addr) {
	p.str("sa")
	if addr.Is4() || addr.Is4In6() {
		a := addr.Unmap().As4()
		p.bin(a[:])
		return
	}
	a := addr.As16()
	p.bin(a[:])
}

func packWant(p *packer, w Want) {
	n := 0
	if w&Want4 != 0 {
		n++
	}
	if w&Want6 != 0 {
		n++
	}
	p.str("w")
	p.arrayLen(n)
	if w&Want4 != 0 {
		p.uint(afInet)
	}
	if w&Want6 != 0 {
		p.uint(afInet6)
	}
}

// Ping is a ping request.
func (s Sender) Ping(tid uint32) []byte {
	p := newPacker()
	s.header(p, 5)
	p.str("a")
	p.mapLen(1)
	s.id(p)
	s.trailer(p, "ping", tid, "q")
	return p.bytes()
}

// Pong answers a ping (and confirms a listen): our id and the address we
// saw the request from.
func (s Sender) Pong(tid uint32, from netip.Addr) []byte {
	p := newPacker()
	s.header(p, 4)
	p.str("r")
	p.mapLen(2)
	s.id(p)
	packAddr(p, from)
	s.trailer(p, "", tid, "r")
	return p.bytes()
}

// Find asks for the nodes closest to target.
func (s Sender) Find(tid uint32, target InfoHash, want Want) []byte {
	p := newPacker()
	s.header(p, 5)
	p.str("a")
	n := 2
	if want != 0 {
		n++
	}
	p.mapLen(n)
	s.id(p)
	p.str("target")
	p.bin(target[:])
	if want != 0 {
		packWant(p, want)
	}
	s.trailer(p, "find", tid, "q")
	return p.bytes()
}

// Get asks for the values at hash (and the closest nodes).
func (s Sender) Get(tid uint32, hash InfoHash, query []byte, want Want) []byte {
	p := newPacker()
	s.header(p, 5)
	p.str("a")
	n := 2
	if len(query) > 0 {
		n++
	}
	if want != 0 {
		n++
	}
	p.mapLen(n)
	s.id(p)
	p.str("h")
	p.bin(hash[:])
	if len(query) > 0 {
		p.str("q")
		p.raw(query)
	}
	if want != 0 {
		packWant(p, want)
	}
	s.trailer(p, "get", tid, "q")
	return p.bytes()
}

// packValues writes "values": inline if they are small, else their sizes;
// it returns the packed values still to send in parts.
func packValues(p *packer, values []*Value) [][]byte {
	packed := make([][]byte, len(values))
	total := 0
	for i, v := range values {
		packed[i] = v.Pack()
		total += len(packed[i])
	}
	p.str("values")
	p.arrayLen(len(values))
	if len(values) < maxInlineValues && total < MaxPacketValueSize {
		for _, b := range packed {
			p.raw(b)
		}
		return nil
	}
	for _, b := range packed {
		p.uint(uint64(len(b)))
	}
	return packed
}

// valueParts cuts values sent by size into "y":"p" datagrams.
func (s Sender) valueParts(tid uint32, packed [][]byte) [][]byte {
	var out [][]byte
	for i, v := range packed {
		for start := 0; ; {
			end := min(start+partMTU, len(v))
			p := newPacker()
			s.header(p, 3)
			if s.Network != 0 {
				p.str("n")
				p.uint(uint64(s.Network))
			}
			if s.Client {
				p.str("s")
				p.bool(true)
			}
			p.str("y")
			p.str("p")
			p.str("t")
			p.uint(uint64(tid))
			p.str("p")
			p.mapLen(1)
			p.uint(uint64(i))
			p.mapLen(2)
			p.str("o")
			p.uint(uint64(start))
			p.str("d")
			p.bin(v[start:end])
			out = append(out, p.bytes())
			start = end
			if start == len(v) {
				break
			}
		}
	}
	return out
}

// NodesValues answers a find or get: closest nodes, a token, and values.
// The first datagram is the reply; any others carry value parts.
func (s Sender) NodesValues(tid uint32, from netip.Addr, nodes4, nodes6 []byte, values []*Value, token []byte) [][]byte {
	p := newPacker()
	s.header(p, 4)
	p.str("r")
	n := 2
	for _, has := range []bool{len(values) > 0, len(nodes4) > 0, len(nodes6) > 0, len(token) > 0} {
		if has {
			n++
		}
	}
	p.mapLen(n)
	s.id(p)
	packAddr(p, from)
	if len(nodes4) > 0 {
		p.str("n4")
		p.bin(nodes4)
	}
	if len(nodes6) > 0 {
		p.str("n6")
		p.bin(nodes6)
	}
	if len(token) > 0 {
		p.str("token")
		p.bin(token)
	}
	var parts [][]byte
	if len(values) > 0 {
		parts = packValues(p, values)
	}
	s.trailer(p, "", tid, "r")
	return append([][]byte{p.bytes()}, s.valueParts(tid, parts)...)
}

// Listen subscribes to hash at a storing node (listener version 1).
func (s Sender) Listen(tid uint32, hash InfoHash, token []byte, sid uint32, query []byte) []byte {
	p := newPacker()
	s.header(p, 5)
	p.str("a")
	n := 5
	if len(query) > 0 {
		n++
	}
	p.mapLen(n)
	s.id(p)
	p.str("ve")
	p.uint(1)
	p.str("h")
	p.bin(hash[:])
	p.str("token")
	p.bin(token)
	p.str("sid")
	p.uint(uint64(sid))
	if len(query) > 0 {
		p.str("q")
		p.raw(query)
	}
	s.trailer(p, "listen", tid, "q")
	return p.bytes()
}

// Put announces one value at hash; created (unix seconds, 0: now) tells
// storing nodes its age. The first datagram is the request, the others
// its value parts.
func (s Sender) Put(tid uint32, hash InfoHash, v *Value, created int64, token []byte) [][]byte {
	p := newPacker()
	s.header(p, 5)
	p.str("a")
	n := 4
	if created > 0 {
		n++
	}
	p.mapLen(n)
	s.id(p)
	p.str("h")
	p.bin(hash[:])
	parts := packValues(p, []*Value{v})
	if created > 0 {
		p.str("c")
		p.int(created)
	}
	p.str("token")
	p.bin(token)
	s.trailer(p, "put", tid, "q")
	return append([][]byte{p.bytes()}, s.valueParts(tid, parts)...)
}

// Update pushes values to a version 1 listener (a request it answers).
func (s Sender) Update(tid uint32, hash InfoHash, sid uint32, values []*Value, created int64, token []byte) [][]byte {
	p := newPacker()
	s.header(p, 5)
	p.str("a")
	n := 6
	if created > 0 {
		n++
	}
	p.mapLen(n)
	s.id(p)
	p.str("ve")
	p.uint(1)
	p.str("h")
	p.bin(hash[:])
	p.str("sid")
	p.uint(uint64(sid))
	parts := packValues(p, values)
	if created > 0 {
		p.str("c")
		p.int(created)
	}
	p.str("token")
	p.bin(token)
	s.trailer(p, "update", tid, "q")
	return append([][]byte{p.bytes()}, s.valueParts(tid, parts)...)
}

// UpdateIDs tells a version 1 listener that values were refreshed ("re")
// or expired ("exp").
func (s Sender) UpdateIDs(tid uint32, sid uint32, token []byte, key string, ids []uint64) []byte {
	p := newPacker()
	s.header(p, 5)
	p.str("a")
	n := 2
	if len(ids) > 0 {
		n++
	}
	if len(token) > 0 {
		n++
	}
	p.mapLen(n)
	s.id(p)
	p.str("sid")
	p.uint(uint64(sid))
	if len(token) > 0 {
		p.str("token")
		p.bin(token)
	}
	if len(ids) > 0 {
		p.str(key)
		p.arrayLen(len(ids))
		for _, id := range ids {
			p.uint(id)
		}
	}
	s.trailer(p, "update", tid, "q")
	return p.bytes()
}

// Refresh extends the life of a value we put.
func (s Sender) Refresh(tid uint32, hash InfoHash, vid uint64, token []byte) []byte {
	p := newPacker()
	s.header(p, 5)
	p.str("a")
	p.mapLen(4)
	s.id(p)
	p.str("h")
	p.bin(hash[:])
	p.str("vid")
	p.uint(vid)
	p.str("token")
	p.bin(token)
	s.trailer(p, "refresh", tid, "q")
	return p.bytes()
}

// ValueAnnounced answers a put or refresh.
func (s Sender) ValueAnnounced(tid uint32, vid uint64, from netip.Addr) []byte {
	p := newPacker()
	s.header(p, 4)
	p.str("r")
	p.mapLen(3)
	s.id(p)
	p.str("vid")
	p.uint(vid)
	packAddr(p, from)
	s.trailer(p, "", tid, "r")
	return p.bytes()
}

// Error answers a request with an error code.
func (s Sender) Error(tid uint32, code uint16, text string, includeID bool) []byte {
	p := newPacker()
	n := 4
	if includeID {
		n++
	}
	s.header(p, n)
	p.str("e")
	p.arrayLen(2)
	p.uint(uint64(code))
	p.str(text)
	if includeID {
		p.str("r")
		p.mapLen(1)
		s.id(p)
	}
	s.trailer(p, "", tid, "e")
	return p.bytes()
}
