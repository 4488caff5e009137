//go:build linux

package dhtnode

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKeyHash(t *testing.T) {
	// InfoHash::get("foo") as dhtnode prints it ("Using h(foo) = …").
	require.Equal(t, "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33", KeyHash("foo"))
	require.Equal(t, "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33", KeyHash("0BEEC7B5EA3F0FDBC95D0DD47F3C5BC275DA8A33"))
}

func TestParseValue(t *testing.T) {
	for _, c := range []struct {
		line string
		want Value
	}{
		{`Value[id:6021a1f61d020684 data(text/plain):"bar"]`,
			Value{ID: 0x6021a1f61d020684, UserType: "text/plain", Data: []byte("bar"), Size: 3, Body: `data(text/plain):"bar"`}},
		{`Value[id:1 signed (v0) data(text/plain):"a]b"]`,
			Value{ID: 1, Signed: true, UserType: "text/plain", Data: []byte("a]b"), Size: 3, Body: `data(text/plain):"a]b"`}},
		{`Value[id:ff signed (v3) decrypted data(text/plain):"x"]`,
			Value{ID: 0xff, Signed: true, Seq: 3, Decrypted: true, UserType: "text/plain", Data: []byte("x"), Size: 1, Body: `data(text/plain):"x"`}},
		{`Value[id:2 encrypted ]`, Value{ID: 2, Encrypted: true}},
		{`Value[id:3 data:68690a]`, Value{ID: 3, Data: []byte("hi\n"), Size: 3, Body: "data:68690a"}},
		{`Value[id:4 data(application/x):2000 bytes]`, Value{ID: 4, UserType: "application/x", Size: 2000, Body: "data(application/x):2000 bytes"}},
		{`Value[id:5 signed (v0) Certificate]`, Value{ID: 5, Signed: true, Body: "Certificate"}},
	} {
		got, ok := parseValue(c.line)
		require.True(t, ok, c.line)
		c.want.Printed = c.line
		require.Equal(t, c.want, got)
	}
	for _, bad := range []string{"", "Value[id:zz data:00]", "Get: found 1 value(s)", "Value[id:1 data:00"} {
		_, ok := parseValue(bad)
		require.False(t, ok, bad)
	}
}

// TestParseTranscript feeds handleLine dhtnode output as captured (prompts
// included), with a listen's values arriving in the middle of a get.
func TestParseTranscript(t *testing.T) {
	n := &Node{ready: make(chan struct{}), repl: make(chan struct{}, 1)}
	for _, l := range []string{
		"Bootstrap: 10.200.0.1:4222",
		"OpenDHT node 6e37311381e990627a84b181bee4d7c12a50113c running on port 4223",
		"Public key ID 2465deed66f2045fdb844d9f1c91b13cefc7adb7",
		" (type 'h' or 'help' for a list of possible commands)",
	} {
		n.handleLine(l)
	}
	require.Equal(t, "6e37311381e990627a84b181bee4d7c12a50113c", n.nodeID)
	require.Equal(t, "2465deed66f2045fdb844d9f1c91b13cefc7adb7", n.pkID)

	sub := &listenSub{wake: make(chan struct{}, 1)}
	n.listen = sub
	start := func(kind opKind) *op {
		n.repl <- struct{}{}
		o := &op{kind: kind, done: make(chan struct{})}
		n.cur = o
		return o
	}
	feed := func(lines ...string) {
		for _, l := range lines {
			n.handleLine(l)
		}
	}

	o := start(opGet)
	feed(">> Get: found 1 value(s) after 622 us (total 1)",
		"\tValue[id:a74da8acf66f80b7 data(text/plain):\"hello\"]",
		"Listen: found 1 values (total 2)",
		"\tValue[id:54564660505a41ea data(text/plain):\"two",
		"lines\"]",
		"Get: found 1 value(s) after 1 ms (total 2)",
		">> ",
		"\tValue[id:1 signed (v0) data(text/plain):\"s\"]")
	select {
	case <-o.done:
		t.Fatal("get ended early")
	default:
	}
	feed("Get: completed, took 960 us (total 2)")
	<-o.done
	require.NoError(t, o.err)
	require.Len(t, o.values, 2)
	require.Equal(t, "hello", o.values[0].Text())
	require.True(t, o.values[1].Signed)
	require.Len(t, sub.queue, 1)
	require.Equal(t, "two\nlines", sub.queue[0].Text())

	o = start(opPut)
	feed(">> Put: failure, took 844 us. Value ID: 6021a1f61d020684")
	<-o.done
	require.ErrorIs(t, o.err, ErrFailed)
	require.Equal(t, uint64(0x6021a1f61d020684), o.valueID)

	o = start(opPutSigned)
	feed("Put signed: success (took 1.2ms s)")
	<-o.done
	require.NoError(t, o.err)

	o = start(opPutEncrypted)
	feed("Put encrypted: failure (took 3 ms")
	<-o.done
	require.ErrorIs(t, o.err, ErrFailed)

	o = start(opPutSigned)
	feed("An identity is required to perform this operation (run with -i)")
	<-o.done
	require.ErrorIs(t, o.err, ErrNoIdentity)

	o = start(opListen)
	feed("Listen: found 1 values expired (total 0)", "\tValue[id:9 data:00]", ">> Listening, token: 7")
	<-o.done
	require.Equal(t, "7", o.token)
	require.True(t, sub.queue[1].Expired)

	o = start(opStats)
	feed(">> OpenDHT node 6e37311381e990627a84b181bee4d7c12a50113c running on port 4223",
		"Public key ID 2465deed66f2045fdb844d9f1c91b13cefc7adb7",
		"1 ongoing operations",
		"Storage has 2 values, using 2 KB",
		"IPv4 stats:",
		"Known nodes: 3 good, 1 dubious, 2 incoming.",
		"2 searches, 4 total cached nodes",
		"",
		"IPv6 stats:",
		"Known nodes: 0 good, 0 dubious, 0 incoming.",
		"2 searches, 0 total cached nodes")
	select {
	case <-o.done:
		t.Fatal("stats ended early")
	default:
	}
	feed("")
	<-o.done
	require.Equal(t, Stats{OngoingOps: 1, StoredValues: 2, StoredKB: 2,
		IPv4: FamilyStats{Good: 3, Dubious: 1, Incoming: 2, Searches: 2, CachedNodes: 4},
		IPv6: FamilyStats{Searches: 2}}, o.stats)
	require.Empty(t, n.repl, "the REPL is free")
}
