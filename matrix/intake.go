package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/callevent"
	"github.com/voipbot/voipbot/store"
)

// maxAttempts is how many starts an event may be pending across before it is
// given up on: an event that crashes the process must not do so forever.
const maxAttempts = 3

// decryptFunc decrypts a Megolm room event, waiting for its key if needed.
type decryptFunc func(ctx context.Context, evt *event.Event) (*event.Event, error)

type registration struct {
	filter Filter
	handle Handler
}

// intake stores the events of each /sync response or appservice transaction
// durably (together with the position acknowledging them), then hands them
// to handlers: one worker per room at a time, in delivery order, so that
// neither the sync loop nor another room waits for a slow handler.
type intake struct {
	store   *store.Store
	log     zerolog.Logger
	metrics *Metrics

	handlers  map[event.Type][]registration
	batchEnds []BatchEndHandler
	decrypt   decryptFunc // nil without encryption

	mu       sync.Mutex
	queues   map[string]*roomQueue
	pending  int
	stopping bool
	workers  sync.WaitGroup

	// handlerCtx is given to handlers; it is cancelled only when shutdown's
	// grace period for in-flight work runs out.
	handlerCtx    context.Context
	cancelHandler context.CancelFunc
}

type roomQueue struct {
	events  []queued
	running bool
}

// queued is an event waiting for its room's worker. last marks the room's
// last event of the sync response (or transaction) it came in.
type queued struct {
	*store.InboxEvent
	last bool
}

func newIntake(st *store.Store, log zerolog.Logger, m *Metrics) *intake {
	ctx, cancel := context.WithCancel(context.Background())
	return &intake{
		store:         st,
		log:           log,
		metrics:       m,
		handlers:      map[event.Type][]registration{},
		queues:        map[string]*roomQueue{},
		handlerCtx:    log.WithContext(ctx),
		cancelHandler: cancel,
	}
}

// on registers a handler for an event type; filter may be nil. Handlers must
// be registered before the first event is taken in.
func (in *intake) on(t event.Type, filter Filter, h Handler) {
	in.handlers[t] = append(in.handlers[t], registration{filter: filter, handle: h})
}

// wants reports whether an event must be stored: some handler wants it, or
// it is an encrypted room event whose inner type is not known yet.
func (in *intake) wants(evt *event.Event) bool {
	if evt.Type == event.EventEncrypted && in.decrypt != nil {
		return true
	}
	for _, r := range in.handlers[evt.Type] {
		if r.filter == nil || r.filter(evt) {
			return true
		}
	}
	return false
}

// commit stores a batch with its position, then queues its events. If the
// commit fails nothing is queued and the position is not advanced: the
// homeserver delivers the same events again.
func (in *intake) commit(ctx context.Context, batch *store.Intake) error {
	if err := in.store.CommitIntake(ctx, batch); err != nil {
		return err
	}
	in.enqueue(batch.Events)
	return nil
}

// resume queues the events left pending by an earlier run.
func (in *intake) resume(ctx context.Context) error {
	events, err := in.store.ResumeInbox(ctx)
	if err != nil {
		return err
	}
	if len(events) > 0 {
		in.log.Info().Int("events", len(events)).Msg("Resuming events left pending by the last run")
	}
	in.enqueue(events)
	return nil
}

func (in *intake) enqueue(events []*store.InboxEvent) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.stopping {
		return // stored; the next start resumes them
	}
	last := make(map[string]int, 1)
	for i, e := range events {
		last[e.Queue] = i
	}
	for i, e := range events {
		q := in.queues[e.Queue]
		if q == nil {
			q = &roomQueue{}
			in.queues[e.Queue] = q
		}
		q.events = append(q.events, queued{InboxEvent: e, last: last[e.Queue] == i})
		in.pending++
		if !q.running {
			q.running = true
			in.workers.Add(1)
			go in.work(e.Queue, q)
		}
	}
}

// Pending is the number of events queued in memory and not yet handled.
func (in *intake) Pending() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.pending
}

func (in *intake) work(key string, q *roomQueue) {
	defer in.workers.Done()
	for {
		in.mu.Lock()
		if in.stopping || len(q.events) == 0 {
			q.running = false
			if len(q.events) == 0 {
				delete(in.queues, key)
			}
			in.mu.Unlock()
			return
		}
		e := q.events[0]
		q.events = q.events[1:]
		in.mu.Unlock()

		done := in.handleStored(e.InboxEvent)
		if done && e.last {
			in.endBatch(key)
		}

		in.mu.Lock()
		in.pending--
		in.mu.Unlock()
		if done {
			// Removing a handled event must finish even during shutdown.
			if err := in.store.DeleteInbox(context.WithoutCancel(in.handlerCtx), e.Seq); err != nil {
				in.log.Err(err).Int64("seq", e.Seq).Msg("Failed to remove handled event; it will be handled again after a restart")
				in.metrics.Errors.WithLabelValues("intake").Inc()
			}
		}
	}
}

// endBatch tells the batch-end handlers that a room's events of one sync
// response have all been handled.
func (in *intake) endBatch(queue string) {
	ctx := in.log.WithContext(in.handlerCtx)
	for _, h := range in.batchEnds {
		func() {
			defer func() {
				if r := recover(); r != nil {
					in.log.Error().Any("panic", r).Str("room_id", queue).Msg("Batch-end handler panicked")
					in.metrics.Errors.WithLabelValues("handler").Inc()
				}
			}()
			h(ctx, id.RoomID(queue))
		}()
	}
}

// handleStored decodes, decrypts and dispatches one stored event. It returns
// false when shutdown interrupted it, so that it stays stored for next time.
func (in *intake) handleStored(e *store.InboxEvent) (done bool) {
	log := in.log.With().Int64("seq", e.Seq).Str("room_id", e.Queue).Stringer("event_id", e.EventID).Logger()
	ctx := log.WithContext(in.handlerCtx)
	if e.Attempts >= maxAttempts {
		log.Error().Int("attempts", e.Attempts).Msg("Giving up on an event that was pending across several restarts")
		in.metrics.EventsHandled.WithLabelValues("unknown", "given_up").Inc()
		return true
	}
	evt, err := decodeStored(e)
	if err != nil {
		log.Err(err).Msg("Dropping stored event that cannot be decoded")
		in.metrics.EventsHandled.WithLabelValues("unknown", "undecodable").Inc()
		return true
	}
	mevt := &Event{Event: evt, ReceivedAt: e.ReceivedAt, Encrypted: e.Decrypted, SenderDevice: e.SenderDevice}
	if evt.Type == event.EventEncrypted && evt.RoomID != "" {
		if in.decrypt == nil {
			in.metrics.EventsHandled.WithLabelValues(evt.Type.Type, "undecryptable").Inc()
			return true
		}
		decrypted, err := in.decrypt(ctx, evt)
		if ctx.Err() != nil {
			return false
		} else if err != nil {
			log.Warn().Err(err).Stringer("sender", evt.Sender).Msg("Failed to decrypt event")
			in.metrics.EventsHandled.WithLabelValues(evt.Type.Type, "undecryptable").Inc()
			return true
		}
		decrypted.Mautrix.EventSource = evt.Mautrix.EventSource | event.SourceDecrypted
		if decrypted.Sticky == nil {
			// Stickiness is the outer event's (MSC4354), not the content's.
			decrypted.Sticky = evt.Sticky
		}
		mevt.Event = decrypted
		mevt.Encrypted = true
	}
	in.dispatch(ctx, mevt)
	return ctx.Err() == nil
}

func (in *intake) dispatch(ctx context.Context, evt *Event) {
	typeName := evt.Type.Type
	regs := in.handlers[evt.Type]
	handled := false
	for _, r := range regs {
		if r.filter != nil && !r.filter(evt.Event) {
			continue
		}
		handled = true
		start := time.Now()
		err := safeHandle(ctx, r.handle, evt)
		in.metrics.HandlerSeconds.WithLabelValues(typeName).Observe(time.Since(start).Seconds())
		if err != nil {
			zerolog.Ctx(ctx).Err(err).Str("type", typeName).Msg("Event handler failed")
			in.metrics.EventsHandled.WithLabelValues(typeName, "error").Inc()
			in.metrics.Errors.WithLabelValues("handler").Inc()
		} else {
			in.metrics.EventsHandled.WithLabelValues(typeName, "ok").Inc()
		}
	}
	if !handled {
		// An encrypted event whose inner type no handler wants.
		in.metrics.EventsHandled.WithLabelValues(typeName, "ignored").Inc()
		return
	}
	in.metrics.EventDelay.WithLabelValues("handled").Observe(time.Since(evt.ReceivedAt).Seconds())
}

// safeHandle turns a handler's panic into an error: one bad event must not
// take the process (and every call in it) down.
func safeHandle(ctx context.Context, h Handler, evt *Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return h(ctx, evt)
}

// decodeStored turns a stored row back into a parsed event with the type
// class its source implies, as the sync code had it.
func decodeStored(e *store.InboxEvent) (*event.Event, error) {
	var evt event.Event
	if err := json.Unmarshal(e.Event, &evt); err != nil {
		return nil, fmt.Errorf("decoding stored event: %w", err)
	}
	source := event.Source(e.Source)
	evt.Mautrix.EventSource = source
	evt.RoomID = id.RoomID(e.Queue) // sync responses leave room_id out of room events
	evt.Type.Class = classOf(&evt, source)
	if callevent.IsCallType(evt.Type.Type) {
		// Call events are parsed by their handlers (callevent), which are
		// more lenient than mautrix's structs and name what is wrong.
		return &evt, nil
	}
	if err := evt.Content.ParseRaw(evt.Type); err != nil &&
		!errors.Is(err, event.ErrUnsupportedContentType) && !errors.Is(err, event.ErrContentAlreadyParsed) {
		return nil, fmt.Errorf("parsing %s content: %w", evt.Type.Type, err)
	}
	return &evt, nil
}

// classOf is the type class the sync response's section implies.
func classOf(evt *event.Event, source event.Source) event.TypeClass {
	switch {
	case evt.StateKey != nil:
		return event.StateEventType
	case source&event.SourceEphemeral != 0:
		return event.EphemeralEventType
	case source&event.SourceAccountData != 0:
		return event.AccountDataEventType
	case source&event.SourceToDevice != 0:
		return event.ToDeviceEventType
	default:
		return event.MessageEventType
	}
}

// stop stops taking new events from the queues, waits up to grace for the
// handlers running now to finish, then cancels them and waits for them to
// return. Events not handled stay stored for the next start.
func (in *intake) stop(grace time.Duration) {
	in.mu.Lock()
	in.stopping = true
	in.mu.Unlock()
	finished := make(chan struct{})
	go func() {
		in.workers.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(grace):
		in.log.Warn().Dur("grace", grace).Msg("Event handlers still running at shutdown; cancelling them")
		in.cancelHandler()
		<-finished
	}
	in.cancelHandler()
}
