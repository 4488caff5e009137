package xmpp

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// calls records a Handler's calls as text, and tells each message's id.
type calls struct {
	got  []string
	seen chan string
}

func (c *calls) HandleMessage(_ context.Context, m Message) {
	c.got = append(c.got, "msg "+m.ID)
	if c.seen != nil {
		c.seen <- m.ID
	}
}

func (c *calls) waitFor(id string) {
	for got := range c.seen {
		if got == id {
			return
		}
	}
}

func (c *calls) HandleState(_ context.Context, up bool) {
	c.got = append(c.got, "state "+strconv.FormatBool(up))
}

func TestInboxOrderAndLimit(t *testing.T) {
	q := newInbox()
	q.putState(true)
	for i := range QueueSize {
		require.True(t, q.putMessage(Message{ID: strconv.Itoa(i)}))
	}
	require.False(t, q.putMessage(Message{ID: "one too many"}), "full: dropped")
	q.putState(false) // states are never dropped
	q.putState(true)

	h := &calls{seen: make(chan string, 2*QueueSize)}
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		q.run(t.Context(), h)
	}()
	h.waitFor(strconv.Itoa(QueueSize - 1))
	require.True(t, q.putMessage(Message{ID: "stop"}), "room again once the handler took them")
	h.waitFor("stop")
	q.putState(false)
	q.putState(true)
	require.True(t, q.putMessage(Message{ID: "after close"}))
	q.close()
	<-ran
	require.False(t, q.putMessage(Message{ID: "closed"}))

	want := []string{"state true"}
	for i := range QueueSize {
		want = append(want, "msg "+strconv.Itoa(i))
	}
	// The messages queued when Run ended are not delivered; the states
	// are, and the last word is "disconnected".
	want = append(want, "state false", "state true", "msg stop", "state false", "state true", "state false")
	require.Equal(t, want, h.got)
}

// Repeated states are delivered once.
func TestInboxStateChangesOnly(t *testing.T) {
	q := newInbox()
	q.putState(false)
	q.putState(true)
	q.putState(true)
	q.close()
	h := &calls{}
	q.run(t.Context(), h)
	require.Equal(t, []string{"state true", "state false"}, h.got)
}
