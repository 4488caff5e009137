package xmpp

import (
	"context"
	"sync"
)

// inbox carries what the read loop receives to the one goroutine that
// calls the Handler: messages (at most QueueSize waiting; more are
// refused) and session states (never refused), in order.
type inbox struct {
	mu       sync.Mutex
	events   []event
	messages int // messages among events
	closed   bool
	wake     chan struct{} // a token when events or closed changed
}

type event struct {
	msg   Message
	state *bool // a state event when not nil
}

func newInbox() *inbox { return &inbox{wake: make(chan struct{}, 1)} }

func (q *inbox) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// putMessage queues m; false when QueueSize messages wait already.
func (q *inbox) putMessage(m Message) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.messages >= QueueSize {
		return false
	}
	q.events = append(q.events, event{msg: m})
	q.messages++
	q.signal()
	return true
}

func (q *inbox) putState(connected bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.events = append(q.events, event{state: &connected})
	q.signal()
}

// close makes run deliver the states still queued (not the messages) and
// return.
func (q *inbox) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.signal()
}

// take is the next event, or false once closed and nothing is left to
// deliver.
func (q *inbox) take() (event, bool) {
	for {
		q.mu.Lock()
		for len(q.events) > 0 {
			e := q.events[0]
			q.events[0] = event{}
			q.events = q.events[1:]
			if e.state == nil {
				q.messages--
				if q.closed {
					continue // Run has ended: no more messages
				}
			}
			q.mu.Unlock()
			return e, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return event{}, false
		}
		<-q.wake
	}
}

// run calls h with each event until close, and a last HandleState(false)
// if the last state delivered was true.
func (q *inbox) run(ctx context.Context, h Handler) {
	up := false
	for {
		e, ok := q.take()
		if !ok {
			break
		}
		if e.state != nil {
			if *e.state != up {
				up = *e.state
				h.HandleState(ctx, up)
			}
			continue
		}
		h.HandleMessage(ctx, e.msg)
	}
	if up {
		h.HandleState(ctx, false)
	}
}
