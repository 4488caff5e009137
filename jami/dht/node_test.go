package dht

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/transport/v4/test"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// localNetwork starts n Go nodes on 127.0.0.1, each bootstrapped from the
// first.
func localNetwork(t testing.TB, n int) []*Node {
	ctx := ctxFor(t)
	nodes := make([]*Node, n)
	for i := range nodes {
		node, err := New(Config{Listen4: "127.0.0.1:0", MaxPeerRequestsPerSec: -1}, zerolog.Nop()) // every node has the same IP
		require.NoError(t, err)
		node.Start(context.Background())
		t.Cleanup(func() { _ = node.Close() })
		nodes[i] = node
		if i > 0 {
			require.NoError(t, node.Bootstrap(ctx, nodes[0].Addr4()))
		}
	}
	// A second round, as a node that joined early knows few of the later.
	for _, node := range nodes[1:] {
		require.NoError(t, node.Bootstrap(ctx, nodes[0].Addr4()))
	}
	return nodes
}

func TestPingAndBootstrap(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	nodes := localNetwork(t, 3)
	id, err := nodes[1].Ping(ctxFor(t), nodes[2].Addr4())
	require.NoError(t, err)
	assert.Equal(t, nodes[2].ID(), id)
	assert.GreaterOrEqual(t, nodes[2].Stats().Good4, 1)
	_, err = nodes[1].Ping(ctxFor(t), netip.MustParseAddrPort("127.0.0.1:9"))
	assert.ErrorIs(t, err, ErrTimeout)
}

func TestPutGetAcrossNodes(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	nodes := localNetwork(t, 20)
	ctx := ctxFor(t)
	a, _ := testKeys(t)

	key := HashString("voipbot-test")
	res, err := nodes[3].Put(ctx, key, &Value{ID: 11, Data: []byte("plain")})
	require.NoError(t, err)
	assert.Positive(t, res.Stored)

	signed := &Value{ID: 12, Type: TypeUserData, Data: bytes.Repeat([]byte("s"), 1500)}
	require.NoError(t, signed.Sign(a))
	_, err = nodes[4].Put(ctx, key, signed)
	require.NoError(t, err, "a value over one datagram goes in parts")

	for i, node := range nodes {
		values, err := node.Get(ctx, key)
		require.NoError(t, err, "node %d", i)
		got := map[uint64][]byte{}
		for _, v := range values {
			got[v.ID] = v.Data
		}
		assert.Equal(t, []byte("plain"), got[11], "node %d", i)
		assert.Equal(t, signed.Data, got[12], "node %d", i)
	}
}

func TestEditPolicy(t *testing.T) {
	a, b := testKeys(t)
	s := newStorage()
	now := time.Now()
	key := HashString("k")
	v1 := &Value{ID: 1, Data: []byte("v1"), Seq: 2}
	require.NoError(t, v1.Sign(a))
	res, _ := s.put(key, v1, now, now)
	assert.Equal(t, storeNew, res)
	older := &Value{ID: 1, Data: []byte("older"), Seq: 1}
	require.NoError(t, older.Sign(a))
	res, _ = s.put(key, older, now, now)
	assert.Equal(t, storeRefused, res, "seq must not decrease")
	other := &Value{ID: 1, Data: []byte("other owner"), Seq: 9}
	require.NoError(t, other.Sign(b))
	res, _ = s.put(key, other, now, now)
	assert.Equal(t, storeRefused, res, "only the owner edits")
	newer := &Value{ID: 1, Data: []byte("newer"), Seq: 3}
	require.NoError(t, newer.Sign(a))
	res, _ = s.put(key, newer, now, now)
	assert.Equal(t, storeReplaced, res)
	forged := &Value{ID: 2, Data: []byte("x"), Seq: 3}
	require.NoError(t, forged.Sign(a))
	forged.Data = []byte("y")
	res, _ = s.put(key, forged, now, now)
	assert.Equal(t, storeRefused, res, "bad signature")
	cert := CertificateValue([]byte("not pem"))
	res, _ = s.put(key, cert, now, now)
	assert.Equal(t, storeRefused, res, "a certificate only at its key's id")
}

func TestListenGetsUpdates(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	nodes := localNetwork(t, 10)
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	key := HashString("listen-here")
	got := make(chan *Value, 16)
	require.NoError(t, nodes[7].Listen(ctx, key, func(v *Value) { got <- v }))
	for i := range 3 {
		_, err := nodes[2].Put(ctx, key, &Value{ID: uint64(100 + i), Data: []byte(fmt.Sprint(i))})
		require.NoError(t, err)
		select {
		case v := <-got:
			assert.Equal(t, uint64(100+i), v.ID)
		case <-ctx.Done():
			t.Fatal("no update")
		}
	}
}

// A permanent value outlives the nodes that stored it: a refresh keeps it
// at nodes that have it, and a node that lost it gets it put again.
func TestPermanentPutSurvivesStorageLoss(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	nodes := localNetwork(t, 8)
	ctx := ctxFor(t)
	key := HashString("permanent")
	v := &Value{ID: 5, Type: TypeICECandidate, Data: []byte("keep me")} // 1 min life: refreshed at 30 s
	_, err := nodes[1].PutPermanent(ctx, key, v)
	require.NoError(t, err)
	n, err := nodes[1].Refresh(ctx, key, 5)
	require.NoError(t, err)
	assert.Positive(t, n)
	assert.Len(t, nodes[1].Permanent()[key], 1)

	// Every storing node forgets everything (as after a restart).
	for _, node := range nodes {
		node.store.clear()
	}
	values, err := nodes[6].Get(ctx, key)
	require.NoError(t, err)
	require.Empty(t, values)
	// The keep-alive finds the refresh refused (404) and puts it again.
	nodes[1].keepAlive(time.Now().Add(time.Hour))
	require.Eventually(t, func() bool {
		values, err := nodes[6].Get(ctx, key)
		return err == nil && len(values) == 1
	}, 20*time.Second, 50*time.Millisecond)
	nodes[1].CancelPermanent(key, 5)
	assert.Empty(t, nodes[1].Permanent())
}

// A source over its request limit is not answered until the next second;
// other sources still are.
func TestRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	r := rateLimits{global: 5, perPeer: 2, peers: map[netip.Addr]int{}}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	assert.True(t, r.allow(a, now))
	assert.True(t, r.allow(a, now))
	assert.False(t, r.allow(a, now), "a is over its 2 per second")
	assert.True(t, r.allow(b, now))
	assert.True(t, r.allow(b, now))
	assert.False(t, r.allow(netip.MustParseAddr("192.0.2.3"), now.Add(time.Millisecond)) && r.allow(netip.MustParseAddr("192.0.2.4"), now), "the global limit of 5")
	assert.True(t, r.allow(a, now.Add(time.Second)), "a new second")
	unlimited := rateLimits{global: -1, perPeer: -1}
	for range 10000 {
		require.True(t, unlimited.allow(a, now))
	}
	assert.True(t, martian(netip.MustParseAddrPort("224.0.0.1:4222")))
	assert.True(t, martian(netip.MustParseAddrPort("[fe80::1]:4222")))
	assert.True(t, martian(netip.MustParseAddrPort("127.0.0.1:0")))
	assert.False(t, martian(netip.MustParseAddrPort("127.0.0.1:4222")))
}

// Others cannot make a node hold more than maxStoredBytes.
func TestStorageByteCap(t *testing.T) {
	s := newStorage()
	now := time.Now()
	big := bytes.Repeat([]byte("x"), MaxValueSize-64)
	stored := 0
	for i := range maxStoredBytes/len(big) + 10 {
		res, _ := s.put(HashString(fmt.Sprint(i)), &Value{ID: 1, Data: big}, now, now)
		if res == storeNew {
			stored++
		}
	}
	assert.Less(t, stored, maxStoredBytes/len(big)+10)
	assert.LessOrEqual(t, s.bytes, maxStoredBytes)
	s.expire(now.Add(time.Hour))
	assert.Zero(t, s.bytes, "expired values free their bytes")
}

// The same over IPv6: nodes on ::1 find each other's values (node lists in
// "n6", compact 38-byte records).
func TestIPv6Network(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	ctx := ctxFor(t)
	var nodes []*Node
	for i := range 6 {
		node, err := New(Config{Listen6: "[::1]:0", MaxPeerRequestsPerSec: -1}, zerolog.Nop())
		require.NoError(t, err)
		node.Start(context.Background())
		t.Cleanup(func() { _ = node.Close() })
		nodes = append(nodes, node)
		if i > 0 {
			require.NoError(t, node.Bootstrap(ctx, nodes[0].Addr6()))
		}
	}
	_, err := nodes[2].Put(ctx, HashString("v6"), &Value{ID: 1, Data: []byte("over IPv6")})
	require.NoError(t, err)
	values, err := nodes[5].Get(ctx, HashString("v6"))
	require.NoError(t, err)
	require.Len(t, values, 1)
	assert.Equal(t, []byte("over IPv6"), values[0].Data)
	assert.Positive(t, nodes[5].Stats().Good6)
}

// A flood of requests from unknown nodes that never answer (random ids,
// from 32 sockets) starts at most maxNewNodePings pings, each a goroutine
// awaiting its timeouts, and at most maxNewNodePingsPerPeer per source
// address; the pings not started are counted, and once the flood stops
// those in flight time out and drain. Nodes that answer are still pinged
// and become good, before the flood and after it.
func TestNewNodePingsBounded(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	ctx := ctxFor(t)
	node, err := New(Config{Listen4: "127.0.0.1:0"}, zerolog.Nop()) // the default request limits
	require.NoError(t, err)
	node.Start(context.Background())
	t.Cleanup(func() { _ = node.Close() })
	isGood := func(id InfoHash) bool {
		for _, g := range node.GoodNodes() {
			if g.ID == id {
				return true
			}
		}
		return false
	}
	honest := func() InfoHash {
		peer, err := New(Config{Listen4: "127.0.0.1:0"}, zerolog.Nop())
		require.NoError(t, err)
		peer.Start(context.Background())
		t.Cleanup(func() { _ = peer.Close() })
		_, err = peer.Ping(ctx, node.Addr4()) // new to node: node pings it back
		require.NoError(t, err)
		require.Eventually(t, func() bool { return isGood(peer.ID()) }, 5*time.Second, 10*time.Millisecond, "an answering new node becomes good")
		return peer.ID()
	}
	first := honest()

	// 24 hosts with one socket each, and one with 8 (they share its
	// address's cap); none reads what node sends.
	var conns []*net.UDPConn
	for i := range 32 {
		ip := netip.AddrFrom4([4]byte{127, 0, 2, byte(1 + min(i, 24))})
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		conns = append(conns, c)
	}
	perPeerPeak := func() int {
		node.pings.mu.Lock()
		defer node.pings.mu.Unlock()
		peak := 0
		for _, k := range node.pings.peers {
			peak = max(peak, k)
		}
		return peak
	}

	// 10,000 requests a second for 2 s: the old code had a goroutine for
	// each (every ping outlives the flood: 3 tries of 1 s).
	const rate, length = 10000, 2 * time.Second
	const total = rate * int(length/time.Second)
	baseline := runtime.NumGoroutine()
	var sent, peakGoroutines, peakInFlight, peakPerPeer int
	start := time.Now()
	for sent < total {
		for ; sent < min(total, int(time.Since(start).Seconds()*rate)); sent++ {
			junk := Sender{ID: RandomHash()}
			msg := junk.Ping(uint32(sent))
			if sent%2 == 1 {
				msg = junk.Find(uint32(sent), RandomHash(), Want4)
			}
			_, _ = conns[sent%len(conns)].WriteToUDPAddrPort(msg, node.Addr4())
		}
		peakGoroutines = max(peakGoroutines, runtime.NumGoroutine()-baseline)
		peakInFlight = max(peakInFlight, node.Stats().PingsInFlight)
		peakPerPeer = max(peakPerPeer, perPeerPeak())
		time.Sleep(time.Millisecond) // pacing the flood, not synchronisation
	}
	st := node.Stats()
	t.Logf("sent %d requests; at peak %d goroutines above the baseline, %d pings in flight, %d from one address; %d pings dropped",
		sent, peakGoroutines, peakInFlight, peakPerPeer, st.PingsDropped)
	// One goroutine per ping in flight; the slack is for goroutines of the
	// runtime and the testing package, none of them node's.
	assert.LessOrEqual(t, peakGoroutines, maxNewNodePings+4)
	assert.LessOrEqual(t, peakInFlight, maxNewNodePings)
	assert.Equal(t, maxNewNodePings, peakInFlight, "the flood fills the global cap")
	assert.LessOrEqual(t, peakPerPeer, maxNewNodePingsPerPeer)
	assert.Positive(t, st.PingsDropped)

	require.Eventually(t, func() bool { return node.Stats().PingsInFlight == 0 }, 3*requestTries*requestTimeout, 20*time.Millisecond, "the pings drain")
	// Polled here: Eventually runs its condition in a goroutine of its own.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > baseline; time.Sleep(20 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "the pings' goroutines end: %d above the baseline", runtime.NumGoroutine()-baseline)
	}
	assert.True(t, isGood(first), "junk does not displace a good node")
	honest()
}

func TestPingSlots(t *testing.T) {
	p := newPingSlots(3, 2)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	assert.True(t, p.acquire(a))
	assert.True(t, p.acquire(a))
	assert.False(t, p.acquire(a), "a is at its 2")
	assert.True(t, p.acquire(b))
	assert.False(t, p.acquire(b), "3 in all")
	p.release(a)
	assert.True(t, p.acquire(b))
	assert.Equal(t, 3, p.count())
	for _, addr := range []netip.Addr{a, b, b} {
		p.release(addr)
	}
	assert.Zero(t, p.count())
	assert.Empty(t, p.peers, "no address is kept once its pings are done")

	now := time.Unix(1000, 0)
	assert.Equal(t, uint64(1), p.drop(now), "the first drop is logged")
	assert.Zero(t, p.drop(now.Add(time.Second)))
	assert.Zero(t, p.drop(now.Add(2*time.Second)))
	assert.Equal(t, uint64(3), p.drop(now.Add(pingDropLogEvery)), "a minute on, with the drops since, this one included")
	assert.Equal(t, uint64(4), p.dropped.Load())
}
