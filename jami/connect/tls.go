package connect

import (
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// Identity is the device the bot is on the Jami network: its key and the
// chain it announces on the DHT (device, account, CA), which it presents,
// byte for byte the same, in TLS.
type Identity struct {
	Key   *rsa.PrivateKey
	Chain [][]byte // DER: device, account, CA
}

// certificate is the identity for crypto/tls.
func (id Identity) certificate() tls.Certificate {
	return tls.Certificate{Certificate: id.Chain, PrivateKey: id.Key}
}

// tlsConfig is the control connection's TLS: 1.3, both sides presenting
// their chain, each checking that the peer's equals the one the DHT has for
// the peer device (expected). The caller is the TLS server (dhtnet's
// roles), and requires the callee's certificate.
func tlsConfig(id Identity, expected [][]byte, server bool) *tls.Config {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.certificate()},
		// The peer is not verified against a CA pool: Jami trusts a device
		// by its chain on the DHT, checked below.
		InsecureSkipVerify: true, //nolint:gosec // verified by VerifyPeerCertificate
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return sameChain(raw, expected)
		},
	}
	if server {
		cfg.ClientAuth = tls.RequireAnyClientCert
	}
	return cfg
}

// errChainDiffers: the chain a peer presented in TLS is not the one its
// device has on the DHT.
var errChainDiffers = errors.New("the peer's TLS certificate chain differs from its chain on the DHT")

// sameChain compares the presented chain with the expected one, byte for
// byte, as jami-daemon does (it compares the PEM of the whole chain).
func sameChain(presented, expected [][]byte) error {
	if len(presented) == 0 {
		return errors.New("the peer presented no certificate")
	}
	if len(presented) != len(expected) {
		return fmt.Errorf("%w (%d certificates, %d on the DHT)", errChainDiffers, len(presented), len(expected))
	}
	for i := range presented {
		if !bytes.Equal(presented[i], expected[i]) {
			return fmt.Errorf("%w (certificate %d)", errChainDiffers, i)
		}
	}
	return nil
}
