package voip

import (
	"context"
	"errors"
	"sync"
)

// errQueueClosed is returned for operations posted after the queue closed.
var errQueueClosed = errors.New("session closed")

// opQueue runs functions one at a time, in the order they were posted.
// Posting never blocks, so pion callbacks can post. Its goroutine runs only
// while there is work: an idle call costs no goroutine for it.
type opQueue struct {
	mu      sync.Mutex
	pending []func()
	running bool
	closed  bool
	idle    *sync.Cond // signalled when the goroutine stops
}

func newOpQueue() *opQueue {
	q := &opQueue{}
	q.idle = sync.NewCond(&q.mu)
	return q
}

// post queues fn; it reports false if the queue is closed.
func (q *opQueue) post(fn func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.pending = append(q.pending, fn)
	if !q.running {
		q.running = true
		go q.run()
	}
	return true
}

// do runs fn on the queue and waits for it, or for ctx.
func (q *opQueue) do(ctx context.Context, fn func() error) error {
	result := make(chan error, 1)
	if !q.post(func() { result <- fn() }) {
		return errQueueClosed
	}
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close lets the functions already posted run, refuses new ones, and
// returns once the goroutine has stopped.
func (q *opQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for q.running {
		q.idle.Wait()
	}
}

func (q *opQueue) run() {
	q.mu.Lock()
	for len(q.pending) > 0 {
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		for _, fn := range batch {
			fn()
		}
		q.mu.Lock()
	}
	q.running = false
	q.idle.Broadcast()
	q.mu.Unlock()
}
