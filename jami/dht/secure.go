package dht

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Identity is a SecureDht identity: a private key and, for announcing it,
// its certificate chain in PEM (leaf first).
type Identity struct {
	Key     *rsa.PrivateKey
	CertPEM []byte
	once    sync.Once
	keyID   InfoHash
}

// KeyID is the identity's public-key id (where its certificate lives).
func (id *Identity) KeyID() InfoHash {
	id.once.Do(func() { id.keyID, _ = PublicKeyID(&id.Key.PublicKey) })
	return id.keyID
}

// Secure is SecureDht over a node: signed and encrypted puts, gets and
// listens that verify signatures and decrypt what is for us, and
// certificates announced and looked up.
type Secure struct {
	*Node
	id *Identity
}

// NewSecure wraps a node with an identity.
func NewSecure(n *Node, id *Identity) *Secure { return &Secure{Node: n, id: id} }

// RandomValueID is a random non-zero value id.
func RandomValueID() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// PutSigned signs v and puts it at hash. An edit of a value we put before
// (same id) gets the next seq, so storing nodes accept it.
func (s *Secure) PutSigned(ctx context.Context, hash InfoHash, v *Value) (PutResult, error) {
	if v.ID == 0 {
		v.ID = RandomValueID()
	}
	if existing, err := s.Node.Get(ctx, hash); err == nil {
		for _, old := range existing {
			if old.ID == v.ID && old.Signed() && old.Owner != nil && old.Owner.Equal(&s.id.Key.PublicKey) && old.Seq >= v.Seq {
				v.Seq = old.Seq + 1
			}
		}
	}
	if err := v.Sign(s.id.Key); err != nil {
		return PutResult{}, err
	}
	return s.Put(ctx, hash, v)
}

// PutEncrypted puts v at hash, encrypted for to and signed by us.
func (s *Secure) PutEncrypted(ctx context.Context, hash InfoHash, to *rsa.PublicKey, v *Value) (PutResult, error) {
	if v.ID == 0 {
		v.ID = RandomValueID()
	}
	enc, err := v.EncryptFor(s.id.Key, to)
	if err != nil {
		return PutResult{}, err
	}
	return s.Put(ctx, hash, enc)
}

// open is SecureDht's checkValue: encrypted values are decrypted (and
// dropped if not for us or badly signed), signed ones verified, plain ones
// passed.
func (s *Secure) open(v *Value) *Value {
	switch {
	case v.Encrypted():
		dec, err := v.Decrypt(s.id.Key)
		if err != nil {
			return nil
		}
		return dec
	case v.Signed():
		if v.Verify() != nil {
			return nil
		}
	}
	return v
}

// Get returns the values at hash that are plain, validly signed, or
// encrypted for us (decrypted).
func (s *Secure) Get(ctx context.Context, hash InfoHash) ([]*Value, error) {
	values, err := s.Node.Get(ctx, hash)
	if err != nil {
		return nil, err
	}
	out := values[:0]
	for _, v := range values {
		if o := s.open(v); o != nil {
			out = append(out, o)
		}
	}
	return out, nil
}

// Listen is Node.Listen with values opened as Get does.
func (s *Secure) Listen(ctx context.Context, hash InfoHash, fn func(*Value)) error {
	return s.Node.Listen(ctx, hash, func(v *Value) {
		if o := s.open(v); o != nil {
			fn(o)
		}
	})
}

// AnnounceCertificate puts our certificate at our key id, as SecureDht does
// when it starts.
func (s *Secure) AnnounceCertificate(ctx context.Context) (PutResult, error) {
	if len(s.id.CertPEM) == 0 {
		return PutResult{}, errors.New("the identity has no certificate")
	}
	return s.Put(ctx, s.id.KeyID(), CertificateValue(s.id.CertPEM))
}

// FindCertificate looks up the certificate announced at a key id and
// returns its chain (DER, leaf first) and the leaf's key, checked to hash
// to keyID.
func (s *Secure) FindCertificate(ctx context.Context, keyID InfoHash) ([][]byte, *rsa.PublicKey, error) {
	values, err := s.Node.Get(ctx, keyID)
	if err != nil {
		return nil, nil, err
	}
	for _, v := range values {
		if v.Type != TypeCertificate || !certificateAt(keyID, v) {
			continue
		}
		ders, err := CertificateDERs(v)
		if err != nil {
			continue
		}
		pub, err := CertificatePublicKey(ders[0])
		if err != nil {
			continue
		}
		return ders, pub, nil
	}
	return nil, nil, fmt.Errorf("no certificate for key %s", keyID)
}
