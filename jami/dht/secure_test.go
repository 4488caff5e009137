package dht

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/pion/transport/v4/test"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func selfSigned(t *testing.T, key *rsa.PrivateKey, serial int64) []byte {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "voipbot test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return der
}

func TestSecureSignedEncryptedAndCertificates(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	nodes := localNetwork(t, 12)
	ctx := ctxFor(t)
	a, b := testKeys(t)
	alice := NewSecure(nodes[1], &Identity{Key: a, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: selfSigned(t, a, 1)})})
	bob := NewSecure(nodes[8], &Identity{Key: b})
	eve := NewSecure(nodes[5], &Identity{Key: mustKey(t)})

	// Signed, then edited: the edit gets the next seq and replaces it.
	key := HashString("signed-key")
	_, err := alice.PutSigned(ctx, key, &Value{ID: 5, Data: []byte("one")})
	require.NoError(t, err)
	_, err = alice.PutSigned(ctx, key, &Value{ID: 5, Data: []byte("two")})
	require.NoError(t, err)
	values, err := bob.Get(ctx, key)
	require.NoError(t, err)
	require.Len(t, values, 1)
	assert.Equal(t, []byte("two"), values[0].Data)
	assert.Equal(t, uint16(1), values[0].Seq)

	// Encrypted for bob: bob reads it, eve does not.
	inbox := HashString("bob-inbox")
	_, err = alice.PutEncrypted(ctx, inbox, &b.PublicKey, &Value{Type: TypeImMessage, Data: bytes.Repeat([]byte("secret "), 200)})
	require.NoError(t, err)
	values, err = bob.Get(ctx, inbox)
	require.NoError(t, err)
	require.Len(t, values, 1)
	assert.Equal(t, bytes.Repeat([]byte("secret "), 200), values[0].Data)
	assert.True(t, values[0].Owner.Equal(&a.PublicKey), "signed by alice")
	values, err = eve.Get(ctx, inbox)
	require.NoError(t, err)
	assert.Empty(t, values)

	// Alice's certificate, announced at her key id, found by bob.
	_, err = alice.AnnounceCertificate(ctx)
	require.NoError(t, err)
	ders, pub, err := bob.FindCertificate(ctx, alice.id.KeyID())
	require.NoError(t, err)
	assert.True(t, pub.Equal(&a.PublicKey))
	assert.Len(t, ders, 1)
}

func mustKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return k
}

// GnuTLS (Jami) makes certificates with negative serial numbers; Go's
// parser refuses them, the key is still read.
func TestNegativeSerialCertificate(t *testing.T) {
	a, _ := testKeys(t)
	der := selfSigned(t, a, 0x7f)
	// The serial is the first INTEGER of the TBS: 02 01 7f → 02 01 ff (-1).
	i := bytes.Index(der, []byte{0x02, 0x01, 0x7f})
	require.Positive(t, i)
	der[i+2] = 0xff
	_, err := x509.ParseCertificate(der)
	require.Error(t, err, "Go refuses the negative serial")
	pub, err := CertificatePublicKey(der)
	require.NoError(t, err)
	assert.True(t, pub.Equal(&a.PublicKey))
}
