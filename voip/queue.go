package voip

import (
	"context"
	"errors"
	"sync"
)

// errQueueClosed is returned for operations posted after the queue closed.
var errQueueClosed = errors.New("session closed")

// opQueue runs functions one at a time, in the order they were posted, on
// its own goroutine. Posting never blocks, so pion callbacks can post.
type opQueue struct {
	mu      sync.Mutex
	pending []func()
	wake    chan struct{}
	closed  bool
	done    chan struct{}
}

func newOpQueue() *opQueue {
	q := &opQueue{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.run()
	return q
}

// post queues fn; it reports false if the queue is closed.
func (q *opQueue) post(fn func()) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.pending = append(q.pending, fn)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
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
	case <-q.done:
		select {
		case err := <-result:
			return err
		default:
			return errQueueClosed
		}
	}
}

// close lets the functions already posted run, then stops the goroutine.
func (q *opQueue) close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	q.mu.Unlock()
	<-q.done
}

func (q *opQueue) run() {
	defer close(q.done)
	for {
		q.mu.Lock()
		batch := q.pending
		q.pending = nil
		closed := q.closed
		q.mu.Unlock()
		for _, fn := range batch {
			fn()
		}
		if len(batch) > 0 {
			continue
		}
		if closed {
			return
		}
		<-q.wake
	}
}
