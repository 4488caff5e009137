// Package opqueue is an ordered operation queue: functions run one at a
// time, in the order they were posted, on a goroutine that exists only while
// there is work. Posting never blocks, so callbacks that must not block (a
// pion callback, a Matrix sync handler) post and return. Each media session
// has one, and so has each call.
package opqueue

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("operation queue closed")

// Queue runs posted functions in order.
type Queue struct {
	mu      sync.Mutex
	pending []func()
	running bool
	closed  bool
	drained chan struct{} // closed once closed and idle
}

// New makes an empty queue.
func New() *Queue { return &Queue{drained: make(chan struct{})} }

// Post queues fn; it reports false if the queue is closed.
func (q *Queue) Post(fn func()) bool {
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

// Do runs fn on the queue and waits for it, or for ctx.
func (q *Queue) Do(ctx context.Context, fn func() error) error {
	result := make(chan error, 1)
	if !q.Post(func() { result <- fn() }) {
		return ErrClosed
	}
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close refuses new functions; those already posted still run. It does not
// wait (it may be called from a function on the queue): Done says when the
// queue has drained.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	if !q.running {
		close(q.drained)
	}
}

// CloseAndWait closes the queue and waits until what was posted has run.
// It must not be called from a function on the queue.
func (q *Queue) CloseAndWait() {
	q.Close()
	<-q.drained
}

// Done is closed once the queue is closed and everything posted has run.
func (q *Queue) Done() <-chan struct{} { return q.drained }

func (q *Queue) run() {
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
	if q.closed {
		close(q.drained)
	}
	q.mu.Unlock()
}
