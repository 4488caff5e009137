package opqueue

import (
	"context"
	"testing"

	"github.com/pion/transport/v4/test"
	"github.com/stretchr/testify/require"
)

func TestOrderCloseAndDone(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	q := New()
	var got []int
	for i := range 100 {
		require.True(t, q.Post(func() { got = append(got, i) }))
	}
	// A function on the queue may close it; Done follows once it is idle.
	require.True(t, q.Post(q.Close))
	<-q.Done()
	require.Len(t, got, 100)
	for i := range 100 {
		require.Equal(t, i, got[i], "in order")
	}
	require.False(t, q.Post(func() {}), "closed")
	require.ErrorIs(t, q.Do(context.Background(), func() error { return nil }), ErrClosed)
}

func TestDoWaitsAndCloseAndWait(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	q := New()
	v := 0
	require.NoError(t, q.Do(context.Background(), func() error { v = 1; return nil }))
	require.Equal(t, 1, v)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	block := make(chan struct{})
	q.Post(func() { <-block })
	require.ErrorIs(t, q.Do(ctx, func() error { return nil }), context.Canceled)
	close(block)
	q.CloseAndWait()
	select {
	case <-q.Done():
	default:
		t.Fatal("done after CloseAndWait")
	}
}
