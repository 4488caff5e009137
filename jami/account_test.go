//go:debug x509negativeserial=1
package jami

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // the ids are SHA-1 by definition
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/jami/dht"
)

var (
	accountOnce sync.Once
	testAccount *Account
)

// account is one account for the tests, with 2048-bit keys (Jami's are
// 4096; the structure is what is tested, and 4096-bit keys take seconds).
func account(t *testing.T) *Account {
	accountOnce.Do(func() {
		KeyBits = 2048
		var err error
		testAccount, err = NewAccount("voipbot")
		if err != nil {
			panic(err)
		}
	})
	return testAccount
}

func TestAccountChainAndIDs(t *testing.T) {
	a := account(t)
	require.NoError(t, a.VerifyChain())
	spki, err := x509.MarshalPKIXPublicKey(&a.AccountKey.PublicKey)
	require.NoError(t, err)
	assert.Equal(t, dht.InfoHash(sha1.Sum(spki)), a.ID(), "account id = SHA-1 of the account key")

	for _, c := range []struct {
		cert *x509.Certificate
		cn   string
		ca   bool
		key  *rsa.PrivateKey
	}{{a.CACert, "Jami CA", true, a.CAKey}, {a.AccountCert, "Jami", true, a.AccountKey}, {a.DeviceCert, "voipbot", false, a.DeviceKey}} {
		assert.Equal(t, c.cn, c.cert.Subject.CommonName)
		assert.Equal(t, c.ca, c.cert.IsCA)
		id, err := dht.PublicKeyID(&c.key.PublicKey)
		require.NoError(t, err)
		assert.Equal(t, id[:], c.cert.SubjectKeyId, "subject key id = key id")
		uid := ""
		for _, n := range c.cert.Subject.Names {
			if n.Type.Equal(asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}) {
				uid, _ = n.Value.(string)
			}
		}
		assert.Equal(t, id.String(), uid, "UID = key id in hex")
		assert.Equal(t, x509.SHA384WithRSA, c.cert.SignatureAlgorithm)
	}
	assert.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageDataEncipherment, a.DeviceCert.KeyUsage)
	long := a.DeviceLongID()
	assert.Len(t, hex.EncodeToString(long[:]), 64)
}

func TestDeviceAnnouncement(t *testing.T) {
	a := account(t)
	v, err := a.DeviceAnnouncement()
	require.NoError(t, err)
	require.NoError(t, v.Verify())
	id, err := dht.PublicKeyID(v.Owner)
	require.NoError(t, err)
	assert.Equal(t, a.ID(), id, "signed by the account key")
	back, err := dht.UnpackValue(v.Pack())
	require.NoError(t, err)
	ann, err := ParseAnnouncement(back.Data)
	require.NoError(t, err)
	assert.Equal(t, a.DeviceID(), ann.Device)
	pub, err := x509.ParsePKIXPublicKey(ann.PublicKey)
	require.NoError(t, err)
	assert.True(t, pub.(*rsa.PublicKey).Equal(&a.DeviceKey.PublicKey))
	// The wire form: a map of exactly dev and pk, bins.
	assert.True(t, bytes.HasPrefix(back.Data, append([]byte{0x82, 0xa3, 'd', 'e', 'v', 0xc4, 20}, ann.Device[:]...)))
}

func TestArchiveRoundTrip(t *testing.T) {
	a := account(t)
	plain, err := a.Export("")
	require.NoError(t, err)
	// Plain archives are gzip'd JSON with Jami's keys.
	zr, err := gzip.NewReader(bytes.NewReader(plain))
	require.NoError(t, err)
	js, err := io.ReadAll(zr)
	require.NoError(t, err)
	var doc map[string]string
	require.NoError(t, json.Unmarshal(js, &doc))
	for _, k := range []string{"ringCaKey", "ringAccountKey", "ringAccountCert", "ethKey"} {
		assert.NotEmpty(t, doc[k], k)
	}

	b, err := ImportArchive(plain, "")
	require.NoError(t, err)
	assert.Equal(t, a.ID(), b.ID())
	assert.True(t, a.CAKey.Equal(b.CAKey))
	assert.Equal(t, a.EthKey, b.EthKey)
	require.NoError(t, b.NewDevice("second"))
	require.NoError(t, b.VerifyChain(), "a new device on the imported account chains to it")
	assert.NotEqual(t, a.DeviceID(), b.DeviceID())

	sealed, err := a.Export("correct horse")
	require.NoError(t, err)
	_, err = ImportArchive(sealed, "")
	assert.ErrorContains(t, err, "a password is needed")
	_, err = ImportArchive(sealed, "wrong")
	assert.ErrorContains(t, err, "does not open with this password")
	c, err := ImportArchive(sealed, "correct horse")
	require.NoError(t, err)
	assert.Equal(t, a.ID(), c.ID())

	_, err = ImportArchive([]byte(`{"ringAccountCert":"x"}`), "")
	assert.ErrorContains(t, err, "no account key")

	// The salt is random: an encrypted archive may begin like gzip or
	// JSON, and must still open with its password.
	js, err = archiveJSON(plain, "")
	require.NoError(t, err)
	var zbuf bytes.Buffer
	zw := zlib.NewWriter(&zbuf)
	_, _ = zw.Write(js)
	require.NoError(t, zw.Close())
	for _, prefix := range []string{"{", " {", "\x1f\x8b"} {
		salt := append([]byte(prefix), make([]byte, saltSize-len(prefix))...)
		sealed, err := encryptWithSalt(zbuf.Bytes(), "pw", salt)
		require.NoError(t, err)
		d, err := ImportArchive(sealed, "pw")
		require.NoError(t, err, "salt beginning %q", prefix)
		assert.Equal(t, a.ID(), d.ID())
	}
	_, err = ImportArchive(plain, "unneeded")
	require.NoError(t, err, "a plain archive opens whatever the password")
}
