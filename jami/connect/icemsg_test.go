package connect

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/voipbot/voipbot/jami/dht"
)

// jamid's own lines (research notes, observed on this kind of machine).
func TestCandidateRoundTrip(t *testing.T) {
	for _, line := range []string{
		"Ha630001 1 TCP 2130706431 10.99.0.1 56607 typ host tcptype passive",
		"Ha630001 1 TCP 1694498815 10.99.0.1 9 typ host tcptype active",
		"Sc0a80101 1 TCP 1677724415 198.51.100.7 9 typ srflx tcptype active",
		"H7f000001 1 UDP 2130706431 127.0.0.1 40000 typ host",
		"H1 1 TCP 2130706431 ::1 4000 typ host tcptype passive",
	} {
		c, err := ParseCandidate(line)
		require.NoError(t, err, line)
		assert.Equal(t, line, c.String(), "written back as jamid writes it")
	}
	c, err := ParseCandidate("candidate:1 1 tcp 2130706431 10.0.0.1 9 typ srflx raddr 0.0.0.0 rport 0 tcptype active generation 0")
	require.NoError(t, err, "RFC syntax, as pion writes it")
	assert.Equal(t, TCP, c.Transport)
	assert.Equal(t, "active", c.TCPType)
	assert.Equal(t, "1 1 TCP 2130706431 10.0.0.1 9 typ srflx tcptype active", c.String(), "upper-case TCP, no related address: what Jami parses")

	for _, bad := range []string{"", "H1 1 TCP", "H1 x TCP 1 1.2.3.4 9 typ host tcptype active", "H1 1 SCTP 1 1.2.3.4 9 typ host",
		"H1 1 TCP 1 1.2.3.4 9 typ host", "H1 1 UDP 1 nowhere 9 typ host", "H1 1 UDP 1 1.2.3.4 99999 typ host"} {
		_, err := ParseCandidate(bad)
		assert.Error(t, err, bad)
	}
}

func TestICEMessage(t *testing.T) {
	in := "ufrag1\npwd1\nHa630001 1 TCP 2130706431 10.99.0.1 56607 typ host tcptype passive\ngarbage\n\n"
	m, errs := ParseICE(in)
	assert.Len(t, errs, 1, "a line that is no candidate is skipped and reported")
	assert.Equal(t, "ufrag1", m.Ufrag)
	assert.Equal(t, "pwd1", m.Pwd)
	require.Len(t, m.Candidates, 1)
	assert.Equal(t, "ufrag1\npwd1\nHa630001 1 TCP 2130706431 10.99.0.1 56607 typ host tcptype passive\n", m.String())
	_, errs = ParseICE("only-ufrag")
	assert.NotEmpty(t, errs)
}

// The request is a msgpack map with dhtnet's field names.
func TestRequestWireFormat(t *testing.T) {
	r := Request{ID: 42, ICE: "u\np\n", ConnType: "audioCall"}
	b, err := r.Marshal()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, msgpack.Unmarshal(b, &m))
	assert.EqualValues(t, 42, m["id"])
	assert.Equal(t, "u\np\n", m["ice_msg"])
	assert.Equal(t, false, m["isAnswer"])
	assert.Equal(t, "audioCall", m["connType"])

	// A newer peer's extra field is ignored; a request without id is not one.
	extra, _ := msgpack.Marshal(map[string]any{"id": uint64(7), "ice_msg": "x", "isAnswer": true, "connType": "", "forceSocket": true})
	got, err := ParseRequest(extra)
	require.NoError(t, err)
	assert.Equal(t, Request{ID: 7, ICE: "x", IsAnswer: true}, *got)
	noID, _ := msgpack.Marshal(map[string]any{"ice_msg": "x"})
	_, err = ParseRequest(noID)
	assert.Error(t, err)
	_, err = ParseRequest([]byte{0xc1})
	assert.Error(t, err)
}

// The keys are SHA-1 of "peer:" and the lower-case hex id, as
// dht::InfoHash::get(concat(key_prefix, id.to_view())) makes them.
func TestKeys(t *testing.T) {
	var id dht.InfoHash
	for i := range id {
		id[i] = byte(i)
	}
	var long [32]byte
	for i := range long {
		long[i] = byte(0xA0 + i)
	}
	k := KeysFor(id, long)
	legacy := sha1.Sum([]byte("peer:000102030405060708090a0b0c0d0e0f10111213"))
	assert.Equal(t, dht.InfoHash(legacy), k.Legacy)
	longKey := sha1.Sum([]byte("peer:a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"))
	assert.Equal(t, dht.InfoHash(longKey), k.Long)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ks, err := KeysOf(&key.PublicKey)
	require.NoError(t, err)
	kid, _ := dht.PublicKeyID(&key.PublicKey)
	klong, _ := dht.PublicKeyLongID(&key.PublicKey)
	assert.Equal(t, KeysFor(kid, klong), ks)
	assert.NotEqual(t, ks.Legacy, ks.Long)
}
