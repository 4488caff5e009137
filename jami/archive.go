package jami

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/argon2"

	"github.com/voipbot/voipbot/jami/dht"
)

// Jami's account archive (jami-daemon accountarchive.cpp, archiver.cpp):
// a JSON object whose keys are base64 PKCS#8 PEM (ringCaKey,
// ringAccountKey), a base64 PEM chain account+CA (ringAccountCert), the
// base64 name-service key (ethKey), and account settings as strings.
// Without a password it is gzip'd; with one it is zlib-compressed, then
// encrypted as OpenDHT's aesEncrypt(data, password) does:
// salt(16) ‖ IV(12) ‖ AES-256-GCM ‖ tag(16), the key being SHA-256 of
// Argon2i(password, salt; t=16, m=64 MiB, p=1, 32 bytes).

const (
	archiveCAKey       = "ringCaKey"
	archiveAccountKey  = "ringAccountKey"
	archiveAccountCert = "ringAccountCert"
	archiveEthKey      = "ethKey"
	saltSize           = 16
	maxArchiveSize     = 64 << 20
)

// Export writes the account as a Jami archive, encrypted if password is
// not empty. The device is not part of it (as in Jami).
func (a *Account) Export(password string) ([]byte, error) {
	doc := map[string]string{}
	if a.CAKey != nil {
		caPEM, err := pkcs8PEM(a.CAKey)
		if err != nil {
			return nil, err
		}
		doc[archiveCAKey] = base64.StdEncoding.EncodeToString(caPEM)
	}
	accPEM, err := pkcs8PEM(a.AccountKey)
	if err != nil {
		return nil, err
	}
	doc[archiveAccountKey] = base64.StdEncoding.EncodeToString(accPEM)
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.AccountCert.Raw})
	if a.CACert != nil {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.CACert.Raw})...)
	}
	doc[archiveAccountCert] = base64.StdEncoding.EncodeToString(chain)
	doc[archiveEthKey] = base64.StdEncoding.EncodeToString(a.EthKey)
	doc["Account.type"] = "RING"
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if password == "" {
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(js)
		if err = zw.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	zw := zlib.NewWriter(&buf)
	_, _ = zw.Write(js)
	if err = zw.Close(); err != nil {
		return nil, err
	}
	return encryptWithPassword(buf.Bytes(), password)
}

// ImportArchive reads a Jami archive (gzip'd, or encrypted with password).
// The account gets no device: call NewDevice.
func ImportArchive(data []byte, password string) (*Account, error) {
	if len(data) > maxArchiveSize {
		return nil, errors.New("the archive is too large")
	}
	js, err := archiveJSON(data, password)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err = json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("the archive is not JSON: %w", err)
	}
	field := func(k string) ([]byte, error) {
		s, ok := doc[k].(string)
		if !ok {
			return nil, nil
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("archive %s: %w", k, err)
		}
		return b, nil
	}
	a := &Account{}
	raw, err := field(archiveAccountKey)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, errors.New("the archive has no account key (ringAccountKey)")
	}
	if a.AccountKey, err = parseKey(raw); err != nil {
		return nil, fmt.Errorf("archive account key: %w", err)
	}
	if raw, err = field(archiveCAKey); err != nil {
		return nil, err
	} else if raw != nil {
		if a.CAKey, err = parseKey(raw); err != nil {
			return nil, fmt.Errorf("archive CA key: %w", err)
		}
	}
	if raw, err = field(archiveAccountCert); err != nil {
		return nil, err
	}
	certs, err := parseCerts(raw)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("archive account certificate: %w", errors.Join(err, errors.New("none")))
	}
	a.AccountCert = certs[0]
	if len(certs) > 1 {
		a.CACert = certs[1]
	}
	if !a.AccountCert.PublicKey.(*rsa.PublicKey).Equal(&a.AccountKey.PublicKey) {
		return nil, errors.New("the archive's account certificate is not for its account key")
	}
	if a.EthKey, err = field(archiveEthKey); err != nil {
		return nil, err
	}
	return a, nil
}

func archiveJSON(data []byte, password string) ([]byte, error) {
	// An encrypted archive starts with a random salt, which may look like
	// gzip or JSON: with a password, decryption is tried first.
	if password != "" {
		plain, err := decryptWithPassword(data, password)
		if err == nil {
			zr, err := zlib.NewReader(bytes.NewReader(plain))
			if err != nil {
				return nil, fmt.Errorf("the decrypted archive: %w", err)
			}
			return io.ReadAll(io.LimitReader(zr, maxArchiveSize))
		}
		if !looksPlain(data) {
			return nil, err
		}
		// A plain archive, and a password it does not need.
	}
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("the archive: %w", err)
		}
		return io.ReadAll(io.LimitReader(zr, maxArchiveSize))
	case looksPlain(data):
		return data, nil
	}
	return nil, errors.New("the archive is encrypted: a password is needed")
}

// looksPlain says whether data is a gzip'd or bare JSON archive.
func looksPlain(data []byte) bool {
	return bytes.HasPrefix(data, []byte{0x1f, 0x8b}) || bytes.HasPrefix(bytes.TrimSpace(data), []byte("{"))
}

// stretchKey is OpenDHT's: SHA-256 of Argon2i(password, salt).
func stretchKey(password string, salt []byte) []byte {
	k := argon2.Key([]byte(password), salt, 16, 64*1024, 1, 32)
	sum := sha256.Sum256(k)
	return sum[:]
}

func encryptWithPassword(data []byte, password string) ([]byte, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return encryptWithSalt(data, password, salt)
}

func encryptWithSalt(data []byte, password string, salt []byte) ([]byte, error) {
	gcm, err := newGCM(stretchKey(password, salt))
	if err != nil {
		return nil, err
	}
	iv := make([]byte, gcm.NonceSize())
	if _, err = rand.Read(iv); err != nil {
		return nil, err
	}
	out := append(append(append([]byte{}, salt...), iv...), gcm.Seal(nil, iv, data, nil)...)
	return out, nil
}

func decryptWithPassword(data []byte, password string) ([]byte, error) {
	if len(data) < saltSize+12+16 {
		return nil, errors.New("the encrypted archive is too short")
	}
	gcm, err := newGCM(stretchKey(password, data[:saltSize]))
	if err != nil {
		return nil, err
	}
	rest := data[saltSize:]
	plain, err := gcm.Open(nil, rest[:12], rest[12:], nil)
	if err != nil {
		return nil, errors.New("the archive does not open with this password")
	}
	return plain, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithNonceSize(block, 12)
}

func pkcs8PEM(key *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseKey reads an RSA private key: PEM (PKCS#8 or PKCS#1) or DER.
func parseKey(data []byte) (*rsa.PrivateKey, error) {
	if block, _ := pem.Decode(data); block != nil {
		data = block.Bytes
	}
	if k, err := x509.ParsePKCS8PrivateKey(data); err == nil {
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("a %T key, not RSA", k)
		}
		return rk, nil
	}
	return x509.ParsePKCS1PrivateKey(data)
}

// parseCerts reads a PEM chain (or one DER certificate). Jami's
// certificates often have negative serial numbers, which crypto/x509 reads
// only with GODEBUG x509negativeserial=1: the voipbot binary sets it
// (//go:debug in its main package).
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	ders := dht.PEMCertificates(data)
	if len(ders) == 0 {
		ders = [][]byte{data}
	}
	var out []*x509.Certificate
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
