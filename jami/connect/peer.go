package connect

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/voipbot/voipbot/jami/dht"
)

// Device is a peer device as the DHT shows it: its certificate chain
// (device, account and, usually, CA) and what it says.
type Device struct {
	ID      dht.InfoHash // SHA-1 of the device key: its DHT key id
	LongID  [32]byte     // SHA-256 of the device key: current Jami's device id
	Account dht.InfoHash // SHA-1 of the account key: the Jami ID
	Key     *rsa.PublicKey
	Chain   [][]byte
}

// Keys are the device's request keys.
func (d Device) Keys() Keys { return KeysFor(d.ID, d.LongID) }

// ParseDevice checks a device chain as jami-daemon does before it trusts a
// peer (foundPeerDevice): the device certificate is issued by the account
// certificate (not self-signed, not a CA itself), and the chain verifies
// with its own top certificate as the only anchor.
func ParseDevice(chain [][]byte) (Device, error) {
	if len(chain) < 2 {
		return Device{}, fmt.Errorf("a device chain of %d certificates (want device and account at least)", len(chain))
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return Device{}, fmt.Errorf("certificate %d of the device chain: %w", i, err)
		}
		certs[i] = c
	}
	dev, acc := certs[0], certs[1]
	if dev.IsCA || dev.CheckSignatureFrom(dev) == nil {
		return Device{}, errors.New("the device certificate is self-signed or a CA")
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(certs[len(certs)-1])
	for _, c := range certs[1 : len(certs)-1] {
		inter.AddCert(c)
	}
	if _, err := dev.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return Device{}, fmt.Errorf("the device chain does not verify to its own CA: %w", err)
	}
	devKey, ok := dev.PublicKey.(*rsa.PublicKey)
	if !ok {
		return Device{}, errors.New("the device key is not RSA")
	}
	accKey, ok := acc.PublicKey.(*rsa.PublicKey)
	if !ok {
		return Device{}, errors.New("the account key is not RSA")
	}
	d := Device{Key: devKey, Chain: chain}
	var err error
	if d.ID, err = dht.PublicKeyID(devKey); err != nil {
		return Device{}, err
	}
	if d.LongID, err = dht.PublicKeyLongID(devKey); err != nil {
		return Device{}, err
	}
	if d.Account, err = dht.PublicKeyID(accKey); err != nil {
		return Device{}, err
	}
	return d, nil
}
