// Package rtc is the Element Call leg kind: the bot as a MatrixRTC
// participant in a room's call (Element Call, Element X), over the
// call's LiveKit SFU (voip/livekit). A leg is the bot's device in one
// room's call: its membership state event, a LiveKit token from the
// call's JWT service, and one participant that publishes what the other
// party of the bridge says and carries the call's active speaker to it.
//
// It never imports bridge: Matrix is what it needs of the homeserver.
package rtc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/matrix/rtcevent"
	"github.com/voipbot/voipbot/voip/livekit"
)

// Matrix is what the leg kind needs of the homeserver (*matrix.Client is
// one).
type Matrix interface {
	UserID() id.UserID
	DeviceID() id.DeviceID
	CallMemberships(ctx context.Context, room id.RoomID) ([]rtcevent.StateEvent, error)
	SetCallMembership(ctx context.Context, room id.RoomID, content any) (id.EventID, error)
	MaySendState(ctx context.Context, room id.RoomID, user id.UserID, t string) (bool, error)
	OpenIDToken(ctx context.Context) (*mautrix.RespOpenIDToken, error)
	SendRoomEvent(ctx context.Context, room id.RoomID, t string, content any) (id.EventID, error)
	RoomEncrypted(ctx context.Context, room id.RoomID) (bool, error)
	// CanEncrypt says whether the bot has an Olm device (to send media
	// keys with SendEncryptedToDevice).
	CanEncrypt() bool
	SendEncryptedToDevice(ctx context.Context, t string, content any, to map[id.UserID][]id.DeviceID) error
	// WellKnownFoci reads the foci the homeserver's .well-known advertises.
	WellKnownFoci(ctx context.Context) ([]rtcevent.Focus, error)
	// DelayedEvents says whether the homeserver has MSC4140's delayed
	// events; ScheduleCallLeave and UpdateDelayedEvent use them.
	DelayedEvents(ctx context.Context) bool
	ScheduleCallLeave(ctx context.Context, room id.RoomID, delay time.Duration) (string, error)
	UpdateDelayedEvent(ctx context.Context, delayID string, action event.DelayAction) error
	// StickyEvents says whether the homeserver has sticky events
	// (MSC4354); SendStickyMembership and ScheduleStickyLeave use them.
	StickyEvents(ctx context.Context) bool
	SendStickyMembership(ctx context.Context, room id.RoomID, content any, duration time.Duration) (id.EventID, error)
	ScheduleStickyLeave(ctx context.Context, room id.RoomID, delay, duration time.Duration) (string, error)
}

// Config is the Element Call leg kind's settings (the rtc key).
type Config struct {
	// ServiceURL is the LiveKit JWT service (lk-jwt-service) the bot
	// names as its focus when it starts a room's call; a call already
	// running uses its oldest member's focus. Empty: the first LiveKit
	// focus of the homeserver's .well-known (org.matrix.msc4143.rtc_foci).
	ServiceURL string `yaml:"livekit_service_url"`
	// MembershipExpiry is how long the bot's membership lasts if it is not
	// refreshed: a crashed bot stays a member of a call (a silent tile in
	// Element Call) that long. It is refreshed at half of it.
	MembershipExpiry time.Duration `yaml:"membership_expiry"`
	// RingTimeout is how long a call the bot starts in an empty room
	// rings before it gives up.
	RingTimeout time.Duration `yaml:"ring_timeout"`
	// JoinTimeout bounds getting a token and joining the SFU.
	JoinTimeout time.Duration `yaml:"join_timeout"`
	// Membership is the shape of the bot's membership: MembershipState
	// (the state event every Element Call and Element X reads) or
	// MembershipSticky (MSC4143's sticky event, Element Call's
	// "matrix_2_0" mode; it needs a homeserver with MSC4354 and a JWT
	// service with /get_token, and falls back to the state event on a
	// homeserver without sticky events).
	Membership string `yaml:"membership"`
}

// The shapes of the bot's membership (rtc.membership).
const (
	MembershipState  = "state"
	MembershipSticky = "sticky"
)

// Defaults are the settings an unset key takes.
var Defaults = Config{MembershipExpiry: 2 * time.Minute, RingTimeout: 60 * time.Second, JoinTimeout: 20 * time.Second, Membership: MembershipState}

func (c Config) withDefaults() Config {
	if c.MembershipExpiry == 0 {
		c.MembershipExpiry = Defaults.MembershipExpiry
	}
	if c.RingTimeout == 0 {
		c.RingTimeout = Defaults.RingTimeout
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = Defaults.JoinTimeout
	}
	if c.Membership == "" {
		c.Membership = Defaults.Membership
	}
	return c
}

// Validate reports every problem, each naming its key.
func (c Config) Validate() error {
	var errs []error
	if c.MembershipExpiry != 0 && c.MembershipExpiry < 30*time.Second {
		errs = append(errs, errors.New("rtc.membership_expiry: must be at least 30s (it is refreshed at half of it)"))
	}
	if c.RingTimeout < 0 || c.JoinTimeout < 0 {
		errs = append(errs, errors.New("rtc.ring_timeout, rtc.join_timeout: must not be negative"))
	}
	switch c.Membership {
	case "", MembershipState, MembershipSticky:
	default:
		errs = append(errs, fmt.Errorf("rtc.membership: %q is neither %q nor %q", c.Membership, MembershipState, MembershipSticky))
	}
	return errors.Join(errs...)
}

// Manager runs the bot's legs in rooms' calls.
type Manager struct {
	cfg  Config
	mx   Matrix
	http *http.Client
	log  zerolog.Logger
	ctx  context.Context
	wg   sync.WaitGroup

	mu   sync.Mutex
	legs map[id.RoomID]*Leg
	// sticky is every room's sticky memberships still sticky (MSC4354):
	// a homeserver sends each once, so they are kept for when the bot
	// joins a room's call later.
	sticky map[id.RoomID][]rtcevent.StickyEvent
}

// New makes the manager.
func New(ctx context.Context, cfg Config, mx Matrix, log zerolog.Logger) *Manager {
	livekit.SetSDKLogger(log)
	return &Manager{
		cfg: cfg.withDefaults(), mx: mx, ctx: ctx,
		http: &http.Client{Timeout: 15 * time.Second},
		log:  log.With().Str("component", "element-call").Logger(),
		legs: map[id.RoomID]*Leg{}, sticky: map[id.RoomID][]rtcevent.StickyEvent{},
	}
}

// ErrInCall is returned for a room whose call the bot is in already: it
// has one device, so one membership per room.
var ErrInCall = errors.New("the bot is in this room's call already")

// JoinOptions say how a leg joins a room's call.
type JoinOptions struct {
	// Video: the bridged party has video.
	Video bool
	// Ring are the users a call the bot starts rings (everyone in the
	// room if none).
	Ring []id.UserID
	// SharedKey is the passphrase of a call encrypted with one key for
	// everyone (Element Call's ?password=); "" for per-participant keys
	// in an encrypted room, or none in another.
	SharedKey string
}

// Join makes the leg that puts the bot into room's call (started with
// Start); events hears what happens to it.
func (m *Manager) Join(room id.RoomID, opts JoinOptions, events leg.Events) (*Leg, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil {
		return nil, fmt.Errorf("joining the call in %s: %w", room, m.ctx.Err())
	}
	if _, ok := m.legs[room]; ok {
		return nil, fmt.Errorf("%s: %w", room, ErrInCall)
	}
	l := newLeg(m, newLegID(), room, opts.Video, events)
	l.ringUsers, l.sharedKey = opts.Ring, opts.SharedKey
	m.legs[room] = l
	return l, nil
}

func (m *Manager) forget(l *Leg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.legs[l.room] == l {
		delete(m.legs, l.room)
	}
}

// In is the bot's leg in room's call, nil if none.
func (m *Manager) In(room id.RoomID) *Leg {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.legs[room]
}

// MembershipChanged tells the room's leg that a call membership changed
// (a sync handler: it queues the work).
func (m *Manager) MembershipChanged(room id.RoomID) {
	if l := m.In(room); l != nil {
		l.membersChanged()
	}
}

// maxStickyPerRoom bounds what one room's sticky memberships may hold
// (the oldest go first): a room of spammers cannot grow the bot.
const maxStickyPerRoom = 1024

// StickyMembership takes a sticky membership event of room (a sync
// handler: it keeps it and queues the work). An event no longer sticky
// is dropped.
func (m *Manager) StickyMembership(room id.RoomID, e rtcevent.StickyEvent) {
	now := time.Now()
	if !e.Until.After(now) {
		return
	}
	m.mu.Lock()
	kept := slices.DeleteFunc(m.sticky[room], func(o rtcevent.StickyEvent) bool { return !o.Until.After(now) || o.EventID == e.EventID })
	kept = append(kept, e)
	if len(kept) > maxStickyPerRoom {
		kept = kept[len(kept)-maxStickyPerRoom:]
	}
	m.sticky[room] = kept
	l := m.legs[room]
	m.mu.Unlock()
	if l != nil {
		l.membersChanged()
	}
}

// stickyEvents is a copy of room's sticky memberships.
func (m *Manager) stickyEvents(room id.RoomID) []rtcevent.StickyEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.sticky[room])
}

// ClearStale leaves the calls of rooms where the bot's device is still a
// member from a run that ended without leaving (a crash, kill -9).
func (m *Manager) ClearStale(ctx context.Context, rooms []id.RoomID) {
	key := rtcevent.StateKey(m.mx.UserID().String(), m.mx.DeviceID().String())
	sticky := m.cfg.Membership == MembershipSticky && len(rooms) > 0 && m.mx.StickyEvents(ctx)
	for _, room := range rooms {
		if sticky {
			// A sticky membership cannot be read back, only replaced: the
			// leave goes out whether one is left or not.
			leave := rtcevent.RTCLeave(m.mx.UserID().String(), m.mx.DeviceID().String())
			if _, err := m.mx.SendStickyMembership(ctx, room, leave, m.cfg.MembershipExpiry); err != nil {
				m.log.Warn().Err(err).Stringer("room_id", room).Msg("Cannot leave a call the last run left the bot in")
			}
		}
		events, err := m.mx.CallMemberships(ctx, room)
		if err != nil {
			m.log.Warn().Err(err).Stringer("room_id", room).Msg("Cannot read the room's call memberships to clear the bot's stale one")
			continue
		}
		for _, e := range events {
			if e.StateKey != key {
				continue
			}
			if _, err := rtcevent.ParseMembership(e.Content); errors.Is(err, rtcevent.ErrNotMember) {
				continue
			}
			if _, err := m.mx.SetCallMembership(ctx, room, struct{}{}); err != nil {
				m.log.Warn().Err(err).Stringer("room_id", room).Msg("Cannot leave a call the last run left the bot in")
				continue
			}
			m.log.Info().Stringer("room_id", room).Msg("Left a call the last run left the bot in")
		}
	}
}

// Close waits for the legs' goroutines (their context must be cancelled).
func (m *Manager) Close() { m.wg.Wait() }

// newLegID names an Element Call leg.
func newLegID() leg.ID {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return leg.ID("rtc-" + hex.EncodeToString(b[:]))
}
