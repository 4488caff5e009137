package dht

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
)

// ValueType is a value's type id; it decides how long the value lives and
// who may store it.
type ValueType uint16

// The value types OpenDHT and Jami define (default_types.cpp, securedht.h).
const (
	TypeUserData     ValueType = 0
	TypeDhtMessage   ValueType = 1
	TypeIPService    ValueType = 2
	TypeImMessage    ValueType = 3
	TypeTrustRequest ValueType = 4
	TypeICECandidate ValueType = 5
	TypeCertificate  ValueType = 8
)

// MaxValueSize is the largest value OpenDHT stores (64 KiB).
const MaxValueSize = 64 * 1024

// Value is one DHT value. A plain value has Data; a signed one also Owner,
// Seq and Signature; an encrypted one only Cypher until it is decrypted.
type Value struct {
	ID       uint64
	Type     ValueType
	Data     []byte
	UserType string
	Priority uint64

	// Owner is the signer's public key (a DER SubjectPublicKeyInfo on the
	// wire); Seq its edit counter; Recipient the public-key id an
	// encrypted value is for.
	Owner     *rsa.PublicKey
	OwnerDER  []byte
	Seq       uint16
	Recipient InfoHash
	Signature []byte

	// Cypher is an encrypted value's content as received.
	Cypher []byte
}

// Signed says whether the value carries an owner and a signature.
func (v *Value) Signed() bool { return v.OwnerDER != nil }

// Encrypted says whether the value is still encrypted.
func (v *Value) Encrypted() bool { return v.Cypher != nil }

// toSign is the canonical body that is signed, and that an encrypted value
// encrypts (with its signature): keys in exactly msgpack-c's order.
func (v *Value) packToSign(p *packer) {
	n := 2
	if v.OwnerDER != nil {
		n += 2
		if !v.Recipient.IsZero() {
			n++
		}
	}
	if v.UserType != "" {
		n++
	}
	p.mapLen(n)
	if v.OwnerDER != nil {
		p.str("seq")
		p.uint(uint64(v.Seq))
		p.str("owner")
		p.bin(v.OwnerDER)
		if !v.Recipient.IsZero() {
			p.str("to")
			p.bin(v.Recipient[:])
		}
	}
	p.str("type")
	p.uint(uint64(v.Type))
	p.str("data")
	p.bin(v.Data)
	if v.UserType != "" {
		p.str("utype")
		p.str(v.UserType)
	}
}

// signedBytes are the bytes a signature covers.
func (v *Value) signedBytes() []byte {
	p := newPacker()
	v.packToSign(p)
	return p.bytes()
}

// packBody writes "dat": the cypher of an encrypted value, else the body
// and its signature.
func (v *Value) packBody(p *packer) {
	if v.Cypher != nil {
		p.bin(v.Cypher)
		return
	}
	if v.Signature != nil {
		p.mapLen(2)
	} else {
		p.mapLen(1)
	}
	p.str("body")
	v.packToSign(p)
	if v.Signature != nil {
		p.str("sig")
		p.bin(v.Signature)
	}
}

// Pack writes the value as it goes on the wire.
func (v *Value) Pack() []byte {
	p := newPacker()
	v.pack(p)
	return p.bytes()
}

func (v *Value) pack(p *packer) {
	if v.Priority != 0 {
		p.mapLen(3)
	} else {
		p.mapLen(2)
	}
	p.str("id")
	p.uint(v.ID)
	p.str("dat")
	v.packBody(p)
	if v.Priority != 0 {
		p.str("p")
		p.uint(v.Priority)
	}
}

// UnpackValue reads a packed value.
func UnpackValue(data []byte) (*Value, error) {
	o, err := decodeMP(data)
	if err != nil {
		return nil, err
	}
	return valueFrom(&o)
}

func valueFrom(o *mpObj) (*Value, error) {
	if o.kind != mpMap {
		return nil, fmt.Errorf("a value is a map, not %s", o.kind)
	}
	v := &Value{}
	rid := o.get("id")
	if rid == nil {
		return nil, errors.New("value without id")
	}
	var err error
	if v.ID, err = rid.asUint(64); err != nil {
		return nil, fmt.Errorf("value id: %w", err)
	}
	if rp := o.get("p"); rp != nil {
		if v.Priority, err = rp.asUint(32); err != nil {
			return nil, fmt.Errorf("value priority: %w", err)
		}
	}
	dat := o.get("dat")
	if dat == nil {
		return nil, errors.New("value without dat")
	}
	if err = v.unpackBody(dat); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Value) unpackBody(dat *mpObj) error {
	if dat.kind == mpBin {
		v.Cypher = append([]byte{}, dat.b...)
		return nil
	}
	body := dat.get("body")
	if body == nil {
		return errors.New("value without body")
	}
	rdata := body.get("data")
	if rdata == nil {
		return errors.New("value without data")
	}
	data, err := rdata.asBytes()
	if err != nil {
		return fmt.Errorf("value data: %w", err)
	}
	v.Data = append([]byte{}, data...)
	rtype := body.get("type")
	if rtype == nil {
		return errors.New("value without type")
	}
	t, err := rtype.asUint(16)
	if err != nil {
		return fmt.Errorf("value type: %w", err)
	}
	v.Type = ValueType(t)
	if ru := body.get("utype"); ru != nil {
		if v.UserType, err = ru.asString(); err != nil {
			return fmt.Errorf("value utype: %w", err)
		}
	}
	rowner := body.get("owner")
	if rowner == nil {
		return nil
	}
	rseq := body.get("seq")
	if rseq == nil {
		return errors.New("signed value without seq")
	}
	seq, err := rseq.asUint(16)
	if err != nil {
		return fmt.Errorf("value seq: %w", err)
	}
	v.Seq = uint16(seq)
	der, err := rowner.asBytes()
	if err != nil {
		return fmt.Errorf("value owner: %w", err)
	}
	v.OwnerDER = append([]byte{}, der...)
	if v.Owner, err = parseRSAPublicKey(v.OwnerDER); err != nil {
		return fmt.Errorf("value owner: %w", err)
	}
	if rto := body.get("to"); rto != nil {
		if v.Recipient, err = rto.asHash(); err != nil {
			return fmt.Errorf("value recipient: %w", err)
		}
	}
	rsig := dat.get("sig")
	if rsig == nil {
		return errors.New("signed value without signature")
	}
	sig, err := rsig.asBytes()
	if err != nil {
		return fmt.Errorf("value signature: %w", err)
	}
	v.Signature = append([]byte{}, sig...)
	return nil
}

// parseRSAPublicKey reads a DER SubjectPublicKeyInfo holding an RSA key
// (Jami's and OpenDHT's identities are RSA).
func parseRSAPublicKey(der []byte) (*rsa.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	rsaPub, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, not RSA", pub)
	}
	return rsaPub, nil
}
