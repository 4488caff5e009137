// Package rtcevent is the typed content of MatrixRTC events as Element Call
// 0.26 and Element X send and parse them (matrix-js-sdk's src/matrixrtc):
// the per-device call membership state event (MSC3401's
// org.matrix.msc3401.call.member in the "session" shape of MSC4143), the
// ring (MSC4075), and the media keys sent over Olm to-device. How they look
// on the wire, how a room's memberships make a call, how LiveKit names a
// call's room and a member, and nothing else: the Element Call leg kind
// (bridge/rtc) knows about calls, media and the bot.
package rtcevent

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Event types.
const (
	// TypeCallMember is the membership state event, one per device.
	TypeCallMember = "org.matrix.msc3401.call.member"
	// TypeNotification rings the room's members (MSC4075).
	TypeNotification = "org.matrix.msc4075.rtc.notification"
	// TypeDecline turns a ring down (MSC4310).
	TypeDecline = "org.matrix.msc4310.rtc.decline"
	// TypeEncryptionKeys carries a member's media key, Olm-encrypted, to
	// each other member device.
	TypeEncryptionKeys = "io.element.call.encryption_keys"
)

// The room call every client joins: application m.call, the empty call id,
// scope m.room.
const (
	ApplicationCall = "m.call"
	ScopeRoom       = "m.room"
	// RoomSlot is the slot id of a room's call, as LiveKit room aliases are
	// made from it (/sfu/get always uses it).
	RoomSlot = "m.call#ROOM"
)

// DefaultExpiry is how long a membership lasts unless refreshed: 4 h
// (js-sdk's DEFAULT_EXPIRE_DURATION).
const DefaultExpiry = 4 * time.Hour

// FocusTypeLiveKit is the only kind of focus there is.
const FocusTypeLiveKit = "livekit"

// The ways a call picks its focus.
const (
	// SelectionOldest: everyone uses the focus of the oldest membership.
	SelectionOldest = "oldest_membership"
	// SelectionMultiSFU: each member publishes to its own preferred focus
	// and subscribes on the others'.
	SelectionMultiSFU = "multi_sfu"
)

// Focus is a place media goes: a LiveKit SFU reached through a JWT service.
type Focus struct {
	Type string `json:"type"`
	// ServiceURL is the JWT service (lk-jwt-service) that hands out tokens
	// for the SFU.
	ServiceURL string `json:"livekit_service_url,omitempty"`
	// Alias names the call at the service; Element Call puts the room id.
	Alias string `json:"livekit_alias,omitempty"`
}

// Usable says whether a member can be reached through the focus: Element
// Call ignores a LiveKit focus without both fields.
func (f Focus) Usable() bool {
	return f.Type == FocusTypeLiveKit && f.ServiceURL != "" && f.Alias != ""
}

// ActiveFocus is how the member picks its focus.
type ActiveFocus struct {
	Type      string `json:"type"`
	Selection string `json:"focus_selection,omitempty"`
}

// Membership is one device's membership of a call: the content of its
// TypeCallMember state event.
type Membership struct {
	Application string `json:"application"`
	CallID      string `json:"call_id"`
	Scope       string `json:"scope,omitempty"`
	DeviceID    string `json:"device_id"`
	// MembershipID is "user:device"; the member id is this, else the
	// sender and device.
	MembershipID  string      `json:"membershipID,omitempty"`
	FocusActive   ActiveFocus `json:"focus_active"`
	FociPreferred []Focus     `json:"foci_preferred"`
	// Expires is a duration in milliseconds from CreatedTS (else the
	// event's origin_server_ts), not a timestamp.
	Expires int64 `json:"expires,omitempty"`
	// CreatedTS is the first join's time in ms, carried by refreshes.
	CreatedTS int64  `json:"created_ts,omitempty"`
	Intent    string `json:"m.call.intent,omitempty"`
}

// StateKey is the membership event's state key for a device:
// "_@user:server_DEVICE_m.call". The leading underscore keeps the key
// ownerless in rooms before MSC3757, where a key that starts with "@" must
// be the sender's own user id and nothing more.
func StateKey(user, device string) string {
	return "_" + user + "_" + device + "_" + ApplicationCall
}

// Identity is a state-event member's LiveKit participant identity: always
// "sender:device" (js-sdk CallMembership.parseFromEvent). Element Call
// plays no participant whose identity matches no membership.
func Identity(user, device string) string { return user + ":" + device }

// RoomAlias is the LiveKit room a JWT service puts a call in:
// unpadded standard base64 of sha256 over the JSON array [room, slot].
func RoomAlias(room, slot string) string {
	b, _ := json.Marshal([]string{room, slot}) // strings always marshal
	sum := sha256.Sum256(b)
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

// ErrNotMember is returned for content that is not a current membership
// (the {} a device leaves with, or one of another application).
var ErrNotMember = errors.New("not a call membership")

// ParseMembership reads a membership event's content as js-sdk's
// checkSessionsMembershipData does: {} (a leave) is ErrNotMember; a
// membership without application, call_id, device_id, focus_active.type
// or with foci_preferred that are not typed objects is an error (clients
// drop such members).
func ParseMembership(raw json.RawMessage) (*Membership, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("call membership: %w", err)
	}
	if len(fields) == 0 {
		return nil, ErrNotMember
	}
	var m Membership
	var errs []string
	str := func(name string, to *string) {
		v, ok := fields[name]
		if !ok || json.Unmarshal(v, to) != nil {
			errs = append(errs, name+" is not a string")
		}
	}
	str("application", &m.Application)
	str("call_id", &m.CallID)
	str("device_id", &m.DeviceID)
	if v, ok := fields["focus_active"]; !ok || json.Unmarshal(v, &m.FocusActive) != nil || m.FocusActive.Type == "" {
		errs = append(errs, "focus_active has no type")
	}
	if v, ok := fields["foci_preferred"]; !ok || json.Unmarshal(v, &m.FociPreferred) != nil {
		errs = append(errs, "foci_preferred is not a list of foci")
	} else if slices.ContainsFunc(m.FociPreferred, func(f Focus) bool { return f.Type == "" }) {
		errs = append(errs, "a focus in foci_preferred has no type")
	}
	for name, to := range map[string]*string{"scope": &m.Scope, "membershipID": &m.MembershipID, "m.call.intent": &m.Intent} {
		if v, ok := fields[name]; ok && json.Unmarshal(v, to) != nil {
			errs = append(errs, name+" is not a string")
		}
	}
	for name, to := range map[string]*int64{"expires": &m.Expires, "created_ts": &m.CreatedTS} {
		if v, ok := fields[name]; ok {
			var f float64
			if json.Unmarshal(v, &f) != nil || f < 0 {
				errs = append(errs, name+" is not a number of milliseconds")
				continue
			}
			*to = int64(f)
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return nil, fmt.Errorf("call membership: %s", strings.Join(errs, "; "))
	}
	return &m, nil
}

// RoomCall says whether the membership is of the room's call (the one
// Element Call joins), not of another application or slot.
func (m *Membership) RoomCall() bool {
	return m.Application == ApplicationCall && m.CallID == ""
}

// ExpiresAt is when the membership lapses: created_ts (else the event's
// origin_server_ts) plus expires (DefaultExpiry if absent).
func (m *Membership) ExpiresAt(originServerTS int64) time.Time {
	created := m.CreatedTS
	if created == 0 {
		created = originServerTS
	}
	d := m.Expires
	if d == 0 {
		d = DefaultExpiry.Milliseconds()
	}
	return time.UnixMilli(created + d)
}

// Member is a current member of a room's call, from its state event
// (Membership) or its sticky event (Sticky).
type Member struct {
	User, Device string
	// Joined is when the device joined (created_ts, else the event's time).
	Joined     time.Time
	Expires    time.Time
	Membership *Membership
	// Sticky is the membership of a member that sent a sticky one; ID
	// is then its LiveKit identity and Transport where it publishes.
	Sticky    *RTCMember
	ID        string
	Transport Focus
}

// Identity is the member's LiveKit participant identity.
func (m Member) Identity() string {
	if m.ID != "" {
		return m.ID
	}
	return Identity(m.User, m.Device)
}

// StateEvent is what Members needs of a TypeCallMember state event.
type StateEvent struct {
	Sender, StateKey string
	OriginServerTS   int64
	Content          json.RawMessage
}

// Members is the room call's current members from the room's membership
// state events, oldest first: events that are {} or malformed, of another
// call, expired at now, or whose state key is not their sender's device's
// are left out. bad lists why each malformed one was.
func Members(events []StateEvent, now time.Time) (members []Member, bad []error) {
	for _, e := range events {
		m, err := ParseMembership(e.Content)
		if errors.Is(err, ErrNotMember) {
			continue
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("%s (%s): %w", e.StateKey, e.Sender, err))
			continue
		}
		if !m.RoomCall() {
			continue
		}
		if e.StateKey != StateKey(e.Sender, m.DeviceID) && e.StateKey != StateKey(e.Sender, m.DeviceID)[1:] {
			bad = append(bad, fmt.Errorf("%s (%s): the state key is not the sender's device %s", e.StateKey, e.Sender, m.DeviceID))
			continue
		}
		exp := m.ExpiresAt(e.OriginServerTS)
		if !exp.After(now) {
			continue
		}
		joined := m.CreatedTS
		if joined == 0 {
			joined = e.OriginServerTS
		}
		members = append(members, Member{User: e.Sender, Device: m.DeviceID, Joined: time.UnixMilli(joined), Expires: exp, Membership: m})
	}
	slices.SortStableFunc(members, func(a, b Member) int { return a.Joined.Compare(b.Joined) })
	return members, bad
}

// OldestFocus is the focus a call uses when its oldest member selects
// oldest_membership (Element Call's "compatibility" mode does, as every
// member then meets on one SFU): the oldest member's first usable
// preferred focus.
func OldestFocus(members []Member) (Focus, bool) {
	for _, m := range members {
		if m.Membership == nil {
			if m.Transport.Usable() {
				return m.Transport, true
			}
			continue
		}
		for _, f := range m.Membership.FociPreferred {
			if f.Usable() {
				return f, true
			}
		}
	}
	return Focus{}, false
}
