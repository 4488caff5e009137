package jami

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/voipbot/voipbot/jami/dht"
)

// A Jami account, as jami-daemon 13.7.0 makes one (archive_account_manager
// createAccount, OpenDHT Certificate::generate): a self-signed "Jami CA"
// certificate, an account certificate signed by it that is itself a CA,
// and a device certificate signed by the account. Keys are RSA-4096; each
// certificate's subject has CN and UID = the key's id (SHA-1 of its
// SubjectPublicKeyInfo), which is also its subject key id; 10 years valid.
//
// The account id — the 40 hex digits a Jami user adds or calls — is the
// account key's id. Devices are found on the DHT through a "device
// announcement" the account key signs, stored at the account id.

// KeyBits is the RSA key size of new accounts (Jami's).
var KeyBits = 4096

const certValidity = 10 * 365 * 24 * time.Hour

// oidUID is the LDAP userid attribute (0.9.2342.19200300.100.1.1).
var oidUID = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}

// Account is a Jami account with one device (the bot).
type Account struct {
	CAKey       *rsa.PrivateKey // may be nil for an imported account without it
	CACert      *x509.Certificate
	AccountKey  *rsa.PrivateKey
	AccountCert *x509.Certificate
	DeviceKey   *rsa.PrivateKey
	DeviceCert  *x509.Certificate
	// EthKey is the account's secp256k1 secret for Jami's name service; it is
	// kept so that an exported archive is complete.
	EthKey []byte
}

// NewAccount makes a new account and device.
func NewAccount(deviceName string) (*Account, error) {
	a := &Account{EthKey: make([]byte, 32)}
	if _, err := rand.Read(a.EthKey); err != nil {
		return nil, err
	}
	var err error
	if a.CAKey, a.CACert, err = newCertificate("Jami CA", nil, nil, true); err != nil {
		return nil, fmt.Errorf("making the account's CA: %w", err)
	}
	if a.AccountKey, a.AccountCert, err = newCertificate("Jami", a.CAKey, a.CACert, true); err != nil {
		return nil, fmt.Errorf("making the account certificate: %w", err)
	}
	if err = a.NewDevice(deviceName); err != nil {
		return nil, err
	}
	return a, nil
}

// NewDevice makes a new device key and certificate for the account (an
// imported account gets a device of its own).
func (a *Account) NewDevice(name string) error {
	if name == "" {
		name = "Jami device"
	}
	key, cert, err := newCertificate(name, a.AccountKey, a.AccountCert, false)
	if err != nil {
		return fmt.Errorf("making the device certificate: %w", err)
	}
	a.DeviceKey, a.DeviceCert = key, cert
	return nil
}

// newCertificate makes a key and a certificate for it, signed by the
// issuer (self-signed without one).
func newCertificate(name string, issuerKey *rsa.PrivateKey, issuer *x509.Certificate, isCA bool) (*rsa.PrivateKey, *x509.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, KeyBits)
	if err != nil {
		return nil, nil, err
	}
	id, err := dht.PublicKeyID(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	// OpenDHT writes a random 64-bit serial; Go cannot write a negative one
	// (GnuTLS's often are), so ours are random and positive.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{CommonName: name, ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: oidUID, Value: id.String()},
		}},
		SubjectKeyId:          id[:],
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		SignatureAlgorithm:    x509.SHA384WithRSA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageDataEncipherment
	}
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer, issuerKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}

// ID is the account id (the "Jami ID").
func (a *Account) ID() dht.InfoHash {
	id, _ := dht.PublicKeyID(&a.AccountKey.PublicKey)
	return id
}

// DeviceID is the device's key id: where its certificate is announced, and
// what device announcements name.
func (a *Account) DeviceID() dht.InfoHash {
	id, _ := dht.PublicKeyID(&a.DeviceKey.PublicKey)
	return id
}

// DeviceLongID is the device id jami-daemon shows (SHA-256 of the key).
func (a *Account) DeviceLongID() [32]byte {
	id, _ := dht.PublicKeyLongID(&a.DeviceKey.PublicKey)
	return id
}

// DeviceChainPEM is the device's certificate chain, device first: what is
// announced on the DHT at DeviceID.
func (a *Account) DeviceChainPEM() []byte {
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.DeviceCert.Raw})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.AccountCert.Raw})...)
	if a.CACert != nil {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.CACert.Raw})...)
	}
	return out
}

// DeviceChain is the device's chain as DER, device first: what it presents
// in TLS, the same as DeviceChainPEM.
func (a *Account) DeviceChain() [][]byte {
	chain := [][]byte{a.DeviceCert.Raw, a.AccountCert.Raw}
	if a.CACert != nil {
		chain = append(chain, a.CACert.Raw)
	}
	return chain
}

// DeviceIdentity is the SecureDht identity the device signs and decrypts
// with.
func (a *Account) DeviceIdentity() *dht.Identity {
	return &dht.Identity{Key: a.DeviceKey, CertPEM: a.DeviceChainPEM()}
}

// DeviceAnnouncement is the value that tells the DHT this device belongs to
// the account: {dev: device id, pk: device public key} as msgpack, type
// USER_DATA, signed by the account key, put at the account id.
func (a *Account) DeviceAnnouncement() (*dht.Value, error) {
	spki, err := x509.MarshalPKIXPublicKey(&a.DeviceKey.PublicKey)
	if err != nil {
		return nil, err
	}
	dev := a.DeviceID()
	v := &dht.Value{ID: dht.RandomValueID(), Type: dht.TypeUserData, Data: packAnnouncement(dev, spki)}
	if err = v.Sign(a.AccountKey); err != nil {
		return nil, err
	}
	return v, nil
}

// VerifyChain checks that the device certificate chains to the account's
// CA (or, without one, to the account certificate).
func (a *Account) VerifyChain() error {
	roots := x509.NewCertPool()
	inter := x509.NewCertPool()
	if a.CACert != nil {
		roots.AddCert(a.CACert)
		inter.AddCert(a.AccountCert)
	} else {
		roots.AddCert(a.AccountCert)
	}
	_, err := a.DeviceCert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("device certificate does not chain to the account: %w", err)
	}
	if a.DeviceCert.IsCA {
		return errors.New("the device certificate is a CA")
	}
	return nil
}

// LoadStored reads an account and its device as the bot stores them: the
// account archive (unencrypted), the device key (PKCS#8 PEM) and the device
// certificate (PEM).
func LoadStored(archive []byte, keyPEM, certPEM string) (*Account, error) {
	acc, err := ImportArchive(archive, "")
	if err != nil {
		return nil, fmt.Errorf("reading the stored Jami account: %w", err)
	}
	if acc.DeviceKey, err = parseKey([]byte(keyPEM)); err != nil {
		return nil, fmt.Errorf("reading the stored device key: %w", err)
	}
	certs, err := parseCerts([]byte(certPEM))
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("reading the stored device certificate: %w", errors.Join(err, errors.New("none")))
	}
	acc.DeviceCert = certs[0]
	return acc, nil
}
