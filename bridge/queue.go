package bridge

import "sync"

// opQueue runs functions one at a time in the order they were posted: the
// one ordered operation queue of a call. Posting never blocks, so Matrix
// handlers and media callbacks post and return. Its goroutine runs only while
// there is work.
type opQueue struct {
	mu      sync.Mutex
	pending []func()
	running bool
	closed  bool
	idle    chan struct{} // closed when closed and drained
}

func newOpQueue() *opQueue { return &opQueue{idle: make(chan struct{})} }

// post queues fn; false if the queue is closed.
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

func (q *opQueue) run() {
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.running = false
			if q.closed {
				close(q.idle)
			}
			q.mu.Unlock()
			return
		}
		fn := q.pending[0]
		q.pending[0] = nil
		q.pending = q.pending[1:]
		q.mu.Unlock()
		fn()
	}
}

// close refuses new work; what is queued still runs. Done reports when it
// has.
func (q *opQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	if !q.running {
		close(q.idle)
	}
}

// done is closed once the queue is closed and has run everything.
func (q *opQueue) done() <-chan struct{} { return q.idle }
