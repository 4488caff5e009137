package media

import (
	"time"
)

// pacer releases frames at their real time: frame i of duration d at
// start + sum of durations, without drift (a ticker would drift with
// variable frame durations).
type pacer struct {
	next time.Time
}

func newPacer() *pacer { return &pacer{next: time.Now()} }

// wait sleeps until the current frame is due, then schedules the next one
// d later. It returns false if done closes first.
func (p *pacer) wait(d time.Duration, done <-chan struct{}) bool {
	delay := time.Until(p.next)
	p.next = p.next.Add(d)
	if delay <= 0 {
		if delay < -time.Second {
			p.next = time.Now().Add(d) // far behind (a stalled reader): start again rather than burst
		}
		return true
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
