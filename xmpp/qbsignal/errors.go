package qbsignal

import (
	"errors"
	"fmt"
)

// Why Decode refused a message. ErrNotSignal and ErrDelayed are messages
// the SDK ignores too (count them, do not complain); every other refusal
// is a signal the SDK would have tried to act on and which is broken, and
// matches ErrMalformed as well as its own sentinel.
var (
	// ErrNotSignal: not a headline message with a WebRTCVideoChat
	// extraParams (another module's message, a chat message, …).
	ErrNotSignal = errors.New("qbsignal: not a WebRTCVideoChat signal")
	// ErrDelayed: a signal with a <delay> element (replayed from offline
	// storage or history), which the SDK drops.
	ErrDelayed = errors.New("qbsignal: delayed signal (the SDK ignores these)")
	// ErrMalformed: bad XML, or a field that cannot be what it claims.
	ErrMalformed = errors.New("qbsignal: malformed signal")
	// ErrUnknownType: a signalType that is none of the six.
	ErrUnknownType = errors.New("qbsignal: unknown signalType")
	// ErrMissingField: a field the SDK needs for this type is absent
	// (sessionID always; callerID, opponentsIDs and sdp for a call; sdp
	// for an accept; candidates for iceCandidates).
	ErrMissingField = errors.New("qbsignal: missing field")
	// ErrBadID: a user id (callerID, opponentID, a JID's node) that is
	// not decimal digits or does not fit 64 bits.
	ErrBadID = errors.New("qbsignal: not a numeric user id")
	// ErrTooLarge: a field, a list or the whole message is over its limit.
	ErrTooLarge = errors.New("qbsignal: too large")
)

// Limits on what Decode reads and Encode writes. An SDP of a video call
// with every codec Chromium offers is about 7 KiB; a batch of candidates
// holds a few per interface.
const (
	MaxStanza     = 256 << 10 // bytes of a whole message
	MaxSDP        = 64 << 10  // bytes of an SDP (sdp, sessionDescription's sdp)
	MaxText       = 8 << 10   // bytes of any other text
	MaxCandidates = 64        // candidates in one signal
	MaxOpponents  = 32        // opponentIDs of a session
	MaxDepth      = 10        // element nesting in the message (userInfo objects nest below depth 3)
	MaxElements   = 1024      // elements in a message
)

// FieldError is a refusal that names the field at fault. It matches Err
// and, unless Err is ErrNotSignal or ErrDelayed, ErrMalformed.
type FieldError struct {
	Field string // e.g. "sessionID", "opponentsIDs", "userInfo.name"
	Err   error  // one of the sentinels above
	// Detail says more (the value, the limit); it carries no secret, but
	// may carry the peer's text, cut short.
	Detail string
}

func (e *FieldError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("%v: %s", e.Err, e.Field)
	}
	return fmt.Sprintf("%v: %s: %s", e.Err, e.Field, e.Detail)
}

// Unwrap gives the sentinel, and ErrMalformed for the refusals of a signal
// (not for ErrNotSignal or ErrDelayed).
func (e *FieldError) Unwrap() []error {
	if errors.Is(e.Err, ErrNotSignal) || errors.Is(e.Err, ErrDelayed) || errors.Is(e.Err, ErrMalformed) {
		return []error{e.Err}
	}
	return []error{e.Err, ErrMalformed}
}

func fieldErr(field string, err error, detail string) error {
	return &FieldError{Field: field, Err: err, Detail: detail}
}

// quote is s for an error message: quoted, and cut to 64 bytes.
func quote(s string) string {
	const n = 64
	if len(s) > n {
		return fmt.Sprintf("%q…", s[:n])
	}
	return fmt.Sprintf("%q", s)
}
