package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/guest"
	"github.com/voipbot/voipbot/bridge/jamicall"
	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/bridge/matrixcall"
	"github.com/voipbot/voipbot/bridge/rtc"
	"github.com/voipbot/voipbot/bridge/whip"
	"github.com/voipbot/voipbot/bridge/xmppcall"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/matrix/rtcevent"
	"github.com/voipbot/voipbot/store"
)

// reacher is what bridges need of Matrix to reach a target: who may be
// called, direct rooms, aliases, membership, and notices. *matrix.Client
// is one.
type reacher interface {
	UserID() id.UserID
	Allowed(user id.UserID) bool
	Joined(ctx context.Context, room id.RoomID, user id.UserID) (bool, error)
	DirectRoom(ctx context.Context, user id.UserID) (id.RoomID, bool, error)
	FindDirectRoom(ctx context.Context, user id.UserID) (id.RoomID, error)
	ResolveAlias(ctx context.Context, alias id.RoomAlias) (id.RoomID, error)
	SendNotice(ctx context.Context, room id.RoomID, markdown string, replyTo *matrix.Event) (id.EventID, error)
	SendFile(ctx context.Context, room id.RoomID, f matrix.File) (id.EventID, error)
	CallMemberships(ctx context.Context, room id.RoomID) ([]rtcevent.StateEvent, error)
}

// registry holds the conversations and the policies across them: call
// slots, routes, and who may be called. It is the host of the Matrix leg
// kind (matrixcall.Host).
type registry struct {
	ctx   context.Context
	cfg   CallsConfig
	store *store.Store
	mx    reacher
	calls *matrixcall.Manager
	adm   *admission
	joins *joinWaiters
	log   zerolog.Logger
	now   func() time.Time
	// recordDir and keepRecordings are media.record_dir and
	// media.keep_recordings.
	recordDir      string
	keepRecordings bool
	// jami places and takes Jami calls (nil unless jami.enabled);
	// jamiDefaultRoom is jami.default_room.
	jami            *jamicall.Manager
	jamiDefaultRoom id.RoomID
	// rtc puts the bot into rooms' Element Calls.
	rtc *rtc.Manager
	// xmpp places and takes QuickBlox calls (nil unless xmpp.enabled);
	// xmppDefaultRoom is xmpp.default_room.
	xmpp            *xmppcall.Manager
	xmppDefaultRoom id.RoomID
	// guests runs the guests who came through call links (nil without
	// guests.public_url).
	guests *guest.Manager
	// whip runs the WHIP and WHEP sessions (nil without
	// guests.public_url).
	whip *whip.Manager

	// dial makes the leg that rings a target (place; tests put fake legs
	// here).
	dial func(ctx context.Context, b *Bridge, t Target, video bool, deadline time.Time, caller string) (placedLeg, error)

	mu      sync.Mutex
	bridges map[leg.BridgeID]*Bridge
}

// placedLeg is a leg made to ring someone, which rings once started (after
// its bridge has added it).
type placedLeg interface {
	leg.Leg
	Start()
}

var _ matrixcall.Host = (*registry)(nil)

func newRegistry(ctx context.Context, cfg CallsConfig, st *store.Store, mx reacher, log zerolog.Logger) *registry {
	reg := &registry{
		ctx: ctx, cfg: cfg, store: st, mx: mx, log: log.With().Str("component", "bridges").Logger(), now: time.Now,
		adm: newAdmission(cfg.MaxCalls, cfg.MaxCallsPerRoom), joins: newJoinWaiters(),
		bridges: map[leg.BridgeID]*Bridge{},
	}
	reg.dial = func(ctx context.Context, b *Bridge, t Target, video bool, deadline time.Time, caller string) (placedLeg, error) {
		switch t.Kind {
		case leg.KindJami:
			return reg.placeJami(b, t, video)
		case leg.KindXMPP:
			return reg.placeXMPP(b, t, video)
		case leg.KindRTC:
			return reg.placeRTC(ctx, b, t, video, caller)
		}
		if t.Kind == leg.KindMatrix && t.Room != "" && b.ringsOwnRoom && reg.callGoingOn(ctx, t.Room) {
			// A call from elsewhere (Jami) that rings a room whose
			// Element Call is going on joins that call instead.
			return reg.placeRTC(ctx, b, Target{Kind: leg.KindRTC, Room: t.Room}, video, caller)
		}
		l, err := reg.place(ctx, b, t, video, deadline, caller)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return l, nil
	}
	return reg
}

func (reg *registry) add(b *Bridge) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	reg.bridges[b.id] = b
}

func (reg *registry) remove(b *Bridge) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	delete(reg.bridges, b.id)
}

// touching lists the bridges started in room or with a leg there.
func (reg *registry) touching(room id.RoomID) []*Bridge {
	var out []*Bridge
	for _, b := range reg.all() {
		if b.room == room || b.inRoom(room) {
			out = append(out, b)
		}
	}
	return out
}

// inRoom lists the bridges started in room, oldest first.
func (reg *registry) inRoom(room id.RoomID) []*Bridge {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	var out []*Bridge
	for _, b := range reg.bridges {
		if b.room == room {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b *Bridge) int { return a.rec.CreatedAt.Compare(b.rec.CreatedAt) })
	return out
}

func (reg *registry) all() []*Bridge {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	out := make([]*Bridge, 0, len(reg.bridges))
	for _, b := range reg.bridges {
		out = append(out, b)
	}
	return out
}

// Admit implements matrixcall.Host.
func (reg *registry) Admit(l leg.ID, room id.RoomID, replaces leg.ID) string {
	return reg.adm.admit(l, room, replaces)
}

// Ringing implements matrixcall.Host: a call to the bot goes where the
// room's route says. It runs on the leg's queue: it only reads the room's
// route and queues the rest.
func (reg *registry) Ringing(l *matrixcall.Leg) leg.Events {
	target := reg.routeFor(reg.ctx, l.Room())
	b := reg.newBridge(l.Room(), target)
	b.post(func() {
		b.join(l, true)
		if target.Own() {
			b.addOwn(target.Kind)
			l.Answer()
			return
		}
		b.ring(target)
	})
	return b.events
}

// routeFor is where calls in room go: the room's route, or the configured
// default source.
func (reg *registry) routeFor(ctx context.Context, room id.RoomID) Target {
	def := Target{Kind: leg.Kind(reg.cfg.Source)}
	r, err := reg.store.Room(ctx, room)
	if err != nil {
		reg.log.Warn().Err(err).Stringer("room_id", room).Msg("Cannot read the room's settings; using the default source")
		return def
	}
	if r == nil {
		return def
	}
	route := r.Settings.Route
	if route == "" {
		route = r.Settings.Source // set by `source` before routes existed
	}
	if route == "" {
		return def
	}
	t, err := ParseTarget(route)
	if err != nil {
		reg.log.Warn().Err(err).Stringer("room_id", room).Str("route", route).Msg("The room's stored route does not parse; using the default source")
		return def
	}
	return t
}

// refusePeer says why the bot must not bridge a party that answered (a
// member of a rung room whom the access policy does not allow), or "".
func (reg *registry) refusePeer(l leg.Leg) string {
	if l.Kind() != leg.KindMatrix {
		return ""
	}
	if !reg.mx.Allowed(id.UserID(l.Peer())) {
		return "the bot does not call users its access policy leaves out"
	}
	return ""
}

// notice tells a room something, without holding anything up; a bridge
// with no room (a Jami call answered by the bot's source) has nobody to
// tell.
func (reg *registry) notice(room id.RoomID, text string) {
	if room == "" {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(reg.ctx, 30*time.Second)
		defer cancel()
		if _, err := reg.mx.SendNotice(ctx, room, text, nil); err != nil {
			reg.log.Warn().Err(err).Stringer("room_id", room).Msg("Failed to send a notice")
		}
	}()
}

// shutdown ends every bridge, and waits up to ctx for them to end.
func (reg *registry) shutdown(ctx context.Context) {
	bs := reg.all()
	for _, b := range bs {
		b.hangup(leg.Shutdown, "the bot is shutting down")
	}
	for _, b := range bs {
		select {
		case <-b.Done():
		case <-ctx.Done():
			reg.log.Warn().Int("bridges", len(bs)).Msg("Bridges still ending at shutdown; the next start ends them")
			return
		}
	}
}

// endStale records as ended what the last run left: its media is gone.
func (reg *registry) endStale(ctx context.Context) error {
	n, err := reg.store.EndActiveBridges(ctx, reg.now(), "the bot restarted")
	if err != nil {
		return err
	}
	if n > 0 {
		reg.log.Info().Int("bridges", n).Msg("Ended the bridges left from the last run")
	}
	return nil
}

// busyError: no call slot was free for a leg.
type busyError struct{ why string }

func (e *busyError) Error() string { return "the bot is busy: " + e.why }

func asBusy(err error, target **busyError) bool { return errors.As(err, target) }

func isTimeout(err error) bool { return errors.Is(err, context.DeadlineExceeded) }

// reachContext bounds finding a target: by the caller's ringing deadline
// if it has one.
func (reg *registry) reachContext(deadline time.Time) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return context.WithTimeout(reg.ctx, reg.cfg.InviteLifetime)
	}
	return context.WithDeadline(reg.ctx, deadline)
}

// place finds where t is and makes the leg that rings it for b (not
// started: b adds it, then starts it).
func (reg *registry) place(ctx context.Context, b *Bridge, t Target, video bool, deadline time.Time, caller string) (*matrixcall.Leg, error) {
	if t.Kind != leg.KindMatrix {
		return nil, fmt.Errorf("%s is not a target a call can ring", t)
	}
	from := b.room
	if b.ringsOwnRoom {
		from = "" // a call from elsewhere (Jami) that rings the room of its route
	}
	room, invitee, err := reg.findMatrix(ctx, t, from, caller)
	if err != nil {
		return nil, err
	}
	lifetime := time.Duration(0)
	if !deadline.IsZero() {
		// The far end stops ringing a little before the caller does, so
		// that the caller hears invite_timeout from the far end.
		if lifetime = deadline.Sub(reg.now()) - time.Second; lifetime < 3*time.Second {
			return nil, fmt.Errorf("no time left to ring %s: %w", t, context.DeadlineExceeded)
		}
	}
	callID, legID, err := reg.calls.NewCallID()
	if err != nil {
		return nil, err
	}
	if busy := reg.adm.admit(legID, room, ""); busy != "" {
		return nil, &busyError{why: busy}
	}
	l, err := reg.calls.Place(room, callID, matrixcall.PlaceOptions{Invitee: invitee, Video: video, Lifetime: lifetime}, b.events)
	if err != nil {
		reg.adm.release(legID)
		return nil, err
	}
	return l, nil
}

// findMatrix finds the room a Matrix target rings in, and whom (empty: the
// whole room). A user is rung in the bot's direct room with them (made if
// needed, and waited for until they join); a room must be one the bot is
// in. A target that leads back to the room the call came from is refused.
func (reg *registry) findMatrix(ctx context.Context, t Target, from id.RoomID, caller string) (id.RoomID, id.UserID, error) {
	room := t.Room
	created := false
	switch {
	case t.User != "":
		if t.User == reg.mx.UserID() {
			return "", "", errors.New("the bot cannot call itself")
		}
		if !reg.mx.Allowed(t.User) {
			return "", "", fmt.Errorf("%s is not a user the bot may call (its access policy)", t.User)
		}
		var err error
		if room, created, err = reg.mx.DirectRoom(ctx, t.User); err != nil {
			return "", "", err
		}
	case t.Alias != "":
		var err error
		if room, err = reg.mx.ResolveAlias(ctx, t.Alias); err != nil {
			return "", "", err
		}
	}
	if room == from {
		return "", "", errors.New("the route leads back to the room the call came from")
	}
	if joined, err := reg.mx.Joined(ctx, room, reg.mx.UserID()); err != nil {
		return "", "", err
	} else if !joined {
		return "", "", fmt.Errorf("the bot is not in %s", room)
	}
	if t.User != "" {
		if err := reg.joins.wait(ctx, room, t.User, func(ctx context.Context) (bool, error) {
			return reg.mx.Joined(ctx, room, t.User)
		}); err != nil {
			return "", "", fmt.Errorf("waiting for %s to join the direct room: %w", t.User, err)
		}
	}
	if created {
		// The first words in a room the bot just made say who calls, and
		// (in an encrypted room) share its room key ahead of the invite:
		// matrix-js-sdk drops a call event it cannot decrypt when it comes.
		text := "📞 You have a call through the bot"
		if caller != "" {
			text += " from " + caller
		}
		if _, err := reg.mx.SendNotice(ctx, room, text+".", nil); err != nil {
			reg.log.Warn().Err(err).Stringer("room_id", room).Msg("Failed to introduce the call in the new direct room")
		}
	}
	return room, t.User, nil
}
