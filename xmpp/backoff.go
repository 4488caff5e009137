package xmpp

import (
	"math/rand/v2"
	"time"
)

// backoff is the wait before each reconnection: ReconnectMin after the
// first failure, doubling with each failure in a row up to ReconnectMax,
// each wait drawn between half of that and all of it (never under
// ReconnectMin), so that many clients cut off at once do not come back at
// once.
type backoff struct {
	min, max time.Duration
	failures int
	rand     func(n int64) int64 // [0, n); math/rand/v2's by default
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max, rand: rand.Int64N}
}

// next is the wait before the next try, counting one more failure.
func (b *backoff) next() time.Duration {
	ceiling := b.min
	for i := 0; i < b.failures && ceiling < b.max; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, b.max)
	b.failures++
	half := ceiling / 2
	d := half
	if half > 0 {
		d += time.Duration(b.rand(int64(half) + 1))
	}
	return max(d, b.min)
}

// reset forgets the failures (a session held long enough).
func (b *backoff) reset() { b.failures = 0 }
