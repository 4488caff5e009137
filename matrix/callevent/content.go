package callevent

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"maunium.net/go/mautrix/id"
)

// SDPType is an SDP's role in an offer/answer exchange.
type SDPType string

// The two SDP types call events carry.
const (
	SDPOffer  SDPType = "offer"
	SDPAnswer SDPType = "answer"
)

// SessionDescription is an SDP offer or answer.
type SessionDescription struct {
	Type SDPType `json:"type"`
	SDP  string  `json:"sdp"`
}

func (d *SessionDescription) validate(field string, want ...SDPType) error {
	if d.SDP == "" {
		return fmt.Errorf("%s.sdp is missing", field)
	}
	for _, t := range want {
		if d.Type == t {
			return nil
		}
	}
	return fmt.Errorf("%s.type is %q, want %q", field, d.Type, want)
}

// Lifetime is a duration in milliseconds on the wire.
type Lifetime int64

// MaxLifetime is the longest lifetime an event is taken to have: clients
// send 60 s (invites) and 10–60 s (negotiate offers), and nothing rings for
// longer than a person waits. Beyond it a lifetime is clamped, so that no
// value wraps around when it becomes a time.Duration (1e13 ms and more would
// turn negative; 2^53−1 would wrap to a small positive duration).
const MaxLifetime = 10 * time.Minute

// Duration converts the lifetime, clamped to MaxLifetime.
func (l Lifetime) Duration() time.Duration {
	if l.Clamped() {
		return MaxLifetime
	}
	return time.Duration(l) * time.Millisecond
}

// Clamped says whether the lifetime is longer than MaxLifetime (Duration
// returns MaxLifetime for it).
func (l Lifetime) Clamped() bool { return l > Lifetime(MaxLifetime/time.Millisecond) }

// UnmarshalJSON reads any JSON number: a fraction is truncated and a number
// beyond int64 saturates (Duration clamps it anyway). Anything else is an
// error.
func (l *Lifetime) UnmarshalJSON(raw []byte) error {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return fmt.Errorf("lifetime: %s is not a number of milliseconds", raw)
	}
	switch {
	case f >= math.MaxInt64:
		*l = math.MaxInt64
	case f <= math.MinInt64:
		*l = math.MinInt64
	default:
		*l = Lifetime(f)
	}
	return nil
}

// LifetimeOf converts a duration.
func LifetimeOf(d time.Duration) Lifetime { return Lifetime(d.Milliseconds()) }

// Capabilities are what the sender can do beyond the spec's basics
// (MSC2747 transfer, DTMF). Everyone sends them; nobody requires them.
type Capabilities struct {
	Transferee bool `json:"m.call.transferee"`
	DTMF       bool `json:"m.call.dtmf"`
}

// Invite (m.call.invite) starts a call.
type Invite struct {
	Common
	Offer SessionDescription `json:"offer"`
	// Lifetime is how long the invite is valid after it was sent.
	Lifetime Lifetime `json:"lifetime"`
	// Invitee is the user the call is for; empty means any other member.
	Invitee      id.UserID     `json:"invitee,omitempty"`
	Capabilities *Capabilities `json:"capabilities,omitempty"`
	StreamMetadata
}

func (c *Invite) validate() error {
	if err := c.Offer.validate("offer", SDPOffer); err != nil {
		return err
	}
	if c.Lifetime <= 0 {
		return fmt.Errorf("lifetime is %d (must be a positive number of milliseconds)", c.Lifetime)
	}
	return nil
}

// Candidate is one ICE candidate. The end-of-candidates marker is a
// candidate with an empty string and neither sdpMid nor sdpMLineIndex.
type Candidate struct {
	Candidate     string  `json:"candidate"`
	SDPMid        *string `json:"sdpMid,omitempty"`
	SDPMLineIndex *uint16 `json:"sdpMLineIndex,omitempty"`
}

// EndOfCandidates is the marker a client sends when it has gathered all.
func EndOfCandidates() Candidate { return Candidate{} }

// IsEnd says whether the candidate is the end-of-candidates marker.
func (c Candidate) IsEnd() bool { return c.Candidate == "" }

// Candidates (m.call.candidates) trickles ICE candidates.
type Candidates struct {
	Common
	Candidates []Candidate `json:"candidates"`
}

func (c *Candidates) validate() error {
	if c.Candidates == nil {
		return errors.New("candidates is missing")
	}
	for i, cand := range c.Candidates {
		if !cand.IsEnd() && cand.SDPMid == nil && cand.SDPMLineIndex == nil {
			return fmt.Errorf("candidates[%d] has neither sdpMid nor sdpMLineIndex", i)
		}
	}
	return nil
}

// Answer (m.call.answer) accepts an invite.
type Answer struct {
	Common
	Answer       SessionDescription `json:"answer"`
	Capabilities *Capabilities      `json:"capabilities,omitempty"`
	StreamMetadata
}

func (c *Answer) validate() error { return c.Answer.validate("answer", SDPAnswer) }

// SelectAnswer (m.call.select_answer) is the caller naming the party whose
// answer (or reject) it took.
type SelectAnswer struct {
	Common
	SelectedPartyID PartyID `json:"selected_party_id"`
}

func (c *SelectAnswer) validate() error {
	if c.SelectedPartyID == "" {
		return errors.New("selected_party_id is missing")
	}
	return nil
}

// Reject (m.call.reject) declines a version 1 invite; version 0 invites are
// declined with a hangup.
type Reject struct {
	Common
	// Reason is not in the spec, which gives rejects none; matrix-js-sdk
	// reports it to its user when present (else user_hangup), so the bot
	// sends one when it declines for a reason (user_busy, replaced).
	Reason HangupReason `json:"reason,omitempty"`
}

func (*Reject) validate() error { return nil }

// Negotiate (m.call.negotiate) renegotiates media of an established call.
type Negotiate struct {
	Common
	Description SessionDescription `json:"description"`
	// Lifetime is how long the sender waits for an answer to an offer.
	Lifetime Lifetime `json:"lifetime"`
	StreamMetadata
}

func (c *Negotiate) validate() error {
	return c.Description.validate("description", SDPOffer, SDPAnswer)
}

// HangupReason says why a call ended. Clients send values outside the spec's
// list ("replaced", famedly's "userHangup", …): every value ends the call.
type HangupReason string

// The spec's hangup reasons, and "replaced", which the spec's glare rule and
// matrix-js-sdk use for the call that lost.
const (
	ReasonICEFailed       HangupReason = "ice_failed"
	ReasonICETimeout      HangupReason = "ice_timeout"
	ReasonInviteTimeout   HangupReason = "invite_timeout"
	ReasonUserHangup      HangupReason = "user_hangup"
	ReasonUserMediaFailed HangupReason = "user_media_failed"
	ReasonUserBusy        HangupReason = "user_busy"
	ReasonUnknownError    HangupReason = "unknown_error"
	ReasonReplaced        HangupReason = "replaced"
)

// Hangup (m.call.hangup) ends a call (or declines a version 0 invite).
type Hangup struct {
	Common
	Reason HangupReason `json:"reason,omitempty"`
}

func (*Hangup) validate() error { return nil }

// EffectiveReason is the reason, with an absent one read as user_hangup as
// the spec says.
func (c *Hangup) EffectiveReason() HangupReason {
	if c.Reason == "" {
		return ReasonUserHangup
	}
	return c.Reason
}

// SDPStreamMetadataChanged (m.call.sdp_stream_metadata_changed) reports mute
// changes without renegotiating.
type SDPStreamMetadataChanged struct {
	Common
	StreamMetadata
}

func (c *SDPStreamMetadataChanged) validate() error {
	if c.Streams() == nil {
		return errors.New("sdp_stream_metadata is missing")
	}
	return nil
}

// Marshal writes content as the event content to send.
func Marshal(c Content) (json.RawMessage, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", c, err)
	}
	return raw, nil
}
