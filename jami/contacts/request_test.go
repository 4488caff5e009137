package contacts

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/voipbot/voipbot/jami/dht"
)

// unhex reads hex with spaces (one msgpack item a group).
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return b
}

// The bytes msgpack-c writes for MSGPACK_DEFINE_MAP(service,
// conversationId, payload, confirm), worked out by hand from the msgpack
// spec: fixmap 4, fixstr keys, bin8 payload, true/false.
const (
	// A confirmation (sendTrustRequestConfirm) without conversation.
	confirmVector = "84 a7736572766963 65 a7 63782e72696e67" +
		" ae636f6e766572736174696f6e4964 a0" +
		" a77061796c6f6164 c400" +
		" a7636f6e6669726d c3"
	// A request with a conversation id and a 3-byte payload.
	requestVector = "84 a7736572766963 65 a7 63782e72696e67" +
		" ae636f6e766572736174696f6e4964 a4 61626364" +
		" a77061796c6f6164 c403 766366" +
		" a7636f6e6669726d c2"
)

func TestMarshalVectors(t *testing.T) {
	c := &Request{Service: Service, Confirm: true}
	assert.Equal(t, unhex(t, confirmVector), c.Marshal())
	r := &Request{Service: Service, ConversationID: "abcd", Payload: []byte("vcf")}
	assert.Equal(t, unhex(t, requestVector), r.Marshal())
	// Current master's invitedMs comes last, as a msgpack int.
	m := &Request{Service: Service, InvitedMs: 1700000000000}
	b := m.Marshal()
	assert.Equal(t, byte(0x85), b[0])
	assert.True(t, bytes.HasSuffix(b, unhex(t, "a9696e76697465644d73 cf0000018bcfe56800")), "%x", b)
	v := r.Value()
	assert.Equal(t, dht.TypeTrustRequest, v.Type)
	assert.Equal(t, r.Marshal(), v.Data)
}

func TestParseVectors(t *testing.T) {
	c, err := Parse(unhex(t, confirmVector))
	require.NoError(t, err)
	assert.Equal(t, Request{Service: Service, Payload: []byte{}, Confirm: true}, *c)
	r, err := Parse(unhex(t, requestVector))
	require.NoError(t, err)
	assert.Equal(t, Request{Service: Service, ConversationID: "abcd", Payload: []byte("vcf")}, *r)

	// As msgpack-c converts: unknown keys skipped (master's invitedMs, and
	// others), missing keys zero, a str payload taken, any key order.
	b, err := msgpack.Marshal(map[string]any{"payload": "text", "service": Service, "x": []int{1, 2}, "invitedMs": 42})
	require.NoError(t, err)
	r, err = Parse(b)
	require.NoError(t, err)
	assert.Equal(t, Request{Service: Service, Payload: []byte("text"), InvitedMs: 42}, *r)

	m := &Request{Service: Service, ConversationID: "c", Payload: []byte{0, 1}, Confirm: true, InvitedMs: -5}
	back, err := Parse(m.Marshal())
	require.NoError(t, err)
	assert.Equal(t, *m, *back)
}

func TestParseRejects(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":              nil,
		"truncated":          unhex(t, confirmVector)[:20],
		"array":              unhex(t, "94 a0 a0 c400 c2"),
		"int key":            unhex(t, "81 01 a0"),
		"service not str":    unhex(t, "81 a7736572766963 65 01"),
		"payload an int":     unhex(t, "81 a77061796c6f6164 05"),
		"confirm not a bool": unhex(t, "81 a7636f6e6669726d a3796573"),
		"not msgpack":        {0xc1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(data)
			require.ErrorIs(t, err, ErrMalformed)
		})
	}
}

func TestInboxKey(t *testing.T) {
	dev, err := dht.ParseHash("0123456789abcdef0123456789abcdef01234567")
	require.NoError(t, err)
	// SHA-1 of the text "inbox:0123…", as dht::InfoHash::get does.
	assert.Equal(t, dht.HashString("inbox:0123456789abcdef0123456789abcdef01234567"), InboxKey(dev))
	// The same, from sha1sum.
	assert.Equal(t, "09beaa11f4d96d7589ec605d9886160b90c609e1", InboxKey(dev).String())
}

var keys = map[int]*rsa.PrivateKey{}

func key(t *testing.T, i int) *rsa.PrivateKey {
	t.Helper()
	if k := keys[i]; k != nil {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	keys[i] = k
	return k
}

// sealed builds an encrypted value by hand, as OpenDHT's Value::encrypt
// lays it out: {body: {seq, owner, to, type, data}, sig} packed, encrypted
// for recipient. sig, if not nil, replaces the signature.
func sealed(t *testing.T, signer *rsa.PrivateKey, to dht.InfoHash, recipient *rsa.PublicKey, typ uint16, data, sig []byte) *dht.Value {
	t.Helper()
	owner, err := x509.MarshalPKIXPublicKey(&signer.PublicKey)
	require.NoError(t, err)
	var body bytes.Buffer
	enc := msgpack.NewEncoder(&body)
	require.NoError(t, enc.EncodeMapLen(5))
	for _, kv := range []struct {
		k string
		v any
	}{{"seq", uint64(0)}, {"owner", owner}, {"to", to[:]}, {"type", uint64(typ)}, {"data", data}} {
		require.NoError(t, enc.EncodeString(kv.k))
		switch v := kv.v.(type) {
		case uint64:
			require.NoError(t, enc.EncodeUint(v))
		case []byte:
			require.NoError(t, enc.EncodeBytes(v))
		}
	}
	if sig == nil {
		sum := sha512.Sum512(body.Bytes())
		sig, err = rsa.SignPKCS1v15(rand.Reader, signer, crypto.SHA512, sum[:])
		require.NoError(t, err)
	}
	var dat bytes.Buffer
	enc = msgpack.NewEncoder(&dat)
	require.NoError(t, enc.EncodeMapLen(2))
	require.NoError(t, enc.EncodeString("body"))
	dat.Write(body.Bytes())
	require.NoError(t, enc.EncodeString("sig"))
	require.NoError(t, enc.EncodeBytes(sig))
	cypher, err := dht.Encrypt(recipient, dat.Bytes())
	require.NoError(t, err)
	return &dht.Value{ID: 77, Cypher: cypher}
}

func TestOpen(t *testing.T) {
	sender, me, other := key(t, 0), key(t, 1), key(t, 2)
	meID, err := dht.PublicKeyID(&me.PublicKey)
	require.NoError(t, err)
	senderID, err := dht.PublicKeyID(&sender.PublicKey)
	require.NoError(t, err)
	req := unhex(t, requestVector)

	// A value laid out by hand as OpenDHT does opens …
	in, err := Open(sealed(t, sender, meID, &me.PublicKey, 4, req, nil), me)
	require.NoError(t, err)
	assert.Equal(t, "abcd", in.ConversationID)
	assert.Equal(t, uint64(77), in.ValueID)
	assert.Equal(t, senderID, in.FromID)
	assert.True(t, in.From.Equal(&sender.PublicKey))

	// … and so does ours (dht.Value.EncryptFor).
	enc, err := (&Request{Service: Service, Confirm: true}).Value().EncryptFor(sender, &me.PublicKey)
	require.NoError(t, err)
	in, err = Open(enc, me)
	require.NoError(t, err)
	assert.True(t, in.Confirm)

	t.Run("encrypted for another device", func(t *testing.T) {
		enc, err := (&Request{Service: Service}).Value().EncryptFor(sender, &other.PublicKey)
		require.NoError(t, err)
		_, err = Open(enc, me)
		require.ErrorIs(t, err, ErrNotForUs)
	})
	t.Run("addressed to another key", func(t *testing.T) {
		otherID, err := dht.PublicKeyID(&other.PublicKey)
		require.NoError(t, err)
		_, err = Open(sealed(t, sender, otherID, &me.PublicKey, 4, req, nil), me)
		require.ErrorIs(t, err, ErrNotForUs)
		assert.Contains(t, err.Error(), otherID.String())
	})
	t.Run("wrong signature", func(t *testing.T) {
		_, err := Open(sealed(t, sender, meID, &me.PublicKey, 4, req, bytes.Repeat([]byte{7}, 256)), me)
		require.ErrorIs(t, err, ErrBadSignature)
	})
	t.Run("signature over other bytes", func(t *testing.T) {
		// A valid signature by the sender, but of something else.
		sum := sha512.Sum512([]byte("something else"))
		sig, err := rsa.SignPKCS1v15(rand.Reader, sender, crypto.SHA512, sum[:])
		require.NoError(t, err)
		_, err = Open(sealed(t, sender, meID, &me.PublicKey, 4, req, sig), me)
		require.ErrorIs(t, err, ErrBadSignature)
	})
	t.Run("not encrypted", func(t *testing.T) {
		v := (&Request{Service: Service}).Value()
		require.NoError(t, v.Sign(sender))
		_, err := Open(v, me)
		require.ErrorIs(t, err, ErrNotEncrypted)
	})
	t.Run("another value type", func(t *testing.T) {
		_, err := Open(sealed(t, sender, meID, &me.PublicKey, 0, req, nil), me)
		require.ErrorIs(t, err, ErrNotTrustRequest)
	})
	t.Run("another service", func(t *testing.T) {
		data := (&Request{Service: "org.example"}).Marshal()
		_, err := Open(sealed(t, sender, meID, &me.PublicKey, 4, data, nil), me)
		require.ErrorIs(t, err, ErrNotTrustRequest)
	})
	t.Run("bad msgpack inside", func(t *testing.T) {
		_, err := Open(sealed(t, sender, meID, &me.PublicKey, 4, []byte{0x93, 1, 2}, nil), me)
		require.ErrorIs(t, err, ErrMalformed)
	})
	t.Run("garbage cypher", func(t *testing.T) {
		_, err := Open(&dht.Value{ID: 1, Cypher: bytes.Repeat([]byte{1}, 300)}, me)
		require.ErrorIs(t, err, ErrNotForUs)
	})
}
