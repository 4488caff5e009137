package matrix

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/store"
)

// syncer takes in /sync responses and appservice transactions (converted to
// the same shape). It runs mautrix's default syncer for what must happen
// before anything else (the crypto machine's to-device and key-count
// handling, the state store) and collects the events handlers want into one
// batch, which the intake commits together with the position.
type syncer struct {
	*mautrix.DefaultSyncer
	userID  id.UserID
	intake  *intake
	metrics *Metrics
	log     zerolog.Logger
	olm     *crypto.OlmMachine // nil without encryption
	health  *Health
	// roomsFromSync is false for an appservice: its room events arrive as
	// transactions, and /sync serves only to-device messages and key
	// counts (the homeserver may not apply the filter's wildcards).
	roomsFromSync bool

	// mu makes batches one at a time: in appservice mode both a to-device
	// /sync and transactions deliver.
	mu      sync.Mutex
	current *collector
}

// collector gathers the events of one batch.
type collector struct {
	receivedAt time.Time
	initial    bool
	skip       map[id.EventID]struct{}
	events     []*store.InboxEvent
}

var _ mautrix.ExtensibleSyncer = (*syncer)(nil)

func newSyncer(userID id.UserID, in *intake, m *Metrics, h *Health, log zerolog.Logger) *syncer {
	s := &syncer{
		DefaultSyncer: mautrix.NewDefaultSyncer(),
		userID:        userID,
		intake:        in,
		metrics:       m,
		health:        h,
		log:           log,
	}
	// Keep events whose content mautrix cannot parse: handlers read the raw
	// content (a call event with a field of an unexpected type must still
	// reach the call state machine to be answered with an error).
	s.ParseErrorHandler = func(evt *event.Event, err error) bool {
		log.Debug().Err(err).Str("type", evt.Type.Type).Stringer("event_id", evt.ID).Msg("Keeping event whose content mautrix could not parse")
		return true
	}
	s.FilterJSON = &mautrix.Filter{
		Presence:    &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
		AccountData: &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
		Room: &mautrix.RoomFilter{
			Timeline:    &mautrix.FilterPart{Limit: 50},
			Ephemeral:   &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
			AccountData: &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
		},
	}
	s.OnEvent(s.collect)
	return s
}

// OnFailedSync counts the failure and lets mautrix retry.
func (s *syncer) OnFailedSync(res *mautrix.RespSync, err error) (time.Duration, error) {
	s.metrics.SyncFailures.Inc()
	s.metrics.Errors.WithLabelValues("sync").Inc()
	s.health.syncFailed(err)
	s.log.Warn().Err(err).Msg("Sync request failed")
	return s.DefaultSyncer.OnFailedSync(res, err)
}

// OnSync registers a handler of whole sync responses (the crypto machine's).
// Such handlers do not see appservice transactions: a transaction is not a
// sync response, and its empty key counts would read as "no one-time keys
// left". transactionCrypto.apply feeds the machine from transactions.
func (s *syncer) OnSync(h mautrix.SyncHandler) {
	s.DefaultSyncer.OnSync(func(ctx context.Context, resp *mautrix.RespSync, since string) bool {
		if ctx.Value(fromTransactionKey{}) != nil {
			return true
		}
		return h(ctx, resp, since)
	})
}

type fromTransactionKey struct{}

// ProcessResponse takes in one /sync response.
func (s *syncer) ProcessResponse(ctx context.Context, resp *mautrix.RespSync, since string) error {
	// Noted before the lock: a transaction being stored holds it, and that
	// wait is the bot's, not the homeserver's.
	s.health.syncReceived(time.Now())
	if !s.roomsFromSync {
		resp.Rooms = mautrix.RespSyncRooms{}
	}
	if err := s.process(ctx, resp, since, &store.Intake{SyncUser: s.userID, NextBatch: resp.NextBatch}, nil); err != nil {
		return err
	}
	// Only /sync responses count for health: transactions arriving do not
	// show that the to-device /sync of an appservice is answered.
	s.health.synced(time.Now())
	return nil
}

// processTransaction takes in one appservice transaction, reshaped as a sync
// response, with the crypto data it carries (nil if none).
func (s *syncer) processTransaction(ctx context.Context, txnID string, resp *mautrix.RespSync, crypto *transactionCrypto) error {
	ctx = context.WithValue(ctx, fromTransactionKey{}, true)
	return s.process(ctx, resp, "txn:"+txnID, &store.Intake{TxnID: txnID}, crypto)
}

// process takes in one batch and commits it with the given position.
func (s *syncer) process(ctx context.Context, resp *mautrix.RespSync, since string, position *store.Intake, txnCrypto *transactionCrypto) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &collector{receivedAt: time.Now(), initial: since == "", skip: eventsBeforeOwnJoin(resp, s.userID)}

	// Olm-encrypted to-device events are decrypted here rather than by the
	// crypto machine's own sync handler, which drops every decrypted event of
	// a type it does not know itself (to-device m.call.* among them).
	var olmEvents []*event.Event
	if s.olm != nil {
		resp.ToDevice.Events = slices.DeleteFunc(resp.ToDevice.Events, func(evt *event.Event) bool {
			// The class is not set yet: compare the type name.
			if evt.Type.Type == event.ToDeviceEncrypted.Type {
				olmEvents = append(olmEvents, evt)
				return true
			}
			return false
		})
	}

	s.current = c
	err := s.DefaultSyncer.ProcessResponse(ctx, resp, since)
	s.current = nil
	if err != nil {
		return err
	}
	if txnCrypto != nil && s.olm != nil {
		txnCrypto.apply(ctx, s.olm, resp.ToDevice.Events)
	}
	for _, evt := range olmEvents {
		s.takeOlm(ctx, c, evt)
	}

	position.Events = c.events
	if err = s.intake.commit(ctx, position); err != nil {
		s.metrics.Errors.WithLabelValues("intake").Inc()
		return fmt.Errorf("storing %d events: %w", len(c.events), err)
	}
	s.metrics.SyncLastSuccess.SetToCurrentTime()
	return nil
}

// collect is the default syncer's global listener: it adds the events
// handlers want to the current batch.
func (s *syncer) collect(_ context.Context, evt *event.Event) {
	c := s.current
	if c == nil {
		return
	}
	source := evt.Mautrix.EventSource
	switch {
	case c.initial && source&(event.SourceToDevice|event.SourceSticky) == 0 &&
		(evt.Type != event.StateMember || evt.GetStateKey() != s.userID.String()):
		// The first sync brings room history: only the bot's own
		// memberships (pending invites, rooms it is in) are news. To-device
		// messages are never history: each is delivered once. Sticky
		// events (MSC4354) are what is current, not history.
		return
	case source&event.SourceToDevice == 0 && evt.StateKey == nil && evt.Sender == s.userID:
		// The bot's own echo: it knows what it sent.
		return
	case !s.intake.wants(evt):
		return
	}
	if _, skip := c.skip[evt.ID]; skip && evt.ID != "" {
		return
	}
	s.add(c, evt, "", false)
	if source&event.SourceTimeline != 0 && evt.Timestamp > 0 {
		s.metrics.EventDelay.WithLabelValues("received").Observe(c.receivedAt.Sub(time.UnixMilli(evt.Timestamp)).Seconds())
	}
}

func (s *syncer) add(c *collector, evt *event.Event, senderDevice id.DeviceID, decrypted bool) {
	// Store the content exactly as received, not as mautrix re-encodes it.
	stored := *evt
	stored.Content = event.Content{VeryRaw: evt.Content.VeryRaw}
	raw, err := json.Marshal(&stored)
	if err != nil {
		s.log.Err(err).Stringer("event_id", evt.ID).Msg("Dropping event that cannot be encoded")
		return
	}
	c.events = append(c.events, &store.InboxEvent{
		Queue:        string(evt.RoomID),
		EventID:      evt.ID,
		Source:       int(evt.Mautrix.EventSource),
		Event:        raw,
		SenderDevice: senderDevice,
		Decrypted:    decrypted,
		ReceivedAt:   c.receivedAt,
	})
}

// takeOlm decrypts one Olm-encrypted to-device event. Room keys and other
// crypto events are consumed by the crypto machine; anything else is added
// to the batch if a handler wants it.
func (s *syncer) takeOlm(ctx context.Context, c *collector, evt *event.Event) {
	evt.Type.Class = event.ToDeviceEventType
	evt.Mautrix.EventSource = event.SourceToDevice
	if err := evt.Content.ParseRaw(evt.Type); err != nil {
		s.log.Warn().Err(err).Stringer("sender", evt.Sender).Msg("Dropping malformed encrypted to-device event")
		return
	}
	decrypted := s.olm.HandleEncryptedEvent(ctx, evt)
	if decrypted == nil {
		return
	}
	plain := &event.Event{
		Sender:  decrypted.Sender,
		Type:    event.Type{Type: decrypted.Type.Type, Class: event.ToDeviceEventType},
		Content: decrypted.Content,
		Mautrix: event.MautrixInfo{EventSource: event.SourceToDevice | event.SourceDecrypted},
	}
	if !s.intake.wants(plain) {
		s.log.Debug().Str("type", plain.Type.Type).Stringer("sender", plain.Sender).Msg("Ignoring encrypted to-device event no handler wants")
		return
	}
	var device id.DeviceID
	if decrypted.SenderDevice != nil {
		device = decrypted.SenderDevice.DeviceID
	}
	s.add(c, plain, device, true)
}

// eventsBeforeOwnJoin lists the events of a batch that predate the bot's
// join of their room in this same batch: the state the room had and the
// history the homeserver sends along. They were not addressed to the bot.
func eventsBeforeOwnJoin(resp *mautrix.RespSync, userID id.UserID) map[id.EventID]struct{} {
	skip := map[id.EventID]struct{}{}
	for _, room := range resp.Rooms.Join {
		joinAt := -1
		for i, evt := range room.Timeline.Events {
			if isOwnJoin(evt, userID) {
				joinAt = i
			}
		}
		if joinAt < 0 {
			continue
		}
		for _, evt := range room.State.Events {
			skip[evt.ID] = struct{}{}
		}
		for _, evt := range room.Timeline.Events[:joinAt] {
			skip[evt.ID] = struct{}{}
		}
	}
	return skip
}

// isOwnJoin reports whether evt is the bot joining (not a profile change of
// an existing join).
func isOwnJoin(evt *event.Event, userID id.UserID) bool {
	if evt.Type.Type != event.StateMember.Type || evt.GetStateKey() != userID.String() {
		return false
	}
	var content, prev struct {
		Membership event.Membership `json:"membership"`
	}
	_ = json.Unmarshal(evt.Content.VeryRaw, &content)
	if evt.Unsigned.PrevContent != nil {
		_ = json.Unmarshal(evt.Unsigned.PrevContent.VeryRaw, &prev)
	}
	return content.Membership == event.MembershipJoin && prev.Membership != event.MembershipJoin
}
