package dht

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// A small msgpack reader for untrusted datagrams. It decodes a whole
// message into a tree whose strings and binaries are slices of the input (no
// copies), and it checks every length against the bytes left before
// allocating, so no datagram can make it allocate more than a few times its
// own size, and nesting is bounded.

// mpKind is the kind of a decoded msgpack object.
type mpKind uint8

const (
	mpNil mpKind = iota
	mpBool
	mpInt  // negative integers
	mpUint // non-negative integers
	mpFloat
	mpStr
	mpBin
	mpArray
	mpMap
	mpExt
)

func (k mpKind) String() string {
	return [...]string{"nil", "bool", "int", "uint", "float", "str", "bin", "array", "map", "ext"}[k]
}

// mpObj is one decoded object.
type mpObj struct {
	kind mpKind
	u    uint64 // uint, bool (0/1)
	i    int64  // int
	b    []byte // str, bin, ext
	arr  []mpObj
	keys []mpObj // map keys, parallel to arr (the values)
}

// maxDepth bounds nesting: OpenDHT messages are at most a few levels deep.
const maxDepth = 16

var errTruncated = errors.New("msgpack: truncated")

type mpReader struct {
	buf []byte
	off int
}

// decodeMP decodes exactly one object filling all of data.
func decodeMP(data []byte) (mpObj, error) {
	r := mpReader{buf: data}
	o, err := r.read(0)
	if err != nil {
		return o, err
	}
	if r.off != len(data) {
		return o, fmt.Errorf("msgpack: %d trailing bytes", len(data)-r.off)
	}
	return o, nil
}

func (r *mpReader) need(n uint64) error {
	if n > uint64(len(r.buf)-r.off) {
		return errTruncated
	}
	return nil
}

func (r *mpReader) bytes(n uint64) ([]byte, error) {
	if err := r.need(n); err != nil {
		return nil, err
	}
	b := r.buf[r.off : r.off+int(n)]
	r.off += int(n)
	return b, nil
}

func (r *mpReader) uintN(size int) (uint64, error) {
	b, err := r.bytes(uint64(size))
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	default:
		return binary.BigEndian.Uint64(b), nil
	}
}

func (r *mpReader) read(depth int) (mpObj, error) {
	if depth > maxDepth {
		return mpObj{}, errors.New("msgpack: nested too deep")
	}
	if err := r.need(1); err != nil {
		return mpObj{}, err
	}
	c := r.buf[r.off]
	r.off++
	switch {
	case c <= 0x7f:
		return mpObj{kind: mpUint, u: uint64(c)}, nil
	case c >= 0xe0:
		return mpObj{kind: mpInt, i: int64(int8(c))}, nil
	case c&0xf0 == 0x80:
		return r.mapOf(uint64(c&0x0f), depth)
	case c&0xf0 == 0x90:
		return r.arrayOf(uint64(c&0x0f), depth)
	case c&0xe0 == 0xa0:
		b, err := r.bytes(uint64(c & 0x1f))
		return mpObj{kind: mpStr, b: b}, err
	}
	switch c {
	case 0xc0:
		return mpObj{kind: mpNil}, nil
	case 0xc2, 0xc3:
		return mpObj{kind: mpBool, u: uint64(c - 0xc2)}, nil
	case 0xc4, 0xc5, 0xc6:
		return r.blob(mpBin, 1<<(c-0xc4))
	case 0xd9, 0xda, 0xdb:
		return r.blob(mpStr, 1<<(c-0xd9))
	case 0xcc, 0xcd, 0xce, 0xcf:
		u, err := r.uintN(1 << (c - 0xcc))
		return mpObj{kind: mpUint, u: u}, err
	case 0xd0, 0xd1, 0xd2, 0xd3:
		size := 1 << (c - 0xd0)
		u, err := r.uintN(size)
		var i int64
		switch size {
		case 1:
			i = int64(int8(u))
		case 2:
			i = int64(int16(u))
		case 4:
			i = int64(int32(u))
		default:
			i = int64(u)
		}
		if i >= 0 {
			return mpObj{kind: mpUint, u: uint64(i)}, err
		}
		return mpObj{kind: mpInt, i: i}, err
	case 0xca:
		u, err := r.uintN(4)
		return mpObj{kind: mpFloat, u: math.Float64bits(float64(math.Float32frombits(uint32(u))))}, err
	case 0xcb:
		u, err := r.uintN(8)
		return mpObj{kind: mpFloat, u: u}, err
	case 0xdc, 0xdd:
		n, err := r.uintN(2 << (c - 0xdc))
		if err != nil {
			return mpObj{}, err
		}
		return r.arrayOf(n, depth)
	case 0xde, 0xdf:
		n, err := r.uintN(2 << (c - 0xde))
		if err != nil {
			return mpObj{}, err
		}
		return r.mapOf(n, depth)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16
		b, err := r.bytes(1 + (1 << (c - 0xd4)))
		return mpObj{kind: mpExt, b: b}, err
	case 0xc7, 0xc8, 0xc9:
		n, err := r.uintN(1 << (c - 0xc7))
		if err != nil {
			return mpObj{}, err
		}
		b, err := r.bytes(n + 1)
		return mpObj{kind: mpExt, b: b}, err
	}
	return mpObj{}, fmt.Errorf("msgpack: reserved byte 0x%02x", c)
}

func (r *mpReader) blob(kind mpKind, lenSize int) (mpObj, error) {
	n, err := r.uintN(lenSize)
	if err != nil {
		return mpObj{}, err
	}
	b, err := r.bytes(n)
	return mpObj{kind: kind, b: b}, err
}

func (r *mpReader) arrayOf(n uint64, depth int) (mpObj, error) {
	// Each element takes at least one byte: a count beyond what is left
	// is a lie, refused before allocating.
	if err := r.need(n); err != nil {
		return mpObj{}, err
	}
	o := mpObj{kind: mpArray, arr: make([]mpObj, n)}
	for i := range o.arr {
		var err error
		if o.arr[i], err = r.read(depth + 1); err != nil {
			return mpObj{}, err
		}
	}
	return o, nil
}

func (r *mpReader) mapOf(n uint64, depth int) (mpObj, error) {
	if err := r.need(2 * n); err != nil {
		return mpObj{}, err
	}
	o := mpObj{kind: mpMap, keys: make([]mpObj, n), arr: make([]mpObj, n)}
	for i := range o.arr {
		var err error
		if o.keys[i], err = r.read(depth + 1); err != nil {
			return mpObj{}, err
		}
		if o.arr[i], err = r.read(depth + 1); err != nil {
			return mpObj{}, err
		}
	}
	return o, nil
}

// get finds a string key in a map (nil if absent or not a map).
func (o *mpObj) get(key string) *mpObj {
	if o.kind != mpMap {
		return nil
	}
	for i := range o.keys {
		if k := &o.keys[i]; k.kind == mpStr && string(k.b) == key {
			return &o.arr[i]
		}
	}
	return nil
}

// asUint reads a non-negative integer that fits in bits.
func (o *mpObj) asUint(bits int) (uint64, error) {
	if o.kind != mpUint {
		return 0, fmt.Errorf("want an unsigned integer, have %s", o.kind)
	}
	if bits < 64 && o.u >= 1<<bits {
		return 0, fmt.Errorf("%d does not fit in %d bits", o.u, bits)
	}
	return o.u, nil
}

// asInt reads any integer as int64.
func (o *mpObj) asInt() (int64, error) {
	switch o.kind {
	case mpInt:
		return o.i, nil
	case mpUint:
		if o.u > math.MaxInt64 {
			return 0, fmt.Errorf("%d is too large", o.u)
		}
		return int64(o.u), nil
	}
	return 0, fmt.Errorf("want an integer, have %s", o.kind)
}

// asBytes reads a bin or str (msgpack-c packs blobs as bin, old peers as
// str or as an array of small integers).
func (o *mpObj) asBytes() ([]byte, error) {
	switch o.kind {
	case mpBin, mpStr:
		return o.b, nil
	case mpArray:
		out := make([]byte, len(o.arr))
		for i := range o.arr {
			v, err := o.arr[i].asUint(8)
			if err != nil {
				return nil, fmt.Errorf("byte %d: %w", i, err)
			}
			out[i] = byte(v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want bytes, have %s", o.kind)
}

// asString reads a str.
func (o *mpObj) asString() (string, error) {
	if o.kind != mpStr && o.kind != mpBin {
		return "", fmt.Errorf("want a string, have %s", o.kind)
	}
	return string(o.b), nil
}

// asHash reads an InfoHash (bin of 20 bytes).
func (o *mpObj) asHash() (InfoHash, error) {
	var h InfoHash
	b, err := o.asBytes()
	if err != nil {
		return h, err
	}
	if len(b) != HashLen {
		return h, fmt.Errorf("a hash is %d bytes, not %d", HashLen, len(b))
	}
	copy(h[:], b)
	return h, nil
}
