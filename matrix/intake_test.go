package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/store"
)

func openStore(t *testing.T) (*store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "voipbot.db")
	st, err := store.Open(context.Background(), store.Config{Path: path}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st, path
}

func newTestIntake(t *testing.T, st *store.Store) *intake {
	t.Helper()
	in := newIntake(st, zerolog.Nop(), NewMetrics(prometheus.NewRegistry()))
	t.Cleanup(func() { in.stop(time.Second) })
	return in
}

func textEvent(room id.RoomID, n int) *store.InboxEvent {
	raw, _ := json.Marshal(map[string]any{
		"type": "m.room.message", "event_id": fmt.Sprintf("$%s-%d", room, n), "sender": "@alice:x",
		"content": map[string]any{"msgtype": "m.text", "body": fmt.Sprint(n)},
	})
	return &store.InboxEvent{Queue: string(room), EventID: id.EventID(fmt.Sprintf("$%s-%d", room, n)),
		Source: int(event.SourceJoin | event.SourceTimeline), Event: raw, ReceivedAt: time.Now()}
}

func batch(events ...*store.InboxEvent) *store.Intake {
	return &store.Intake{SyncUser: "@bot:x", NextBatch: fmt.Sprintf("s%d", time.Now().UnixNano()), Events: events}
}

// recorder collects handled events in order.
type recorder struct {
	mu   sync.Mutex
	seen map[id.RoomID][]string
	all  chan *Event
}

func newRecorder() *recorder {
	return &recorder{seen: map[id.RoomID][]string{}, all: make(chan *Event, 1000)}
}

func (r *recorder) handle(_ context.Context, evt *Event) error {
	r.mu.Lock()
	r.seen[evt.RoomID] = append(r.seen[evt.RoomID], evt.Content.AsMessage().Body)
	r.mu.Unlock()
	r.all <- evt
	return nil
}

func (r *recorder) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.all:
		case <-time.After(10 * time.Second):
			t.Fatal("events not handled")
		}
	}
}

func TestIntakeHandsEventsOverInOrderPerRoom(t *testing.T) {
	st, _ := openStore(t)
	in := newTestIntake(t, st)
	rec := newRecorder()
	in.on(event.EventMessage, nil, rec.handle)

	var events []*store.InboxEvent
	for i := range 50 {
		events = append(events, textEvent("!a:x", i), textEvent("!b:x", i))
	}
	require.NoError(t, in.commit(context.Background(), batch(events[:40]...)))
	require.NoError(t, in.commit(context.Background(), batch(events[40:]...)))
	rec.wait(t, 100)

	for _, room := range []id.RoomID{"!a:x", "!b:x"} {
		require.Len(t, rec.seen[room], 50)
		for i, body := range rec.seen[room] {
			require.Equal(t, fmt.Sprint(i), body, "room %s in order", room)
		}
	}
	require.NoError(t, testWaitEmpty(st))
}

// testWaitEmpty waits for the workers' deletes of handled events: the
// delete follows the handler and signals nothing.
func testWaitEmpty(st *store.Store) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return testbed.WaitFor(ctx, func() (bool, error) {
		n, err := st.InboxLen(ctx)
		return n == 0, err
	})
}

func TestSlowRoomDoesNotHoldUpOthers(t *testing.T) {
	st, _ := openStore(t)
	in := newTestIntake(t, st)
	release := make(chan struct{})
	rec := newRecorder()
	in.on(event.EventMessage, nil, func(ctx context.Context, evt *Event) error {
		if evt.RoomID == "!slow:x" {
			<-release
		}
		return rec.handle(ctx, evt)
	})
	require.NoError(t, in.commit(context.Background(), batch(textEvent("!slow:x", 0), textEvent("!fast:x", 0))))
	// The commit returned although the slow handler is blocked: the sync
	// loop is not held up. The fast room is handled meanwhile.
	select {
	case evt := <-rec.all:
		require.Equal(t, id.RoomID("!fast:x"), evt.RoomID)
	case <-time.After(10 * time.Second):
		t.Fatal("the fast room waited for the slow one")
	}
	close(release)
	rec.wait(t, 1)
}

func TestPendingEventsSurviveShutdownAndResume(t *testing.T) {
	st, _ := openStore(t)
	in := newIntake(st, zerolog.Nop(), NewMetrics(prometheus.NewRegistry()))
	started := make(chan struct{})
	in.on(event.EventMessage, nil, func(ctx context.Context, evt *Event) error {
		close(started)
		<-ctx.Done() // still running when the grace period ends
		return ctx.Err()
	})
	require.NoError(t, in.commit(context.Background(), batch(textEvent("!a:x", 0), textEvent("!a:x", 1))))
	<-started
	in.stop(50 * time.Millisecond)
	n, err := st.InboxLen(context.Background())
	require.NoError(t, err)
	require.Equal(t, 2, n, "the interrupted event and the one behind it stay stored")

	next := newTestIntake(t, st)
	rec := newRecorder()
	next.on(event.EventMessage, nil, rec.handle)
	require.NoError(t, next.resume(context.Background()))
	rec.wait(t, 2)
	require.Equal(t, []string{"0", "1"}, rec.seen["!a:x"], "resumed in order")
	require.NoError(t, testWaitEmpty(st))
}

func TestEventsAfterStopAreKeptForNextStart(t *testing.T) {
	st, _ := openStore(t)
	in := newIntake(st, zerolog.Nop(), NewMetrics(prometheus.NewRegistry()))
	in.on(event.EventMessage, nil, func(context.Context, *Event) error { return nil })
	in.stop(time.Second)
	require.NoError(t, in.commit(context.Background(), batch(textEvent("!a:x", 0))))
	n, err := st.InboxLen(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func TestHandlerPanicAndErrorAreContained(t *testing.T) {
	st, _ := openStore(t)
	in := newTestIntake(t, st)
	rec := newRecorder()
	in.on(event.EventMessage, nil, func(ctx context.Context, evt *Event) error {
		switch evt.Content.AsMessage().Body {
		case "0":
			panic("bad event")
		case "1":
			return errors.New("handler failed")
		}
		return rec.handle(ctx, evt)
	})
	require.NoError(t, in.commit(context.Background(), batch(textEvent("!a:x", 0), textEvent("!a:x", 1), textEvent("!a:x", 2))))
	rec.wait(t, 1)
	require.Equal(t, []string{"2"}, rec.seen["!a:x"], "the room goes on after a panic and an error")
	require.NoError(t, testWaitEmpty(st))
	require.Equal(t, 2.0, testutil.ToFloat64(in.metrics.EventsHandled.WithLabelValues("m.room.message", "error")))
}

func TestEventPendingAcrossRestartsIsGivenUp(t *testing.T) {
	st, _ := openStore(t)
	require.NoError(t, st.CommitIntake(context.Background(), batch(textEvent("!a:x", 0))))
	for range maxAttempts - 1 {
		_, err := st.ResumeInbox(context.Background()) // starts that crashed on it
		require.NoError(t, err)
	}
	in := newTestIntake(t, st)
	var called atomic.Bool
	in.on(event.EventMessage, nil, func(context.Context, *Event) error { called.Store(true); return nil })
	require.NoError(t, in.resume(context.Background()))
	require.NoError(t, testWaitEmpty(st))
	require.False(t, called.Load(), "a poison event is dropped, not handled again")
	require.Equal(t, 1.0, testutil.ToFloat64(in.metrics.EventsHandled.WithLabelValues("unknown", "given_up")))
}

func TestFilterDecidesWhatIsStored(t *testing.T) {
	st, _ := openStore(t)
	in := newTestIntake(t, st)
	in.on(event.EventMessage, func(evt *event.Event) bool { return evt.Sender == "@alice:x" }, func(context.Context, *Event) error { return nil })
	require.True(t, in.wants(&event.Event{Type: event.EventMessage, Sender: "@alice:x"}))
	require.False(t, in.wants(&event.Event{Type: event.EventMessage, Sender: "@bob:x"}))
	require.False(t, in.wants(&event.Event{Type: event.EventReaction, Sender: "@alice:x"}))
	require.False(t, in.wants(&event.Event{Type: event.EventEncrypted}), "without encryption, encrypted events are not stored")
	in.decrypt = func(context.Context, *event.Event) (*event.Event, error) { return nil, errors.New("no key") }
	require.True(t, in.wants(&event.Event{Type: event.EventEncrypted}), "with encryption every encrypted event is stored: its type is unknown")
}

func TestUndecryptableEventIsCountedAndDropped(t *testing.T) {
	st, _ := openStore(t)
	in := newTestIntake(t, st)
	in.decrypt = func(context.Context, *event.Event) (*event.Event, error) { return nil, errors.New("no room key") }
	in.on(event.EventMessage, nil, func(context.Context, *Event) error { t.Error("must not be called"); return nil })
	raw, _ := json.Marshal(map[string]any{"type": "m.room.encrypted", "event_id": "$e", "sender": "@alice:x",
		"content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AAAA", "session_id": "s", "sender_key": "k", "device_id": "D"}})
	require.NoError(t, in.commit(context.Background(), batch(&store.InboxEvent{
		Queue: "!a:x", EventID: "$e", Source: int(event.SourceJoin | event.SourceTimeline), Event: raw, ReceivedAt: time.Now(),
	})))
	require.NoError(t, testWaitEmpty(st))
	require.Equal(t, 1.0, testutil.ToFloat64(in.metrics.EventsHandled.WithLabelValues("m.room.encrypted", "undecryptable")))
}

func TestDecodeStoredRestoresClassAndRoom(t *testing.T) {
	stateKey := "@bot:x"
	raw, _ := json.Marshal(map[string]any{"type": "m.room.member", "event_id": "$m", "sender": "@alice:x", "state_key": stateKey,
		"content": map[string]any{"membership": "invite"}})
	evt, err := decodeStored(&store.InboxEvent{Queue: "!r:x", Source: int(event.SourceInvite | event.SourceState), Event: raw})
	require.NoError(t, err)
	require.Equal(t, event.StateMember, evt.Type)
	require.Equal(t, id.RoomID("!r:x"), evt.RoomID)
	require.Equal(t, event.MembershipInvite, evt.Content.AsMember().Membership)

	raw, _ = json.Marshal(map[string]any{"type": "m.call.invite", "sender": "@alice:x", "content": map[string]any{"call_id": "c"}})
	evt, err = decodeStored(&store.InboxEvent{Queue: "", Source: int(event.SourceToDevice), Event: raw})
	require.NoError(t, err)
	require.Equal(t, event.ToDeviceEventType, evt.Type.Class)

	_, err = decodeStored(&store.InboxEvent{Queue: "!r:x", Event: []byte("{not json")})
	require.Error(t, err)
}

func TestEventAge(t *testing.T) {
	now := time.Now()
	evt := &Event{Event: &event.Event{Unsigned: event.Unsigned{Age: 1500}}, ReceivedAt: now.Add(-2 * time.Second)}
	require.Equal(t, 3500*time.Millisecond, evt.Age(now))
}

// Each room's share of a sync response ends with a batch-end call, after its
// last event was handled: the call code rings invites only then.
func TestBatchEndFollowsEachRoomsLastEvent(t *testing.T) {
	st, _ := openStore(t)
	in := newTestIntake(t, st)
	var mu sync.Mutex
	var seen []string
	ends := make(chan struct{}, 16)
	in.on(event.EventMessage, nil, func(_ context.Context, evt *Event) error {
		mu.Lock()
		seen = append(seen, string(evt.RoomID)+" "+evt.Content.AsMessage().Body)
		mu.Unlock()
		return nil
	})
	in.batchEnds = append(in.batchEnds, func(_ context.Context, room id.RoomID) {
		mu.Lock()
		seen = append(seen, string(room)+" end")
		mu.Unlock()
		ends <- struct{}{}
	})
	require.NoError(t, in.commit(context.Background(), batch(textEvent("!a:x", 0), textEvent("!b:x", 0), textEvent("!a:x", 1))))
	require.NoError(t, in.commit(context.Background(), batch(textEvent("!a:x", 2))))
	for range 3 {
		select {
		case <-ends:
		case <-time.After(10 * time.Second):
			t.Fatal("batch ends missing")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var a, b []string
	for _, s := range seen {
		if strings.HasPrefix(s, "!a:x") {
			a = append(a, s)
		} else {
			b = append(b, s)
		}
	}
	require.Equal(t, []string{"!a:x 0", "!a:x 1", "!a:x end", "!a:x 2", "!a:x end"}, a)
	require.Equal(t, []string{"!b:x 0", "!b:x end"}, b)
}
