package rtcevent

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The newer membership (MSC4143 with MSC4354 sticky events, Element
// Call's "matrix_2_0" mode): a sticky room event per member, not a state
// event. It is how js-sdk (the one Element Call 0.26 bundles) sends it
// (StickyEventMembershipManager.makeMyMembership) and checks it
// (checkRtcMembershipData). Element Call reads these alongside state
// memberships in every mode.

// TypeRTCMember is the sticky membership event.
const TypeRTCMember = "org.matrix.msc4143.rtc.member"

// MaxStickyDuration is the longest a sticky event stays sticky
// (MSC4354; js-sdk sends its membership for this long and caps what it
// reads to it).
const MaxStickyDuration = time.Hour

// StickyKeyField is the content field that names which earlier sticky
// event of the same sender a sticky event replaces.
const StickyKeyField = "msc4354_sticky_key"

// RTCMember is the content of a TypeRTCMember sticky event.
type RTCMember struct {
	Application RTCApplication `json:"application"`
	// SlotID is "application#id": a room's call is RoomSlot.
	SlotID     string        `json:"slot_id"`
	Transports RTCTransports `json:"transports"`
	Member     RTCMemberID   `json:"member"`
	Versions   []string      `json:"versions"`
	// StickyKey is the member id: a later event with the same key (a
	// refresh, a leave) replaces this one.
	StickyKey string `json:"msc4354_sticky_key"`
}

// RTCApplication is what the call is.
type RTCApplication struct {
	Type   string `json:"type"`
	Intent string `json:"m.call.intent,omitempty"`
}

// RTCTransports are where the member publishes (each member its own SFU)
// and what kinds it can subscribe on.
type RTCTransports struct {
	Published    []Focus  `json:"published"`
	CanSubscribe []string `json:"can_subscribe"`
}

// RTCMemberID says who the member is: user, device and a member id
// (js-sdk uses "user:device").
type RTCMemberID struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	ID       string `json:"id"`
}

// NewRTCMember is a device's sticky membership of a room's call, which it
// publishes through the JWT service at serviceURL.
func NewRTCMember(user, device, serviceURL string, video bool) RTCMember {
	intent := "audio"
	if video {
		intent = "video"
	}
	memberID := Identity(user, device)
	return RTCMember{
		Application: RTCApplication{Type: ApplicationCall, Intent: intent},
		SlotID:      RoomSlot,
		Transports: RTCTransports{
			Published:    []Focus{{Type: FocusTypeLiveKit, ServiceURL: serviceURL}},
			CanSubscribe: []string{FocusTypeLiveKit},
		},
		Member:    RTCMemberID{UserID: user, DeviceID: device, ID: memberID},
		Versions:  []string{},
		StickyKey: memberID,
	}
}

// RTCLeave is the content a member leaves with: only the sticky key.
func RTCLeave(user, device string) map[string]string {
	return map[string]string{StickyKeyField: Identity(user, device)}
}

// HashedIdentity is a sticky member's LiveKit participant identity:
// unpadded base64 of sha256 over the JSON array [user, device, member id]
// (js-sdk computeRtcIdentityRaw), which a JWT service's /get_token gives.
func HashedIdentity(user, device, memberID string) string {
	b, _ := json.Marshal([]string{user, device, memberID}) // strings always marshal
	sum := sha256.Sum256(b)
	return base64.RawStdEncoding.EncodeToString(sum[:])
}

// mxid is js-sdk's MXID_PATTERN.
var mxid = regexp.MustCompile(`^@[^:]+:\S+$`)

// ParseRTCMember reads a sticky membership from sender as js-sdk does: a
// content with nothing but its sticky key (a leave) is ErrNotMember; one
// that misses a required field, or whose member is another user than the
// sender, is an error.
func ParseRTCMember(raw json.RawMessage, sender string) (*RTCMember, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("rtc membership: %w", err)
	}
	delete(fields, "sticky_key")
	if len(fields) == 0 || (len(fields) == 1 && fields[StickyKeyField] != nil) || fields["application"] == nil {
		return nil, ErrNotMember
	}
	var m RTCMember
	var errs []string
	var loose struct {
		SlotID      *string         `json:"slot_id"`
		Application *RTCApplication `json:"application"`
		Member      *struct {
			UserID   *string `json:"user_id"`
			DeviceID *string `json:"device_id"`
			ID       *string `json:"id"`
		} `json:"member"`
		Transports *struct {
			Published    []Focus  `json:"published"`
			CanSubscribe []string `json:"can_subscribe"`
		} `json:"transports"`
		Versions  []string `json:"versions"`
		StickyKey *string  `json:"msc4354_sticky_key"`
		Stable    *string  `json:"sticky_key"`
	}
	if err := json.Unmarshal(raw, &loose); err != nil {
		return nil, fmt.Errorf("rtc membership: %w", err)
	}
	switch {
	case loose.Application == nil || loose.Application.Type == "":
		errs = append(errs, "application.type is not a string")
	case strings.Contains(loose.Application.Type, "#"):
		errs = append(errs, `application.type has a "#"`)
	default:
		m.Application = *loose.Application
	}
	if loose.SlotID == nil || !strings.HasPrefix(*loose.SlotID, m.Application.Type+"#") || strings.Count(*loose.SlotID, "#") != 1 {
		errs = append(errs, "slot_id is not application#id")
	} else {
		m.SlotID = *loose.SlotID
	}
	if mb := loose.Member; mb == nil || mb.UserID == nil || mb.DeviceID == nil || mb.ID == nil {
		errs = append(errs, "member has no user_id, device_id and id")
	} else if !mxid.MatchString(*mb.UserID) || *mb.UserID != sender {
		errs = append(errs, "member.user_id is not the sender")
	} else {
		m.Member = RTCMemberID{UserID: *mb.UserID, DeviceID: *mb.DeviceID, ID: *mb.ID}
	}
	if t := loose.Transports; t == nil || t.Published == nil || t.CanSubscribe == nil {
		errs = append(errs, "transports has no published and can_subscribe lists")
	} else if slices.ContainsFunc(t.Published, func(f Focus) bool { return f.Type == "" }) {
		errs = append(errs, "a published transport has no type")
	} else {
		m.Transports = RTCTransports{Published: t.Published, CanSubscribe: t.CanSubscribe}
	}
	if loose.Versions == nil {
		errs = append(errs, "versions is not a list")
	}
	m.Versions = loose.Versions
	switch {
	case loose.StickyKey == nil && loose.Stable == nil:
		errs = append(errs, "no sticky key")
	case loose.StickyKey != nil && loose.Stable != nil && *loose.StickyKey != *loose.Stable:
		errs = append(errs, "sticky_key and msc4354_sticky_key differ")
	case loose.StickyKey != nil:
		m.StickyKey = *loose.StickyKey
	default:
		m.StickyKey = *loose.Stable
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return nil, fmt.Errorf("rtc membership: %s", strings.Join(errs, "; "))
	}
	return &m, nil
}

// StickyEvent is what StickyMembers needs of a TypeRTCMember event.
type StickyEvent struct {
	Sender, EventID string
	OriginServerTS  int64
	// Until is when the event stops being sticky (its time plus its
	// sticky duration, capped at MaxStickyDuration).
	Until   time.Time
	Content json.RawMessage
}

// StickyKey is the event's sticky key, "" if it has none.
func (e StickyEvent) StickyKey() string {
	var c struct {
		Key string `json:"msc4354_sticky_key"`
	}
	_ = json.Unmarshal(e.Content, &c)
	return c.Key
}

// StickyMembers are the room call's members from the room's sticky
// membership events: for each sender and sticky key the latest event
// still sticky at now, left out when it is a leave, malformed, of another
// slot. Their focus is their first published LiveKit transport, in room's
// LiveKit room.
func StickyMembers(room string, events []StickyEvent, now time.Time) (members []Member, bad []error) {
	latest := map[string]StickyEvent{}
	for _, e := range events {
		if !e.Until.After(now) {
			continue
		}
		k := e.Sender + "\x00" + e.StickyKey()
		if cur, ok := latest[k]; !ok || e.OriginServerTS > cur.OriginServerTS || (e.OriginServerTS == cur.OriginServerTS && e.EventID > cur.EventID) {
			latest[k] = e
		}
	}
	for _, e := range latest {
		m, err := ParseRTCMember(e.Content, e.Sender)
		if errors.Is(err, ErrNotMember) {
			continue
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("%s (%s): %w", e.EventID, e.Sender, err))
			continue
		}
		if m.SlotID != RoomSlot || m.Application.Type != ApplicationCall {
			continue
		}
		member := Member{
			User: e.Sender, Device: m.Member.DeviceID, Joined: time.UnixMilli(e.OriginServerTS), Expires: e.Until,
			ID: HashedIdentity(m.Member.UserID, m.Member.DeviceID, m.Member.ID), Sticky: m,
		}
		for _, f := range m.Transports.Published {
			if f.Type == FocusTypeLiveKit && f.ServiceURL != "" {
				member.Transport = Focus{Type: f.Type, ServiceURL: f.ServiceURL, Alias: room}
				break
			}
		}
		members = append(members, member)
	}
	slices.SortStableFunc(members, func(a, b Member) int { return a.Joined.Compare(b.Joined) })
	return members, bad
}

// Combine is a call's members from both kinds of membership: a device
// with both is taken from its sticky one (as js-sdk prefers it), oldest
// first.
func Combine(state, sticky []Member) []Member {
	out := slices.Clone(sticky)
	for _, m := range state {
		if !slices.ContainsFunc(sticky, func(s Member) bool { return s.User == m.User && s.Device == m.Device }) {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b Member) int { return a.Joined.Compare(b.Joined) })
	return out
}
