package impair

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v4/test"
	"github.com/stretchr/testify/require"
)

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRelayLosesDelaysAndReorders(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	link := Link{Loss: 0.05, Delay: 20 * time.Millisecond, Jitter: 15 * time.Millisecond, Reorder: true}
	r, err := NewRelay(link, Link{}, 7)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	a, b := listen(t), listen(t)

	// B speaks first so that the relay knows where B is; that datagram has
	// nowhere to go yet.
	_, err = b.WriteToUDPAddrPort([]byte("hello"), r.AddrForB())
	require.NoError(t, err)
	// A's datagrams reach B, and B's answer reaches A: the relay learnt both.
	const n = 1000
	sent := make([]atomic.Int64, n) // unix nanoseconds
	go func() {
		for i := range n {
			sent[i].Store(time.Now().UnixNano())
			_, _ = a.WriteToUDPAddrPort(binary.BigEndian.AppendUint32(nil, uint32(i)), r.AddrForA())
			time.Sleep(100 * time.Microsecond) // paced like media, not faster than socket buffers take
		}
	}()

	buf := make([]byte, 64)
	var got []uint32
	minDelay := time.Hour
	for {
		c := r.AToB()
		if c.Forwarded+c.Dropped+c.Unrouted == n && uint64(len(got)) == c.Forwarded {
			break
		}
		require.NoError(t, b.SetReadDeadline(time.Now().Add(10*time.Second)))
		k, from, err := b.ReadFromUDPAddrPort(buf)
		require.NoError(t, err, "received %d, relay counts %+v", len(got), r.AToB())
		require.Equal(t, r.AddrForB(), from, "B sees the relay, not A")
		require.Equal(t, 4, k)
		i := binary.BigEndian.Uint32(buf)
		minDelay = min(minDelay, time.Duration(time.Now().UnixNano()-sent[i].Load()))
		got = append(got, i)
	}
	c := r.AToB()
	require.LessOrEqual(t, c.Unrouted, uint64(10), "only datagrams racing B's hello are unrouted")
	require.InDelta(t, 0.05, float64(c.Dropped)/n, 0.02, "5 %% loss, seeded")
	require.GreaterOrEqual(t, minDelay, link.Delay-link.Jitter, "no datagram is faster than the least delay")
	reordered := 0
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			reordered++
		}
	}
	require.Positive(t, reordered, "jitter reorders")

	_, err = b.WriteToUDPAddrPort([]byte("back"), r.AddrForB())
	require.NoError(t, err)
	require.NoError(t, a.SetReadDeadline(time.Now().Add(10*time.Second)))
	for {
		// B's hello reaches A too if A had spoken before the relay read it.
		k, from, err := a.ReadFromUDPAddrPort(buf)
		require.NoError(t, err)
		require.Equal(t, r.AddrForA(), from)
		if string(buf[:k]) == "back" {
			break
		}
	}
	back := r.BToA()
	require.Equal(t, uint64(2), back.Forwarded+back.Unrouted)
}

func TestRelayKeepsOrderWithoutReorder(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	r, err := NewRelay(Link{Delay: 20 * time.Millisecond, Jitter: 15 * time.Millisecond}, Link{}, 7)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	a, b := listen(t), listen(t)
	_, err = b.WriteToUDPAddrPort([]byte("hello"), r.AddrForB())
	require.NoError(t, err)
	const n = 300
	go func() {
		for i := range n {
			_, _ = a.WriteToUDPAddrPort(binary.BigEndian.AppendUint32(nil, uint32(i)), r.AddrForA())
			time.Sleep(100 * time.Microsecond)
		}
	}()
	buf := make([]byte, 64)
	last := -1
	for received := 0; ; received++ {
		c := r.AToB()
		if c.Forwarded+c.Unrouted == n && uint64(received) == c.Forwarded {
			break
		}
		require.NoError(t, b.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, _, err := b.ReadFromUDPAddrPort(buf)
		require.NoError(t, err)
		i := int(binary.BigEndian.Uint32(buf))
		require.Greater(t, i, last, "in order")
		last = i
	}
}

func TestLinkValidate(t *testing.T) {
	require.NoError(t, Link{Loss: 0.5, Delay: time.Millisecond}.Validate())
	require.ErrorContains(t, Link{Loss: 1}.Validate(), "loss")
	require.ErrorContains(t, Link{Loss: -0.1}.Validate(), "loss")
	require.ErrorContains(t, Link{Jitter: -1}.Validate(), "negative")
	_, err := NewRelay(Link{Loss: 2}, Link{}, 1)
	require.Error(t, err)
}
