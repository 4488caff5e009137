package dht

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
)

// Certificate values (type 8, value id 1): their data is a msgpack bin
// holding the PEM chain, leaf first. GnuTLS reads past the msgpack prefix;
// Go's pem.Decode would skip the first block, so the bin is unwrapped
// first.

// CertificateValue makes the value announcing a PEM chain.
func CertificateValue(pemChain []byte) *Value {
	p := newPacker()
	p.bin(pemChain)
	return &Value{ID: 1, Type: TypeCertificate, Data: append([]byte{}, p.bytes()...)}
}

// CertificateDERs returns the DER certificates of a certificate value, leaf
// first.
func CertificateDERs(v *Value) ([][]byte, error) {
	o, err := decodeMP(v.Data)
	if err != nil {
		return nil, fmt.Errorf("certificate value: %w", err)
	}
	data, err := o.asBytes()
	if err != nil {
		return nil, fmt.Errorf("certificate value: %w", err)
	}
	out := PEMCertificates(data)
	if len(out) == 0 {
		return nil, errors.New("certificate value holds no certificate")
	}
	return out, nil
}

// PEMCertificates returns the DER of each CERTIFICATE block in PEM data.
func PEMCertificates(data []byte) [][]byte {
	var out [][]byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type == "CERTIFICATE" {
			out = append(out, block.Bytes)
		}
	}
}

// CertificatePublicKey returns a DER certificate's RSA key. GnuTLS-made
// certificates (Jami's) may have negative serial numbers, which Go's
// x509 parser refuses since Go 1.23 (unless GODEBUG x509negativeserial=1):
// the key is then read from the certificate's structure directly, which
// needs no serial.
func CertificatePublicKey(der []byte) (*rsa.PublicKey, error) {
	var spki []byte
	if c, err := x509.ParseCertificate(der); err == nil {
		spki = c.RawSubjectPublicKeyInfo
	} else {
		var cert struct {
			TBS struct {
				Version   asn1.RawValue `asn1:"optional,explicit,tag:0"`
				Serial    asn1.RawValue // any INTEGER, negative too
				Signature asn1.RawValue
				Issuer    asn1.RawValue
				Validity  asn1.RawValue
				Subject   asn1.RawValue
				SPKI      asn1.RawValue
				Rest      []asn1.RawValue `asn1:"optional"`
			}
			SigAlg asn1.RawValue
			Sig    asn1.BitString
		}
		if _, asnErr := asn1.Unmarshal(der, &cert); asnErr != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		spki = cert.TBS.SPKI.FullBytes
	}
	return parseRSAPublicKey(spki)
}

// certificateAt says whether v is a certificate whose leaf key's id is hash
// (the certificate store policy).
func certificateAt(hash InfoHash, v *Value) bool {
	ders, err := CertificateDERs(v)
	if err != nil {
		return false
	}
	pub, err := CertificatePublicKey(ders[0])
	if err != nil {
		return false
	}
	id, err := PublicKeyID(pub)
	return err == nil && id == hash
}
