package guestlink

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
)

const (
	// tokenBytes is how much randomness a token carries (256 bits).
	tokenBytes = 32
	// TokenLen is the length of a token: tokenBytes in base64url without
	// padding.
	TokenLen = 43
	// IDLen is the length of a link's public id: the first IDLen hex digits
	// of the token's hash.
	IDLen = 10
)

// tokenEncoding is base64url without padding, refusing non-canonical input
// (a last character whose unused bits are not zero).
var tokenEncoding = base64.RawURLEncoding.Strict()

// newToken draws a token from r (crypto/rand.Reader outside tests).
func newToken(r io.Reader) (string, error) {
	var b [tokenBytes]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("drawing a link token: %w", err)
	}
	return tokenEncoding.EncodeToString(b[:]), nil
}

// ParseToken checks that s has exactly the shape of a token (TokenLen
// characters of the base64url alphabet, canonical) and returns it. Anything
// else is ErrMalformed: no lookup is worth making for it.
func ParseToken(s string) (string, error) {
	if len(s) != TokenLen {
		return "", ErrMalformed
	}
	for i := range len(s) {
		if !isTokenChar(s[i]) {
			return "", ErrMalformed
		}
	}
	// The alphabet is checked above because the decoder skips '\r' and
	// '\n'; decoding catches a last character with stray low bits.
	if b, err := tokenEncoding.DecodeString(s); err != nil || len(b) != tokenBytes {
		return "", ErrMalformed
	}
	return s, nil
}

func isTokenChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// Hash is what the store keeps of a token: hex(SHA-256(token)). The token
// itself is never stored.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// IDOf is the public id of the link a token opens (whether or not such a
// link exists): the first IDLen hex digits of Hash(token). The web layer
// can rate-limit by it before any lookup.
func IDOf(token string) string {
	return Hash(token)[:IDLen]
}

// validID reports whether s has the shape of a public id.
func validID(s string) bool {
	if len(s) != IDLen {
		return false
	}
	for i := range len(s) {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

// isHexDigit: lowercase only, as Hash writes them.
func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
}

// defaultRand is the source of tokens.
var defaultRand io.Reader = rand.Reader
