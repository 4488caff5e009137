//go:build linux

package dht_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/bench/benchserver"
	"github.com/voipbot/voipbot/internal/testbed/dhtnode"
	"github.com/voipbot/voipbot/jami/dht"
)

// BenchmarkLocalNetwork: put and get latency and search rounds ("hops") on
// a local network of N of our nodes and 3 dhtnode processes, against the
// same operations done by the dhtnode processes (through their REPL, so
// their times include a pseudo-terminal round trip); and the memory each of
// our nodes takes.
func BenchmarkLocalNetwork(b *testing.B) {
	for _, size := range []int{50, 200} {
		b.Run(fmt.Sprintf("N=%d", size), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			n := dhtnode.NewTestNetwork(b)
			peers, err := n.StartN(ctx, 3, dhtnode.Options{NoRateLimit: true})
			require.NoError(b, err)
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			nodes := make([]*dht.Node, size)
			for i := range nodes {
				node, err := dht.New(dht.Config{Listen4: netip.AddrPortFrom(n.HostIP, 0).String(), MaxPeerRequestsPerSec: -1}, zerolog.Nop())
				require.NoError(b, err)
				node.Start(context.Background())
				b.Cleanup(func() { _ = node.Close() })
				nodes[i] = node
				boot := []netip.AddrPort{peers[i%len(peers)].Addr()}
				if i > 0 {
					boot = append(boot, nodes[rand.IntN(i)].Addr4())
				}
				require.NoError(b, node.Bootstrap(ctx, boot...))
			}
			for _, node := range nodes {
				require.NoError(b, node.Bootstrap(ctx, peers[0].Addr()))
			}
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)

			var putOurs, getOurs, putPeer, getPeer []time.Duration
			var hops []int
			for i := range max(b.N, 20) {
				key := fmt.Sprintf("bench-%d-%d", size, i)
				from, to := nodes[rand.IntN(size)], nodes[rand.IntN(size)]
				start := time.Now()
				_, err := from.Put(ctx, dht.HashString(key), &dht.Value{ID: dht.RandomValueID(), Data: []byte("v")})
				require.NoError(b, err)
				putOurs = append(putOurs, time.Since(start))
				start = time.Now()
				values, h, err := to.GetHops(ctx, dht.HashString(key))
				require.NoError(b, err)
				require.NotEmpty(b, values)
				getOurs = append(getOurs, time.Since(start))
				hops = append(hops, h)

				peer := peers[i%len(peers)]
				start = time.Now()
				_, err = peer.Put(ctx, "peer-"+key, "v")
				require.NoError(b, err)
				putPeer = append(putPeer, time.Since(start))
				start = time.Now()
				got, _ := peers[(i+1)%len(peers)].Get(ctx, "peer-"+key)
				require.NotEmpty(b, got)
				getPeer = append(getPeer, time.Since(start))
			}
			report := func(name string, d []time.Duration) {
				slices.Sort(d)
				b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-p50-ms")
				b.ReportMetric(float64(d[len(d)*9/10].Microseconds())/1000, name+"-p90-ms")
			}
			report("put-ours", putOurs)
			report("get-ours", getOurs)
			report("put-dhtnode", putPeer)
			report("get-dhtnode", getPeer)
			total := 0
			for _, h := range hops {
				total += h
			}
			b.ReportMetric(float64(total)/float64(len(hops)), "get-hops")
			b.ReportMetric(float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse)/float64(size)/1024, "KiB/node")
			b.ReportMetric(float64(benchserver.RSS(peers[0].PID()))/1024, "dhtnode-RSS-KiB")
		})
	}
}

// BenchmarkAnswerRate: requests one node answers per second of its CPU,
// ours (this process, limited to one core) against dhtnode (its process's
// CPU time), each flooded with the same get requests by the same client —
// a separate process, so that its work is not counted as ours.
func BenchmarkAnswerRate(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n := dhtnode.NewTestNetwork(b)
	peer, err := n.Start(ctx, dhtnode.Options{NoRateLimit: true})
	require.NoError(b, err)
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	ours, err := dht.New(dht.Config{Listen4: netip.AddrPortFrom(n.HostIP, 0).String(), MaxRequestsPerSec: -1, MaxPeerRequestsPerSec: -1}, zerolog.Nop()) // as dhtnode -U
	require.NoError(b, err)
	ours.Start(context.Background())
	defer ours.Close()
	const count = 50000
	oursRate := floodFromProcess(b, ctx, ours.Addr4(), n.HostIP, count, func() time.Duration { return processCPU(os.Getpid()) })
	peerRate := floodFromProcess(b, ctx, peer.Addr(), n.HostIP, count, func() time.Duration { return processCPU(peer.PID()) })
	b.ReportMetric(oursRate, "ours-answers/cpu-s")
	b.ReportMetric(peerRate, "dhtnode-answers/cpu-s")
	b.ReportMetric(oursRate/peerRate, "ours/dhtnode")
}

// floodFromProcess runs this test binary as a flooding client (see
// TestMain) against to, and returns answers per second of the node's CPU.
func floodFromProcess(b *testing.B, ctx context.Context, to netip.AddrPort, from netip.Addr, count int, cpu func() time.Duration) float64 {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DHT_FLOOD_TO="+to.String(), "DHT_FLOOD_FROM="+from.String(), "DHT_FLOOD_COUNT="+strconv.Itoa(count))
	cpu0 := cpu()
	out, err := cmd.Output()
	used := cpu() - cpu0
	require.NoError(b, err)
	answered, err := strconv.Atoi(strings.TrimSpace(string(out)))
	require.NoError(b, err, "flooder said %q", out)
	require.Greater(b, answered, count*9/10, "most requests answered")
	return float64(answered) / used.Seconds()
}

// TestMain doubles as the flooding client of BenchmarkAnswerRate.
func TestMain(m *testing.M) {
	if to := os.Getenv("DHT_FLOOD_TO"); to != "" {
		count, _ := strconv.Atoi(os.Getenv("DHT_FLOOD_COUNT"))
		fmt.Println(flood(netip.MustParseAddrPort(to), netip.MustParseAddr(os.Getenv("DHT_FLOOD_FROM")), count))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// flood sends count get requests (for a key with nothing stored: each
// answer holds the closest nodes and a token), at most 64 unanswered, and
// returns how many were answered.
func flood(to netip.AddrPort, from netip.Addr, count int) int64 {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)))
	if err != nil {
		return 0
	}
	defer conn.Close()
	client := dht.Sender{ID: dht.RandomHash(), Client: true}
	var answered atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64*1024)
		for answered.Load() < int64(count) {
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			answered.Add(1)
		}
	}()
	key := dht.HashString("nothing-here")
	for i := range count {
		for int64(i)-answered.Load() > 64 {
			time.Sleep(50 * time.Microsecond) // pacing the flood, not synchronisation
		}
		_, _ = conn.WriteToUDPAddrPort(client.Get(uint32(i), key, nil, dht.Want4), to)
	}
	<-done
	return answered.Load()
}

// processCPU is a process's user+system CPU time, from /proc/<pid>/stat.
func processCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // clock ticks at 100 Hz
}
