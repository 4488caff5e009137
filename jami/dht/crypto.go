package dht

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
)

// SecureDht's crypto, as OpenDHT 2.4.12's crypto.cpp does it with GnuTLS
// and nettle: RSASSA-PKCS1-v1_5 over SHA-512 for signatures, and RSA
// PKCS#1 v1.5 (not OAEP) to encrypt — either the data itself when it fits in
// one block, or a random AES key followed by AES-GCM of the data (12-byte
// IV, 16-byte tag, no associated data).

const (
	gcmIVSize  = 12
	gcmTagSize = 16
)

// PublicKeyID is a key's id on the DHT (gnutls_pubkey_get_key_id): the
// SHA-1 of its DER SubjectPublicKeyInfo. Certificates are announced at it.
func PublicKeyID(pub *rsa.PublicKey) (InfoHash, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return InfoHash{}, fmt.Errorf("encoding public key: %w", err)
	}
	return HashOf(der), nil
}

// PublicKeyLongID is the key's 32-byte id (OpenDHT's PkId): the SHA-256 of
// its DER SubjectPublicKeyInfo; Jami's device ids.
func PublicKeyLongID(pub *rsa.PublicKey) ([32]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, fmt.Errorf("encoding public key: %w", err)
	}
	return sha256.Sum256(der), nil
}

// Sign makes v a value signed by key: it records the owner and signs the
// canonical body.
func (v *Value) Sign(key *rsa.PrivateKey) error {
	if v.Cypher != nil {
		return errors.New("cannot sign an encrypted value")
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("encoding public key: %w", err)
	}
	v.Owner, v.OwnerDER = &key.PublicKey, der
	sum := sha512.Sum512(v.signedBytes())
	if v.Signature, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA512, sum[:]); err != nil {
		return fmt.Errorf("signing value: %w", err)
	}
	return nil
}

// ErrBadSignature is a signed value whose signature does not match.
var ErrBadSignature = errors.New("value signature does not match its owner")

// Verify checks a signed value's signature against its owner.
func (v *Value) Verify() error {
	if !v.Signed() || v.Owner == nil {
		return errors.New("value is not signed")
	}
	sum := sha512.Sum512(v.signedBytes())
	if err := rsa.VerifyPKCS1v15(v.Owner, crypto.SHA512, sum[:], v.Signature); err != nil {
		return ErrBadSignature
	}
	return nil
}

// EncryptFor makes the encrypted form of v for recipient: v is addressed to
// the recipient's key id, signed by from, and its body with the signature
// encrypted; only the value id stays in clear. v itself is not changed.
func (v *Value) EncryptFor(from *rsa.PrivateKey, recipient *rsa.PublicKey) (*Value, error) {
	if v.Cypher != nil {
		return nil, errors.New("value is already encrypted")
	}
	to, err := PublicKeyID(recipient)
	if err != nil {
		return nil, err
	}
	signed := *v
	signed.Recipient = to
	if err = signed.Sign(from); err != nil {
		return nil, err
	}
	p := newPacker()
	signed.packBody(p)
	cypher, err := Encrypt(recipient, p.bytes())
	if err != nil {
		return nil, err
	}
	return &Value{ID: v.ID, Cypher: cypher}, nil
}

// Decrypt opens an encrypted value with key: it must be addressed to key
// and signed by its owner.
func (v *Value) Decrypt(key *rsa.PrivateKey) (*Value, error) {
	if v.Cypher == nil {
		return nil, errors.New("value is not encrypted")
	}
	plain, err := Decrypt(key, v.Cypher)
	if err != nil {
		return nil, err
	}
	o, err := decodeMP(plain)
	if err != nil {
		return nil, fmt.Errorf("decrypted value: %w", err)
	}
	out := &Value{ID: v.ID, Priority: v.Priority}
	if err = out.unpackBody(&o); err != nil {
		return nil, fmt.Errorf("decrypted value: %w", err)
	}
	self, err := PublicKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if out.Recipient != self {
		return nil, fmt.Errorf("value is for %s, not this key (%s)", out.Recipient, self)
	}
	if !out.Signed() {
		return nil, errors.New("decrypted value is not signed")
	}
	if err = out.Verify(); err != nil {
		return nil, err
	}
	return out, nil
}

// Encrypt encrypts data for pub as OpenDHT's PublicKey::encrypt does.
func Encrypt(pub *rsa.PublicKey, data []byte) ([]byte, error) {
	k := pub.Size()
	maxBlock := k - 11
	if len(data) <= maxBlock {
		return rsa.EncryptPKCS1v15(rand.Reader, pub, data)
	}
	keySize := aesKeySize(maxBlock)
	if keySize == 0 {
		return nil, errors.New("RSA key too short for AES-128")
	}
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	block, err := rsa.EncryptPKCS1v15(rand.Reader, pub, key)
	if err != nil {
		return nil, fmt.Errorf("encrypting AES key: %w", err)
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, k, k+gcmIVSize+len(data)+gcmTagSize)
	copy(out, block)
	iv := make([]byte, gcmIVSize)
	if _, err = rand.Read(iv); err != nil {
		return nil, err
	}
	out = append(out, iv...)
	return gcm.Seal(out, iv, data, nil), nil
}

// Decrypt undoes Encrypt with the private key.
func Decrypt(key *rsa.PrivateKey, cypher []byte) ([]byte, error) {
	k := key.Size()
	switch {
	case len(cypher) < k:
		return nil, errors.New("cypher shorter than one RSA block")
	case len(cypher) == k:
		return rsa.DecryptPKCS1v15(rand.Reader, key, cypher)
	}
	aesKey, err := rsa.DecryptPKCS1v15(rand.Reader, key, cypher[:k])
	if err != nil {
		return nil, fmt.Errorf("decrypting AES key: %w", err)
	}
	rest := cypher[k:]
	if len(rest) < gcmIVSize+gcmTagSize {
		return nil, errors.New("AES-GCM part too short")
	}
	gcm, err := newGCM(aesKey)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, rest[:gcmIVSize], rest[gcmIVSize:], nil)
	if err != nil {
		return nil, fmt.Errorf("decrypting: %w", err)
	}
	return plain, nil
}

// aesKeySize is the largest AES key that fits in maxBlock bytes.
func aesKeySize(maxBlock int) int {
	for _, s := range []int{32, 24, 16} {
		if s <= maxBlock {
			return s
		}
	}
	return 0
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if l := len(key); l != 16 && l != 24 && l != 32 {
		return nil, fmt.Errorf("AES key of %d bytes", l)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithNonceSize(block, gcmIVSize)
}
