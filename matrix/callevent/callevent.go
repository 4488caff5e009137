// Package callevent is the typed content of Matrix VoIP events (client-server
// API v1.19 "Voice over IP" with MSC2746, MSC3077 and MSC3291): how they look
// on the wire, how lenient we are when reading them, and nothing else. It
// does not know about calls, media or the bot; the call state machine in
// bridge/ does.
//
// mautrix-go has structs for some of these events, but they lack fields the
// spec has (invitee, sdp_stream_metadata, capabilities), send the
// end-of-candidates marker with a bogus sdpMid and sdpMLineIndex, and fail on
// content other clients really send. So we parse the raw content ourselves.
package callevent

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Type is a call event's type as it appears in the event's "type" field.
type Type string

// The call event types. Each has a stable name; sdp_stream_metadata_changed
// also has the unstable name matrix-js-sdk sends.
const (
	TypeInvite                           Type = "m.call.invite"
	TypeCandidates                       Type = "m.call.candidates"
	TypeAnswer                           Type = "m.call.answer"
	TypeSelectAnswer                     Type = "m.call.select_answer"
	TypeReject                           Type = "m.call.reject"
	TypeNegotiate                        Type = "m.call.negotiate"
	TypeHangup                           Type = "m.call.hangup"
	TypeSDPStreamMetadataChanged         Type = "m.call.sdp_stream_metadata_changed"
	TypeSDPStreamMetadataChangedUnstable Type = "org.matrix.call.sdp_stream_metadata_changed"
)

// Types lists every type this package parses.
var Types = []Type{
	TypeInvite, TypeCandidates, TypeAnswer, TypeSelectAnswer, TypeReject,
	TypeNegotiate, TypeHangup, TypeSDPStreamMetadataChanged, TypeSDPStreamMetadataChangedUnstable,
}

// IsCallType says whether t is one of Types.
func IsCallType(t string) bool {
	for _, ct := range Types {
		if string(ct) == t {
			return true
		}
	}
	return false
}

// Version is a call's protocol version. Only two exist: 0 (legacy, before
// MSC2746) and "1". The spec says receivers must treat any value other than
// the integer 0 as "1" — including the number 1, which some clients send.
type Version string

// The two versions.
const (
	Version0 Version = "0"
	Version1 Version = "1"
)

// UnmarshalJSON accepts 0 (or "0") as version 0 and anything else as "1".
func (v *Version) UnmarshalJSON(raw []byte) error {
	switch strings.TrimSpace(string(raw)) {
	case "0", `"0"`:
		*v = Version0
	default:
		*v = Version1
	}
	return nil
}

// MarshalJSON writes version 0 as the integer 0 (as legacy clients expect)
// and version 1 as the string "1" (as the spec says).
func (v Version) MarshalJSON() ([]byte, error) {
	if v == Version0 {
		return []byte("0"), nil
	}
	return []byte(`"1"`), nil
}

// CallID names a call (within its room): the call_id of its events.
type CallID string

// PartyID names one client within a call: the party_id of its events.
type PartyID string

// Common is in every call event.
type Common struct {
	CallID CallID `json:"call_id"`
	// PartyID identifies the sending client within the call; version 0
	// clients have none. We accept any string (famedly's are base64 with
	// "+/=", outside the spec's grammar).
	PartyID PartyID `json:"party_id,omitempty"`
	Version Version `json:"version"`
}

// CallInfo returns the common fields, so that any content can be routed.
func (c *Common) CallInfo() *Common { return c }

// maxIDLength is the spec's limit for call and party IDs.
const maxIDLength = 255

func (c *Common) validate() error {
	switch {
	case c.CallID == "":
		return errors.New("call_id is missing")
	case len(c.CallID) > maxIDLength:
		return fmt.Errorf("call_id is %d bytes long (at most %d)", len(c.CallID), maxIDLength)
	case len(c.PartyID) > maxIDLength:
		return fmt.Errorf("party_id is %d bytes long (at most %d)", len(c.PartyID), maxIDLength)
	}
	return nil
}

// Content is the parsed content of any call event.
type Content interface {
	CallInfo() *Common
	validate() error
}

// Parse reads the content of an event of type t. Unknown fields are ignored;
// missing required fields are errors that say which field.
func Parse(t Type, raw json.RawMessage) (Content, error) {
	var c Content
	switch t {
	case TypeInvite:
		c = &Invite{}
	case TypeCandidates:
		c = &Candidates{}
	case TypeAnswer:
		c = &Answer{}
	case TypeSelectAnswer:
		c = &SelectAnswer{}
	case TypeReject:
		c = &Reject{}
	case TypeNegotiate:
		c = &Negotiate{}
	case TypeHangup:
		c = &Hangup{}
	case TypeSDPStreamMetadataChanged, TypeSDPStreamMetadataChangedUnstable:
		c = &SDPStreamMetadataChanged{}
	default:
		return nil, fmt.Errorf("%s is not a call event type", t)
	}
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, fmt.Errorf("parsing %s content: %w", t, err)
	}
	if err := c.CallInfo().validate(); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", t, err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", t, err)
	}
	return c, nil
}
