package xmpp

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoffDoublesToMax(t *testing.T) {
	for name, draw := range map[string]func(int64) int64{
		"longest":  func(n int64) int64 { return n - 1 },
		"shortest": func(int64) int64 { return 0 },
	} {
		t.Run(name, func(t *testing.T) {
			b := newBackoff(time.Second, 10*time.Second)
			b.rand = draw
			var got []time.Duration
			for range 7 {
				got = append(got, b.next())
			}
			if name == "longest" {
				require.Equal(t, []time.Duration{1, 2, 4, 8, 10, 10, 10}, seconds(got))
			} else {
				// Half of each ceiling, never under the minimum.
				require.Equal(t, []time.Duration{1, 1, 2, 4, 5, 5, 5}, seconds(got))
			}
			b.reset()
			require.Equal(t, time.Second, b.next(), "afresh after a reset")
		})
	}
}

func seconds(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d / time.Second
	}
	return out
}

// With the real random source every wait is within [min, max] and within
// [ceiling/2, ceiling].
func TestBackoffJitterBounds(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 3 * time.Second
	for range 50 {
		b := newBackoff(lo, hi)
		ceiling := lo
		for range 10 {
			d := b.next()
			require.GreaterOrEqual(t, d, max(lo, ceiling/2))
			require.LessOrEqual(t, d, ceiling)
			ceiling = min(2*ceiling, hi)
		}
	}
	// A minimum over the maximum is refused by Validate; equal ones are a
	// fixed wait.
	b := newBackoff(time.Second, time.Second)
	for range 5 {
		require.Equal(t, time.Second, b.next())
	}
}
