package dht

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // OpenDHT's InfoHash is SHA-1 by definition, not for security
	"encoding/hex"
	"fmt"
)

// HashLen is the length of an InfoHash: 160 bits.
const HashLen = 20

// InfoHash is a key of the DHT and a node's id.
type InfoHash [HashLen]byte

// HashOf is OpenDHT's InfoHash::get: the SHA-1 of data.
func HashOf(data []byte) InfoHash { return sha1.Sum(data) }

// HashString hashes a string key, as `dhtnode`'s "g mykey" does.
func HashString(key string) InfoHash { return HashOf([]byte(key)) }

// RandomHash is a random id (node ids are random).
func RandomHash() InfoHash {
	var h InfoHash
	_, _ = rand.Read(h[:])
	return h
}

// ParseHash reads 40 hex digits.
func ParseHash(s string) (InfoHash, error) {
	var h InfoHash
	if len(s) != 2*HashLen {
		return h, fmt.Errorf("an info hash is %d hex digits, not %d", 2*HashLen, len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("info hash %q: %w", s, err)
	}
	return h, nil
}

func (h InfoHash) String() string { return hex.EncodeToString(h[:]) }

// IsZero says whether h is all zeros (OpenDHT's "no hash").
func (h InfoHash) IsZero() bool { return h == InfoHash{} }

// XorCmp orders a and b by their distance to h: negative if a is closer.
func (h InfoHash) XorCmp(a, b InfoHash) int {
	for i := range HashLen {
		da, db := a[i]^h[i], b[i]^h[i]
		if da != db {
			if da < db {
				return -1
			}
			return 1
		}
	}
	return 0
}

// CommonBits is the length of the prefix h and o share.
func (h InfoHash) CommonBits(o InfoHash) int {
	for i := range HashLen {
		if x := h[i] ^ o[i]; x != 0 {
			n := 0
			for x&0x80 == 0 {
				x <<= 1
				n++
			}
			return i*8 + n
		}
	}
	return HashLen * 8
}

// Less orders hashes as numbers.
func (h InfoHash) Less(o InfoHash) bool { return bytes.Compare(h[:], o[:]) < 0 }
