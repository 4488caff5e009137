package guestlink_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/bridge/guestlink"
)

func newLimiter(clk *fakeClock, maxTracked int) *guestlink.Limiter {
	return guestlink.NewLimiter(guestlink.LimiterConfig{
		LinkPerMinute: 10, LinkBurst: 5, AddrPerMinute: 20, AddrBurst: 10,
		MaxTracked: maxTracked, Now: clk.Now,
	})
}

func TestLimiterPerAddress(t *testing.T) {
	clk := newClock()
	lim := newLimiter(clk, 100)
	for i := range 10 {
		require.NoError(t, lim.Allow("", "192.0.2.1"), "burst: %d", i)
	}
	err := lim.Allow("", "192.0.2.1")
	require.ErrorIs(t, err, guestlink.ErrRateLimited, "bad tokens count too (no link id)")
	require.ErrorContains(t, err, "192.0.2.1")
	require.ErrorIs(t, lim.Allow(guestlink.IDOf(guess(t)), "192.0.2.1:4444"), guestlink.ErrRateLimited, "the port is not part of the address")
	require.NoError(t, lim.Allow("", "192.0.2.2"), "another address has its own budget")

	clk.Advance(2 * time.Second)
	require.ErrorIs(t, lim.Allow("", "192.0.2.1"), guestlink.ErrRateLimited)
	clk.Advance(time.Second)
	require.NoError(t, lim.Allow("", "192.0.2.1"), "20 a minute: one more after 3 s")
	require.ErrorIs(t, lim.Allow("", "192.0.2.1"), guestlink.ErrRateLimited)
}

func TestLimiterCountsIPv6ByPrefix(t *testing.T) {
	lim := newLimiter(newClock(), 100)
	for i := range 10 {
		require.NoError(t, lim.Allow("", fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1)))
	}
	require.ErrorIs(t, lim.Allow("", "2001:db8:1:2:ffff::1"), guestlink.ErrRateLimited, "one /64 is one budget")
	require.NoError(t, lim.Allow("", "2001:db8:1:3::1"), "another /64")
	require.NoError(t, lim.Allow("", "::ffff:192.0.2.9"), "a mapped IPv4 address counts as IPv4")
}

func TestLimiterPerLink(t *testing.T) {
	clk := newClock()
	lim := newLimiter(clk, 100)
	link, other := "0123456789", "abcdefabcd"
	for i := range 5 {
		require.NoError(t, lim.Allow(link, fmt.Sprintf("198.51.100.%d", i)), "burst: %d", i)
	}
	err := lim.Allow(link, "198.51.100.200")
	require.ErrorIs(t, err, guestlink.ErrRateLimited, "the link's budget, from any address")
	require.ErrorContains(t, err, link)
	require.NoError(t, lim.Allow(other, "198.51.100.200"), "another link has its own")
	clk.Advance(6 * time.Second)
	require.NoError(t, lim.Allow(link, "198.51.100.201"), "10 a minute: one more after 6 s")
	require.ErrorIs(t, lim.Allow(link, "198.51.100.202"), guestlink.ErrRateLimited)
}

func TestLimiterAddressRefusalDoesNotSpendTheLink(t *testing.T) {
	lim := newLimiter(newClock(), 100)
	link := "0123456789"
	for range 10 {
		require.NoError(t, lim.Allow("", "203.0.113.1"))
	}
	for range 20 {
		require.ErrorIs(t, lim.Allow(link, "203.0.113.1"), guestlink.ErrRateLimited)
	}
	for i := range 5 {
		require.NoError(t, lim.Allow(link, "203.0.113.2"), "the link's burst is whole: %d", i)
	}
}

func TestLimiterForgetsIdleEntries(t *testing.T) {
	clk := newClock()
	lim := newLimiter(clk, 1000)
	for i := range 500 {
		require.NoError(t, lim.Allow(fmt.Sprintf("%010d", i), fmt.Sprintf("10.0.%d.%d", i/256, i%256)))
	}
	links, addrs := guestlink.Tracked(lim)
	require.Equal(t, 500, links)
	require.Equal(t, 500, addrs)

	// A bucket is full again after burst/rate (30 s for both): the
	// entry is forgotten at the next request.
	clk.Advance(29 * time.Second)
	require.NoError(t, lim.Allow("", "10.9.9.9"))
	links, addrs = guestlink.Tracked(lim)
	require.Equal(t, 500, links)
	require.Equal(t, 501, addrs)
	clk.Advance(time.Second)
	require.NoError(t, lim.Allow("x000000000", "10.9.9.8"))
	links, addrs = guestlink.Tracked(lim)
	require.Equal(t, 1, links)
	require.Equal(t, 2, addrs, "10.9.9.9, used 1 s ago, is kept")
}

func TestLimiterIsBounded(t *testing.T) {
	clk := newClock()
	lim := newLimiter(clk, 3)
	for range 10 {
		require.NoError(t, lim.Allow("", "192.0.2.1"))
	}
	require.ErrorIs(t, lim.Allow("", "192.0.2.1"), guestlink.ErrRateLimited)
	for i := range 1000 {
		require.NoError(t, lim.Allow(fmt.Sprintf("%010d", i), fmt.Sprintf("2001:db8:%x::1", i)))
		links, addrs := guestlink.Tracked(lim)
		require.LessOrEqual(t, links, 3)
		require.LessOrEqual(t, addrs, 3)
	}
	// 192.0.2.1 was the least recently used when the table was full: it
	// was forgotten, and starts again with a whole burst.
	require.NoError(t, lim.Allow("", "192.0.2.1"))

	// The most recently used are kept.
	lim = newLimiter(clk, 3)
	for range 10 {
		require.NoError(t, lim.Allow("", "192.0.2.1"))
	}
	require.NoError(t, lim.Allow("", "192.0.2.2"))
	require.NoError(t, lim.Allow("", "192.0.2.3"))
	require.ErrorIs(t, lim.Allow("", "192.0.2.1"), guestlink.ErrRateLimited, "used last: now the most recent")
	require.NoError(t, lim.Allow("", "192.0.2.4"), "forgets 192.0.2.2, the least recent")
	require.ErrorIs(t, lim.Allow("", "192.0.2.1"), guestlink.ErrRateLimited, "still remembered")
}

func TestLimiterDefaults(t *testing.T) {
	clk := newClock()
	lim := guestlink.NewLimiter(guestlink.LimiterConfig{Now: clk.Now})
	for range guestlink.AddrBurst {
		require.NoError(t, lim.Allow("", "192.0.2.1"))
	}
	require.ErrorIs(t, lim.Allow("", "192.0.2.1"), guestlink.ErrRateLimited)
	for i := range guestlink.LinkBurst {
		require.NoError(t, lim.Allow("0123456789", fmt.Sprintf("192.0.2.%d", 10+i)))
	}
	require.ErrorIs(t, lim.Allow("0123456789", "192.0.2.99"), guestlink.ErrRateLimited)
}

func TestLimiterConcurrent(t *testing.T) {
	lim := guestlink.NewLimiter(guestlink.LimiterConfig{MaxTracked: 50})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				_ = lim.Allow(fmt.Sprintf("%010d", i%70), fmt.Sprintf("10.%d.0.%d", g, i%90))
			}
		})
	}
	wg.Wait()
	links, addrs := guestlink.Tracked(lim)
	require.LessOrEqual(t, links, 50)
	require.LessOrEqual(t, addrs, 50)
}
