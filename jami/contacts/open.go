package contacts

import (
	"crypto/rsa"
	"errors"
	"fmt"

	"github.com/voipbot/voipbot/jami/dht"
)

// Errors of Open, each wrapped with the detail.
var (
	// ErrNotEncrypted: a plain or only signed value at an inbox (a trust
	// request is always encrypted for its device).
	ErrNotEncrypted = errors.New("not an encrypted value")
	// ErrNotForUs: the value does not decrypt with our device key, or is
	// addressed to another key (a value for another device at the same
	// key, or a damaged one).
	ErrNotForUs = errors.New("not encrypted for this device")
	// ErrBadSignature: it decrypts, but its signature does not match the
	// key it names as its sender.
	ErrBadSignature = errors.New("bad signature")
	// ErrNotTrustRequest: another value type, or another service than
	// Jami's.
	ErrNotTrustRequest = errors.New("not a Jami trust request")
)

// Incoming is a trust request (or confirmation) opened at our inbox.
type Incoming struct {
	Request
	// ValueID is the DHT value's id (a redelivery has the same).
	ValueID uint64
	// From is the sending device's key, which signed the value; FromID its
	// key id (where its certificate chain is announced, which names its
	// account).
	From   *rsa.PublicKey
	FromID dht.InfoHash
}

// Open decrypts a value found at our inbox with our device key, checks that
// it is addressed to us and signed by the key it names, that it is a trust
// request of Jami's, and reads it. It does not say which account sent it:
// that is the sender's certificate chain's business (the caller looks it up
// at FromID and checks that its device key is From).
func Open(v *dht.Value, key *rsa.PrivateKey) (*Incoming, error) {
	if !v.Encrypted() {
		return nil, ErrNotEncrypted
	}
	plain, err := v.Decrypt(key)
	switch {
	case errors.Is(err, dht.ErrBadSignature):
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrNotForUs, err)
	}
	if plain.Type != ValueType {
		return nil, fmt.Errorf("%w: value type %d", ErrNotTrustRequest, plain.Type)
	}
	req, err := Parse(plain.Data)
	if err != nil {
		return nil, err
	}
	if req.Service != Service {
		return nil, fmt.Errorf("%w: service %q", ErrNotTrustRequest, req.Service)
	}
	in := &Incoming{Request: *req, ValueID: v.ID, From: plain.Owner}
	if in.FromID, err = dht.PublicKeyID(plain.Owner); err != nil {
		return nil, err
	}
	return in, nil
}
