package connect_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/voipbot/voipbot/jami/connect"
	"github.com/voipbot/voipbot/jami/dht"
)

// Candidate lines as jamid and pion write them.
var candidateSeeds = []string{
	"Ha630001 1 TCP 2130706431 10.99.0.1 56607 typ host tcptype passive",
	"Ha630001 1 TCP 1694498815 10.99.0.1 9 typ host tcptype active",
	"Sc0a80101 1 TCP 1677724415 198.51.100.7 9 typ srflx tcptype active",
	"H7f000001 1 UDP 2130706431 127.0.0.1 40000 typ host",
	"H1 1 TCP 2130706431 ::1 4000 typ host tcptype passive",
	"Hfe800001 2 UDP 2130706430 fe80::1%eth0 40001 typ host",
	"R5 1 UDP 16777215 203.0.113.9 3478 typ relay",
	"candidate:1 1 tcp 2130706431 10.0.0.1 9 typ srflx raddr 0.0.0.0 rport 0 tcptype active generation 0",
	"candidate:842163049 1 udp 1677729535 198.51.100.7 60341 typ srflx raddr 192.168.1.2 rport 60341 generation 0 network-cost 999",
}

const iceSeed = "Zp3W\nb3Kx9vQe0ThqgRLw0uWl1m\n" +
	"Ha630001 1 TCP 2130706431 10.99.0.1 56607 typ host tcptype passive\n" +
	"Ha630001 1 TCP 1694498815 10.99.0.1 9 typ host tcptype active\n" +
	"Sc0a80101 1 TCP 1677724415 198.51.100.7 9 typ srflx tcptype active\n"

// roundTrips says whether a parsed candidate is meant to come back the same
// from its String: a foundation that starts "candidate:" reads as the RFC
// prefix, and a UDP candidate's tcptype is not written.
func roundTrips(c connect.Candidate) bool {
	return !strings.HasPrefix(c.Foundation, "candidate:") && (c.Transport == connect.TCP || c.TCPType == "")
}

func checkCandidate(t *testing.T, c connect.Candidate) {
	t.Helper()
	if c.Transport != connect.UDP && c.Transport != connect.TCP {
		t.Fatalf("transport %q", c.Transport)
	}
	if c.Transport == connect.TCP && c.TCPType == "" {
		t.Fatal("a TCP candidate without tcptype")
	}
	if !roundTrips(c) {
		return
	}
	again, err := connect.ParseCandidate(c.String())
	if err != nil {
		t.Fatalf("%q does not parse again: %v", c.String(), err)
	}
	if again != c {
		t.Fatalf("%q parses to %+v, not %+v", c.String(), again, c)
	}
}

// checkICE parses an ICE message and, if it has credentials, writes it
// and parses it again.
func checkICE(t *testing.T, s string) {
	t.Helper()
	m, errs := connect.ParseICE(s)
	if m.Ufrag == "" || m.Pwd == "" {
		if len(errs) == 0 {
			t.Fatal("no credentials and no error")
		}
		return
	}
	for _, c := range m.Candidates {
		checkCandidate(t, c)
		if !roundTrips(c) {
			return
		}
	}
	again, errs := connect.ParseICE(m.String())
	if len(errs) > 0 {
		t.Fatalf("%q does not parse again: %v", m.String(), errs)
	}
	if again.Ufrag != m.Ufrag || again.Pwd != m.Pwd || len(again.Candidates) != len(m.Candidates) {
		t.Fatalf("%q parses to %+v, not %+v", m.String(), again, m)
	}
	for i := range m.Candidates {
		if again.Candidates[i] != m.Candidates[i] {
			t.Fatalf("%q parses to %+v, not %+v", m.String(), again, m)
		}
	}
}

// FuzzParseCandidate: no line panics the parser; a candidate it reads is
// well formed and written back to the same candidate.
func FuzzParseCandidate(f *testing.F) {
	for _, s := range candidateSeeds {
		f.Add(s)
	}
	f.Add("H1 1 UDP 1 1.2.3.4 9 typ host tcptype active")
	f.Add("H1 1 TCP 1 1.2.3.4 9 typ host tcptype")
	f.Add("H1 1 SCTP 1 1.2.3.4 99999 typ host")
	f.Fuzz(func(t *testing.T, line string) {
		c, err := connect.ParseCandidate(line)
		if err != nil {
			return
		}
		checkCandidate(t, c)
	})
}

// requestSeeds are connection requests as dhtnet packs them
// (MSGPACK_DEFINE_MAP, compact integers) and as Marshal does.
func requestSeeds(tb testing.TB) [][]byte {
	compact := func(kv ...any) []byte {
		var b bytes.Buffer
		enc := msgpack.NewEncoder(&b)
		enc.UseCompactInts(true)
		if err := enc.EncodeMapLen(len(kv) / 2); err != nil {
			tb.Fatal(err)
		}
		for _, x := range kv {
			if err := enc.Encode(x); err != nil {
				tb.Fatal(err)
			}
		}
		return b.Bytes()
	}
	marshal := func(r connect.Request) []byte {
		b, err := r.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	return [][]byte{
		compact("id", uint64(0x1d2e3f4a5b6c7d8e), "ice_msg", iceSeed, "isAnswer", false, "connType", "audioCall"),
		compact("id", uint64(0x1d2e3f4a5b6c7d8e), "ice_msg", iceSeed, "isAnswer", true, "connType", "audioCall"),
		compact("id", uint64(7), "ice_msg", "u\np\n", "isAnswer", false, "connType", "", "forceSocket", true),
		compact("id", uint64(9), "ice_msg", "only-ufrag", "isAnswer", false, "connType", "videoCall"),
		marshal(connect.Request{ID: 42, ICE: iceSeed, ConnType: "videoCall"}),
		marshal(connect.Request{ID: ^uint64(0), ICE: "u\np\nH1 1 UDP 1 ::1 9 typ host\r\n\r\ngarbage\n", IsAnswer: true}),
		compact("ice_msg", "u\np\n"),
		{0xc1},
	}
}

// FuzzParseRequest: no input panics the request decoder or the ICE parser
// after it; a request it reads has an id and comes back the same from
// Marshal.
func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := connect.ParseRequest(data)
		if err != nil {
			if r != nil {
				t.Fatal("a request and an error")
			}
			return
		}
		if r.ID == 0 {
			t.Fatal("a request without id")
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := connect.ParseRequest(b)
		if err != nil {
			t.Fatalf("the marshalled request does not parse: %v", err)
		}
		if *again != *r {
			t.Fatalf("%+v comes back as %+v", *r, *again)
		}
		checkICE(t, r.ICE)
	})
}

// A request that claims a long field it does not have costs what one
// such request costs, however many come: the decoder's buffer is not kept
// from one to the next (msgpack.Unmarshal's pooled decoders kept it, grown
// by a quarter each time: gigabytes after a few dozen values of 8 bytes,
// which FuzzParseRequest ran into as a worker hung past 10 s).
func TestParseRequestClaimedLength(t *testing.T) {
	for _, in := range [][]byte{
		{0x81, 0xa1, 'x', 0xdb, 0x7f, 0xff, 0xff, 0xff},                               // {"x": str32 of 2^31-1 bytes}
		{0x81, 0xa1, 'x', 0xc6, 0xff, 0xff, 0xff, 0xff},                               // {"x": bin32 of 2^32-1 bytes}
		{0x81, 0xa7, 'i', 'c', 'e', '_', 'm', 's', 'g', 0xdb, 0x7f, 0xff, 0xff, 0xff}, // the ICE itself
	} {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		start := ms.TotalAlloc
		for i := range 100 {
			if _, err := connect.ParseRequest(in); err == nil {
				t.Fatalf("% x parsed", in)
			}
			runtime.ReadMemStats(&ms)
			if used := ms.TotalAlloc - start; used > 512<<20 {
				t.Fatalf("% x: %d MiB allocated after %d requests", in, used>>20, i+1)
			}
		}
	}
}

func readKey(tb testing.TB, name string) *rsa.PrivateKey {
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		tb.Fatalf("%s: no PEM", name)
		return nil
	}
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// FuzzDecryptRequest is what a connection request goes through before
// ParseRequest: the DHT value, encrypted for our device and signed by the
// peer's, opened with our key (dht.Secure does it for the manager's
// listener). With plain false the input is the cypher as received; with
// plain true it is what the cypher holds (encrypted for us here), so the
// decoding and checks behind the decryption are reached. Nothing panics;
// a value that opens is signed, verified and addressed to us; an error
// comes with no value. The keys are fixed (testdata), 1024 bits for speed.
func FuzzDecryptRequest(f *testing.F) {
	device := readKey(f, "testdata/fuzz-device.pem")
	peer := readKey(f, "testdata/fuzz-peer.pem")
	self, err := dht.PublicKeyID(&device.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	encrypt := func(from *rsa.PrivateKey, to *rsa.PublicKey, data []byte) []byte {
		v := &dht.Value{ID: 1, Type: connect.ValueType, UserType: connect.UserType, Data: data}
		enc, err := v.EncryptFor(from, to)
		if err != nil {
			f.Fatal(err)
		}
		return enc.Cypher
	}
	for _, req := range requestSeeds(f)[:3] {
		cypher := encrypt(peer, &device.PublicKey, req)
		f.Add(cypher, false)
		plain, err := dht.Decrypt(device, cypher)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(plain, true)
	}
	// For another device; unsigned; garbage of each size the decryption
	// tells apart.
	other, err := dht.Decrypt(peer, encrypt(device, &peer.PublicKey, requestSeeds(f)[0]))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(other, true)
	unsigned, _ := msgpack.Marshal(map[string]any{"body": map[string]any{"type": 0, "data": []byte("x"), "utype": connect.UserType}})
	f.Add(unsigned, true)
	short, err := dht.Encrypt(&device.PublicKey, unsigned)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(short, false)
	k := device.Size()
	for _, n := range []int{0, 1, k - 1, k, k + 27, k + 28, k + 200} {
		f.Add(bytes.Repeat([]byte{0xa5}, n), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, plain bool) {
		cypher := data
		if plain {
			var err error
			if cypher, err = dht.Encrypt(&device.PublicKey, data); err != nil {
				t.Fatal(err)
			}
		}
		out, err := (&dht.Value{ID: 1, Cypher: cypher}).Decrypt(device)
		if err != nil {
			if out != nil {
				t.Fatal("a value and an error")
			}
			return
		}
		if out == nil || !out.Signed() || out.Recipient != self || out.Encrypted() {
			t.Fatalf("opened a value that is not signed for us: %+v", out)
		}
		if err := out.Verify(); err != nil {
			t.Fatalf("opened a value whose signature does not hold: %v", err)
		}
		if r, err := connect.ParseRequest(out.Data); err == nil {
			checkICE(t, r.ICE)
		}
	})
}
