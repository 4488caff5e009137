package dht

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	keyOnce sync.Once
	keyA    *rsa.PrivateKey
	keyB    *rsa.PrivateKey
)

// testKeys are two RSA-2048 keys (Jami's are 4096; 2048 keeps tests fast,
// and one test below uses 4096 for the sizes that matter).
func testKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	keyOnce.Do(func() {
		var err error
		keyA, err = rsa.GenerateKey(rand.Reader, 2048)
		if err == nil {
			keyB, err = rsa.GenerateKey(rand.Reader, 2048)
		}
		if err != nil {
			panic(err)
		}
	})
	return keyA, keyB
}

func TestInfoHash(t *testing.T) {
	// InfoHash::get is SHA-1.
	h := HashString("abc")
	assert.Equal(t, "a9993e364706816aba3e25717850c26c9cd0d89d", h.String(), "SHA-1 of abc")
	p, err := ParseHash(h.String())
	require.NoError(t, err)
	assert.Equal(t, h, p)
	_, err = ParseHash("zz")
	assert.Error(t, err)

	var a, b, target InfoHash
	a[0], b[0], target[0] = 0x10, 0x80, 0x11
	assert.Negative(t, target.XorCmp(a, b), "a shares more of target's prefix")
	assert.Equal(t, 7, a.CommonBits(target), "0x10 and 0x11 share 7 bits")
	assert.Equal(t, 160, a.CommonBits(a))
	assert.Equal(t, 0, a.CommonBits(b))
}

// The signed bytes are msgpack-c's: keys in its order, compact integers,
// bin for blobs, str8 from 32 bytes.
func TestCanonicalSignedBytes(t *testing.T) {
	v := &Value{ID: 1, Type: TypeUserData, Data: []byte("hi"), UserType: "text/plain"}
	got := hex.EncodeToString(v.signedBytes())
	assert.Equal(t, "83"+"a474797065"+"00"+"a464617461"+"c4026869"+"a5757479706"+"5"+"aa746578742f706c61696e", got)

	v = &Value{Type: TypeCertificate, Data: bytes.Repeat([]byte{1}, 300), OwnerDER: []byte{0xAA}, Seq: 300, Recipient: InfoHash{1}}
	got = hex.EncodeToString(v.signedBytes())
	assert.Equal(t, "85"+"a3736571"+"cd012c"+"a56f776e6572"+"c401aa"+"a2746f"+"c414"+"01"+"00000000000000000000000000000000000000"+
		"a474797065"+"08"+"a464617461"+"c5012c"+hex.EncodeToString(bytes.Repeat([]byte{1}, 300)), got)
}

func TestSignedValue(t *testing.T) {
	a, _ := testKeys(t)
	v := &Value{ID: 42, Type: TypeUserData, Data: []byte("signed by a"), Seq: 3}
	require.NoError(t, v.Sign(a))
	back, err := UnpackValue(v.Pack())
	require.NoError(t, err)
	require.NoError(t, back.Verify())
	assert.Equal(t, v.Data, back.Data)
	assert.Equal(t, uint16(3), back.Seq)
	assert.Equal(t, a.N, back.Owner.N)

	back.Data = []byte("tampered")
	assert.ErrorIs(t, back.Verify(), ErrBadSignature)
}

func TestEncryptedValue(t *testing.T) {
	a, b := testKeys(t)
	for _, size := range []int{10, 100, 3000} { // one RSA block, and RSA + AES-GCM
		v := &Value{ID: 7, Type: TypeImMessage, Data: bytes.Repeat([]byte{'x'}, size)}
		enc, err := v.EncryptFor(a, &b.PublicKey)
		require.NoError(t, err)
		assert.True(t, enc.Encrypted())
		assert.Nil(t, v.Signature, "the original is unchanged")
		back, err := UnpackValue(enc.Pack())
		require.NoError(t, err)
		dec, err := back.Decrypt(b)
		require.NoError(t, err, "size %d", size)
		assert.Equal(t, v.Data, dec.Data)
		assert.Equal(t, uint64(7), dec.ID)
		assert.Equal(t, a.N, dec.Owner.N, "signed by the sender")

		_, err = back.Decrypt(a)
		assert.Error(t, err, "not for a")
	}
}

func TestEncryptLayout(t *testing.T) {
	_, b := testKeys(t)
	small, err := Encrypt(&b.PublicKey, []byte("short"))
	require.NoError(t, err)
	assert.Len(t, small, 256, "one RSA block")
	big, err := Encrypt(&b.PublicKey, make([]byte, 1000))
	require.NoError(t, err)
	assert.Len(t, big, 256+12+1000+16, "RSA(key) || IV || GCM || tag")
}

func TestMessagesRoundTrip(t *testing.T) {
	a, _ := testKeys(t)
	me := Sender{ID: HashString("me"), Network: 0}
	target := HashString("target")
	from := netip.MustParseAddr("127.0.0.1")

	m := parse(t, me.Ping(77))
	assert.Equal(t, KindPing, m.Kind)
	assert.Equal(t, uint32(77), m.TID)
	assert.Equal(t, me.ID, m.ID)
	assert.Equal(t, UserAgent, m.UA)

	m = parse(t, me.Pong(77, from))
	assert.Equal(t, KindReply, m.Kind)
	assert.Equal(t, from, m.SeenAddr)

	m = parse(t, me.Find(1, target, Want4|Want6))
	assert.Equal(t, KindFind, m.Kind)
	assert.Equal(t, target, m.Target)
	assert.Equal(t, Want4|Want6, m.Want)

	m = parse(t, me.Get(2, target, nil, Want4))
	assert.Equal(t, KindGet, m.Kind)
	assert.Equal(t, target, m.Hash)

	small := &Value{ID: 9, Data: []byte("small")}
	big := &Value{ID: 10, Data: bytes.Repeat([]byte("b"), 2000)}
	require.NoError(t, big.Sign(a))
	nodes := append(target[:], 127, 0, 0, 1, 0x10, 0x8e)
	out := me.NodesValues(3, from, nodes, nil, []*Value{small}, []byte("token"))
	require.Len(t, out, 1, "a small value goes inline")
	m = parse(t, out[0])
	assert.Equal(t, []byte("token"), m.Token)
	assert.Equal(t, nodes, m.Nodes4)
	require.Len(t, m.Values, 1)
	assert.Equal(t, small.Data, m.Values[0].Data)

	out = me.Put(4, target, big, 1700000000, []byte("tok"))
	require.Greater(t, len(out), 2, "a signed 2 KB value goes in parts")
	m = parse(t, out[0])
	assert.Equal(t, KindPut, m.Kind)
	assert.Equal(t, int64(1700000000), m.Created)
	assert.Equal(t, map[int]uint64{0: uint64(len(big.Pack()))}, m.ValueSizes)
	var whole []byte
	for _, part := range out[1:] {
		pm := parse(t, part)
		assert.Equal(t, KindValueData, pm.Kind)
		assert.Equal(t, uint32(4), pm.TID)
		require.Len(t, pm.Parts, 1)
		assert.Equal(t, uint64(len(whole)), pm.Parts[0].Offset)
		whole = append(whole, pm.Parts[0].Data...)
		assert.LessOrEqual(t, len(part), partMTU+64)
	}
	got, err := UnpackValue(whole)
	require.NoError(t, err)
	require.NoError(t, got.Verify())

	m = parse(t, me.Listen(5, target, []byte("tok"), 99, nil))
	assert.Equal(t, KindListen, m.Kind)
	assert.Equal(t, uint32(99), m.SocketID)
	assert.Equal(t, 1, m.Version)

	out = me.Update(6, target, 99, []*Value{small}, 0, []byte("tok"))
	m = parse(t, out[0])
	assert.Equal(t, KindUpdate, m.Kind)
	require.Len(t, m.Values, 1)

	m = parse(t, me.UpdateIDs(7, 99, nil, "exp", []uint64{9}))
	assert.Equal(t, []uint64{9}, m.Expired)

	m = parse(t, me.Refresh(8, target, 9, []byte("tok")))
	assert.Equal(t, KindRefresh, m.Kind)
	assert.Equal(t, uint64(9), m.ValueID)

	m = parse(t, me.ValueAnnounced(8, 9, from))
	assert.Equal(t, uint64(9), m.ValueID)

	m = parse(t, me.Error(8, ErrUnauthorized, "wrong token", true))
	assert.Equal(t, KindError, m.Kind)
	assert.Equal(t, uint16(ErrUnauthorized), m.ErrorCode)
	assert.Equal(t, "wrong token", m.ErrorText)
	assert.Equal(t, me.ID, m.ID)

	withNet := Sender{ID: me.ID, Network: 42}
	assert.Equal(t, uint32(42), parse(t, withNet.Ping(1)).Network)
}

func parse(t *testing.T, b []byte) *Message {
	t.Helper()
	m, err := ParseMessage(b)
	require.NoError(t, err, "%x", b)
	return m
}

func TestParseRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":            {},
		"not a map":        {0x91, 0x01},
		"array length lie": {0xdd, 0xff, 0xff, 0xff, 0xff},
		"map length lie":   {0xdf, 0xff, 0xff, 0xff, 0xff},
		"bin length lie":   {0x81, 0xa1, 'p', 0xc6, 0xff, 0xff, 0xff, 0xff},
		"unknown query":    {0x82, 0xa1, 'y', 0xa1, 'q', 0xa1, 'q'},
		"trailing bytes":   append(Sender{}.Ping(1), 0x00),
	} {
		_, err := ParseMessage(b)
		assert.Error(t, err, name)
	}
	deep := bytes.Repeat([]byte{0x91}, 100)
	_, err := decodeMP(append(deep, 0x00))
	assert.ErrorContains(t, err, "nested too deep")
}

// FuzzParseMessage: whatever arrives, parsing neither panics nor allocates
// beyond a few times the datagram (checked by the decoder's design: every
// length is checked against the bytes left).
func FuzzParseMessage(f *testing.F) {
	me := Sender{ID: HashString("fuzz"), Network: 3}
	target := HashString("t")
	from := netip.MustParseAddr("::1")
	v := &Value{ID: 1, Type: 3, Data: []byte("d"), UserType: "u"}
	for _, seed := range [][]byte{
		me.Ping(1), me.Pong(1, from), me.Find(2, target, Want4|Want6), me.Get(3, target, []byte{0x80}, Want6),
		me.Listen(4, target, []byte("t"), 5, nil), me.Refresh(6, target, 1, []byte("t")),
		me.ValueAnnounced(7, 1, from), me.Error(8, 404, "no", true), me.UpdateIDs(9, 5, []byte("t"), "re", []uint64{1}),
	} {
		f.Add(seed)
	}
	for _, seed := range me.Put(10, target, &Value{ID: 2, Data: bytes.Repeat([]byte("x"), 1500)}, 0, []byte("t")) {
		f.Add(seed)
	}
	f.Add(me.NodesValues(11, from, nil, append(target[:], make([]byte, 18)...), []*Value{v}, []byte("t"))[0])
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMessage(data)
		if err == nil && m == nil {
			t.Fatal("nil message without error")
		}
	})
}
