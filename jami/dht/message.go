package dht

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
)

// UserAgent is what every OpenDHT node sends in "v".
const UserAgent = "RNG1"

// Kind is what a message is.
type Kind uint8

// The message kinds (OpenDHT's MessageType).
const (
	KindError Kind = iota
	KindReply
	KindPing
	KindFind
	KindGet
	KindPut
	KindListen
	KindRefresh
	KindUpdate
	KindValueData   // "y":"p": parts of large values
	KindValueUpdate // "u": updates to version 0 listeners
)

var kindNames = [...]string{"error", "reply", "ping", "find", "get", "put", "listen", "refresh", "update", "value-data", "value-update"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// queryName is a request's "q".
var queryName = map[Kind]string{
	KindPing: "ping", KindFind: "find", KindGet: "get", KindPut: "put",
	KindListen: "listen", KindRefresh: "refresh", KindUpdate: "update",
}

// Want says which address families a find or get wants nodes of.
type Want uint8

// Address families, as the wire's AF_INET (2) and AF_INET6 (10).
const (
	Want4 Want = 1 << iota
	Want6
)

const (
	afInet  = 2
	afInet6 = 10
)

// ValuePart is a slice of a large value ("y":"p").
type ValuePart struct {
	Offset uint64
	Data   []byte
}

// Message is one OpenDHT datagram, parsed. Which fields mean something
// depends on Kind; the zero values are "absent".
type Message struct {
	Kind     Kind
	TID      uint32
	UA       string
	Network  uint32
	IsClient bool

	ID       InfoHash // the sender's node id
	Hash     InfoHash // "h": the key of get/put/listen/refresh/update
	Target   InfoHash // "target" of find
	Token    []byte
	ValueID  uint64
	Nodes4   []byte // compact node records, 26 bytes each
	Nodes6   []byte // 38 bytes each
	Created  int64  // "c": seconds since the epoch; 0 if absent
	SeenAddr netip.Addr
	Values   []*Value
	// ValueSizes are values announced in parts: index in Values order →
	// total size; their data follows in KindValueData messages.
	ValueSizes map[int]uint64
	Refreshed  []uint64
	Expired    []uint64
	Want       Want // 0: not given
	Version    int
	SocketID   uint32
	Query      []byte // "q" of get/listen, raw msgpack, kept opaque

	ErrorCode uint16
	ErrorText string

	Parts map[uint64]ValuePart // KindValueData
}

// Error codes (network_engine.h).
const (
	ErrNonAuthoritative = 203
	ErrUnauthorized     = 401
	ErrNotFound         = 404
)

// ParseMessage reads one datagram. It never panics and never allocates much
// more than the datagram's size, whatever the bytes. The message's byte
// fields point into a copy of data, so the caller may reuse its buffer.
func ParseMessage(data []byte) (*Message, error) {
	o, err := decodeMP(bytes.Clone(data))
	if err != nil {
		return nil, err
	}
	if o.kind != mpMap {
		return nil, fmt.Errorf("a message is a map, not %s", o.kind)
	}
	m := &Message{}
	var y, q string
	var r, u, e, v, a *mpObj
	for i := range o.keys {
		k, val := &o.keys[i], &o.arr[i]
		if k.kind != mpStr {
			continue
		}
		switch string(k.b) {
		case "y":
			y, _ = val.asString()
		case "r":
			r = val
		case "u":
			u = val
		case "e":
			e = val
		case "p":
			v = val
		case "t":
			if m.TID, err = parseTID(val); err != nil {
				return nil, fmt.Errorf("tid: %w", err)
			}
		case "v":
			m.UA, _ = val.asString()
		case "n":
			n, err := val.asUint(32)
			if err != nil {
				return nil, fmt.Errorf("network: %w", err)
			}
			m.Network = uint32(n)
		case "s":
			m.IsClient = val.kind == mpBool && val.u == 1
		case "q":
			q, _ = val.asString()
		case "a":
			a = val
		}
	}
	switch {
	case e != nil:
		m.Kind = KindError
	case r != nil:
		m.Kind = KindReply
	case v != nil:
		m.Kind = KindValueData
		return m, m.parseParts(v)
	case u != nil:
		m.Kind = KindValueUpdate
	case y != "" && y != "q":
		return nil, fmt.Errorf("unknown message type %q", y)
	default:
		found := false
		for k, name := range queryName {
			if name == q {
				m.Kind, found = k, true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown query %q", q)
		}
	}
	body := a
	switch {
	case body == nil && r != nil:
		body = r
	case body == nil && u != nil:
		body = u
	}
	if m.Kind == KindError {
		if e.kind != mpArray || len(e.arr) < 1 {
			return nil, errors.New("error without code")
		}
		code, err := e.arr[0].asUint(16)
		if err != nil {
			return nil, fmt.Errorf("error code: %w", err)
		}
		m.ErrorCode = uint16(code)
		if len(e.arr) > 1 {
			m.ErrorText, _ = e.arr[1].asString()
		}
	}
	if body == nil {
		if m.Kind == KindError {
			return m, nil
		}
		return nil, errors.New("message without arguments")
	}
	if body.kind != mpMap {
		return nil, fmt.Errorf("arguments are a %s, not a map", body.kind)
	}
	return m, m.parseArgs(body)
}

func parseTID(o *mpObj) (uint32, error) {
	if o.kind == mpUint {
		v, err := o.asUint(32)
		return uint32(v), err
	}
	// Old peers send 4 bytes in network order.
	b, err := o.asBytes()
	if err != nil {
		return 0, err
	}
	if len(b) != 4 {
		return 0, fmt.Errorf("%d-byte tid", len(b))
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), nil
}

func (m *Message) parseParts(v *mpObj) error {
	if v.kind != mpMap {
		return fmt.Errorf("value parts are a %s, not a map", v.kind)
	}
	m.Parts = make(map[uint64]ValuePart, len(v.keys))
	for i := range v.keys {
		idx, err := v.keys[i].asUint(32)
		if err != nil {
			return fmt.Errorf("value part index: %w", err)
		}
		o, d := v.arr[i].get("o"), v.arr[i].get("d")
		if o == nil || d == nil {
			continue
		}
		off, err := o.asUint(32)
		if err != nil {
			return fmt.Errorf("value part offset: %w", err)
		}
		data, err := d.asBytes()
		if err != nil {
			return fmt.Errorf("value part data: %w", err)
		}
		m.Parts[idx] = ValuePart{Offset: off, Data: data}
	}
	return nil
}

func (m *Message) parseArgs(body *mpObj) error {
	var err error
	for i := range body.keys {
		k, val := &body.keys[i], &body.arr[i]
		if k.kind != mpStr {
			continue
		}
		key := string(k.b)
		switch key {
		case "id":
			m.ID, err = val.asHash()
		case "h":
			m.Hash, err = val.asHash()
		case "target":
			m.Target, err = val.asHash()
		case "token":
			m.Token, err = val.asBytes()
		case "vid":
			m.ValueID, err = val.asUint(64)
		case "n4":
			m.Nodes4, err = val.asBytes()
		case "n6":
			m.Nodes6, err = val.asBytes()
		case "c":
			m.Created, err = val.asInt()
		case "sa":
			b, e := val.asBytes()
			if e == nil {
				m.SeenAddr, _ = netip.AddrFromSlice(b)
			}
		case "values":
			err = m.parseValues(val)
		case "re":
			m.Refreshed, err = uintList(val)
		case "exp":
			m.Expired, err = uintList(val)
		case "w":
			err = m.parseWant(val)
		case "ve":
			var v int64
			v, err = val.asInt()
			m.Version = int(v)
		case "sid":
			m.SocketID, err = parseTID(val)
		case "q":
			// A query filter; kept whole, to be echoed or ignored.
			m.Query = rawOf(val)
		}
		if err != nil {
			return fmt.Errorf("%q: %w", key, err)
		}
	}
	return nil
}

// rawOf re-encodes an object (only used for the opaque query filter).
func rawOf(o *mpObj) []byte {
	p := newPacker()
	writeMP(p, o)
	return p.bytes()
}

func writeMP(p *packer, o *mpObj) {
	switch o.kind {
	case mpNil:
		p.raw([]byte{0xc0})
	case mpBool:
		p.bool(o.u == 1)
	case mpUint:
		p.uint(o.u)
	case mpInt:
		p.int(o.i)
	case mpStr:
		p.str(string(o.b))
	case mpBin:
		p.bin(o.b)
	case mpArray:
		p.arrayLen(len(o.arr))
		for i := range o.arr {
			writeMP(p, &o.arr[i])
		}
	case mpMap:
		p.mapLen(len(o.arr))
		for i := range o.arr {
			writeMP(p, &o.keys[i])
			writeMP(p, &o.arr[i])
		}
	default: // floats and extensions do not occur in queries
		p.raw([]byte{0xc0})
	}
}

func (m *Message) parseValues(val *mpObj) error {
	if val.kind != mpArray {
		return fmt.Errorf("values are a %s, not an array", val.kind)
	}
	for i := range val.arr {
		item := &val.arr[i]
		if item.kind == mpUint {
			// Announced here, sent in parts.
			if item.u > MaxValueSize+32 {
				continue
			}
			if m.ValueSizes == nil {
				m.ValueSizes = map[int]uint64{}
			}
			m.ValueSizes[i] = item.u
			m.Values = append(m.Values, nil)
			continue
		}
		v, err := valueFrom(item)
		if err != nil {
			// OpenDHT skips values it cannot read; so do we.
			m.Values = append(m.Values, nil)
			continue
		}
		m.Values = append(m.Values, v)
	}
	return nil
}

func (m *Message) parseWant(val *mpObj) error {
	if val.kind != mpArray {
		return fmt.Errorf("want is a %s, not an array", val.kind)
	}
	for i := range val.arr {
		switch af, _ := val.arr[i].asUint(16); af {
		case afInet:
			m.Want |= Want4
		case afInet6:
			m.Want |= Want6
		}
	}
	return nil
}

func uintList(val *mpObj) ([]uint64, error) {
	if val.kind != mpArray {
		return nil, fmt.Errorf("a %s, not an array", val.kind)
	}
	out := make([]uint64, 0, len(val.arr))
	for i := range val.arr {
		v, err := val.arr[i].asUint(64)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
