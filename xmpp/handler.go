package xmpp

import (
	"context"
	"errors"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/voipbot/voipbot/xmpp/qbsignal"
)

// Handler takes what the client receives. Both methods are called from
// one goroutine of the client's (never its read loop), one call at a time:
// HandleMessage in the order messages arrived, so it may call Send. While
// it is busy, up to QueueSize messages wait; more are dropped (and
// logged), so it should hand a signal on and return rather than work on
// it. HandleState is called when a session becomes ready (true) and when
// it ends (false), in order with the messages.
type Handler interface {
	HandleMessage(ctx context.Context, m Message)
	HandleState(ctx context.Context, connected bool)
}

// QueueSize is how many received messages wait for a busy Handler.
const QueueSize = 256

// Message is a headline (a signal, or another module's message) or an
// error bounce, as received.
type Message struct {
	From, To jid.JID // From is full (the peer's resource), To the bot's
	Type     stanza.MessageType
	ID       string
	// Signal is the decoded signal when Err is nil. Otherwise Err says why
	// there is none:
	//   - errors.Is(Err, qbsignal.ErrNotSignal): not a video chat signal;
	//   - errors.Is(Err, qbsignal.ErrDelayed): a replayed signal, which the
	//     SDK ignores (count it, do not act on it);
	//   - errors.Is(Err, qbsignal.ErrMalformed): a broken signal (a peer's
	//     bug or an attack; the *qbsignal.FieldError names the field);
	//   - errors.Is(Err, ErrBounced): an error message, the server's (or
	//     the peer's) answer to a message the bot sent with this ID
	//     (*BounceError has its condition: service-unavailable for a
	//     user who is offline or unknown).
	Signal qbsignal.Signal
	Err    error
}

// ErrBounced: the message is an error answer to one the bot sent.
var ErrBounced = errors.New("xmpp: message bounced")

// BounceError is the error of a bounced message.
type BounceError struct{ Stanza stanza.Error }

func (e *BounceError) Error() string {
	msg := "xmpp: message bounced: " + string(e.Stanza.Condition)
	if text := e.Stanza.Text[""]; text != "" {
		msg += ": " + text
	}
	return msg
}

func (e *BounceError) Unwrap() error { return ErrBounced }

// HandlerFuncs is a Handler of two funcs, either may be nil.
type HandlerFuncs struct {
	Message func(ctx context.Context, m Message)
	State   func(ctx context.Context, connected bool)
}

// HandleMessage calls f.Message.
func (f HandlerFuncs) HandleMessage(ctx context.Context, m Message) {
	if f.Message != nil {
		f.Message(ctx, m)
	}
}

// HandleState calls f.State.
func (f HandlerFuncs) HandleState(ctx context.Context, connected bool) {
	if f.State != nil {
		f.State(ctx, connected)
	}
}
