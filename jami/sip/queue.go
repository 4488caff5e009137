package sip

import "sync"

// queue runs functions one after another on its own goroutine, in the
// order they were pushed. The reader pushes the user's callbacks here so a
// slow callback never stalls the stream, and callbacks never run with a
// lock of ours held. Pushing never blocks: the backlog is unbounded (it is
// bounded in practice by what the peer sends in one call).
type queue struct {
	mu      sync.Mutex
	pending []func()
	wake    chan struct{} // one token: there is work or the queue closed
	closed  bool
	done    chan struct{} // closed when the goroutine returned
}

func newQueue() *queue {
	q := &queue{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *queue) push(f func()) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.pending = append(q.pending, f)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close lets the goroutine run what is pending and return.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		work, closed := q.pending, q.closed
		q.pending = nil
		q.mu.Unlock()
		for _, f := range work {
			f()
		}
		if closed && len(work) == 0 {
			return
		}
		if len(work) == 0 {
			<-q.wake
		}
	}
}
