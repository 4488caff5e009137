package dht

import (
	"bytes"

	"github.com/vmihailenco/msgpack/v5"
)

// packer writes msgpack the way msgpack-c does (smallest integer forms,
// str8 for strings of 32–255 bytes, bin for blobs, even empty ones): the
// bytes a value is signed over must be the same on both sides.
// vmihailenco's encoder writes those forms; errors only come from the
// buffer, which does not fail.
type packer struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func newPacker() *packer {
	p := &packer{}
	p.enc = msgpack.NewEncoder(&p.buf)
	return p
}

func (p *packer) mapLen(n int)   { _ = p.enc.EncodeMapLen(n) }
func (p *packer) arrayLen(n int) { _ = p.enc.EncodeArrayLen(n) }
func (p *packer) str(s string)   { _ = p.enc.EncodeString(s) }
func (p *packer) uint(v uint64)  { _ = p.enc.EncodeUint(v) }
func (p *packer) int(v int64)    { _ = p.enc.EncodeInt(v) }
func (p *packer) bool(v bool)    { _ = p.enc.EncodeBool(v) }

// bin writes a blob as msgpack bin (an empty one too, never nil).
func (p *packer) bin(b []byte) {
	_ = p.enc.EncodeBytesLen(len(b))
	p.buf.Write(b)
}

// raw appends bytes that are already msgpack.
func (p *packer) raw(b []byte) { p.buf.Write(b) }

func (p *packer) bytes() []byte { return p.buf.Bytes() }
