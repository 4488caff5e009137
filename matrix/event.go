// Package matrix is everything Matrix and nothing about media: login and
// device persistence, end-to-end encryption, the sync loop or appservice
// transactions, a durable intake that hands events to handlers in order per
// room, and sending.
package matrix

import (
	"context"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Event is an event handed to a handler: decrypted if it arrived encrypted.
type Event struct {
	*event.Event
	// ReceivedAt is when the bot took the event in. With Unsigned.Age it
	// gives the event's age now, even if it waited in the inbox.
	ReceivedAt time.Time
	// Encrypted says the event arrived encrypted and was decrypted.
	Encrypted bool
	// SenderDevice is the device that sent an encrypted to-device event, as
	// proven by Olm; empty otherwise.
	SenderDevice id.DeviceID
}

// Age is how old the event is now by the homeserver's account: its age when
// it was received plus the time since.
func (e *Event) Age(now time.Time) time.Duration {
	return time.Duration(e.Unsigned.Age)*time.Millisecond + now.Sub(e.ReceivedAt)
}

// Handler handles one event. Handlers of a room run one at a time, in the
// order the homeserver delivered the room's events; they must not block for
// long (hand long work to a queue of your own). An error is logged and
// counted; the event is not retried.
type Handler func(ctx context.Context, evt *Event) error

// Filter selects the events of a type a handler wants. Only selected events
// are stored in the inbox, so a filter saves a database write per event.
type Filter func(evt *event.Event) bool

// BatchEndHandler is called after a room's events of one sync response (or
// appservice transaction, or everything pending at start) have been handled,
// in the room's worker. The spec asks clients to ring for an invite only then,
// so that an invite answered or hung up in the same response never rings.
// room is "" for to-device events.
type BatchEndHandler func(ctx context.Context, room id.RoomID)
