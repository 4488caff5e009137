package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/bridge/matrixcall"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/matrix/rtcevent"
)

// Calls placed by commands are limited per user, so that the bot cannot be
// made to ring people in a loop: a burst of commandCallBurst, then one per
// commandCallEvery.
const (
	commandCallBurst = 3
	commandCallEvery = 20 * time.Second
)

// callLimiter is the per-user limit on calls placed by commands.
type callLimiter struct {
	mu    sync.Mutex
	users map[id.UserID]*rate.Limiter
}

func (c *callLimiter) allow(user id.UserID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users == nil {
		c.users = map[id.UserID]*rate.Limiter{}
	}
	l := c.users[user]
	if l == nil {
		l = rate.NewLimiter(rate.Every(commandCallEvery), commandCallBurst)
		c.users[user] = l
	}
	return l.Allow()
}

// call places a call from the bot. `call` and `call @user` ring the sender
// (or that member) in this room with the room's own source, as before
// routes; `call <target>` rings the sender, then bridges in the target (or
// brings the target into the sender's call with the bot here).
func (b *Bot) call(ctx context.Context, evt *matrix.Event, args []string) (string, error) {
	invitee, video := evt.Sender, false
	var target *Target
	for _, a := range args {
		switch {
		case strings.EqualFold(a, "video"):
			video = true
		case strings.HasPrefix(a, "@"):
			user := id.UserID(a)
			if _, _, err := user.Parse(); err != nil {
				return "", userErrorf("%q is not a user ID (like @alice:example.org)", a)
			}
			invitee = user
		default:
			t, err := ParseTarget(a)
			if err != nil {
				return "", userErrorf("%v", err)
			}
			target = &t
		}
	}
	if invitee == b.mx.UserID() {
		return "", userErrorf("the bot cannot call itself")
	}
	if target != nil && invitee != evt.Sender {
		return "", userErrorf("`call <target>` rings you, then the target: name no other member")
	}
	if target != nil && !target.Own() {
		if err := b.checkTarget(ctx, evt.RoomID, *target); err != nil {
			return "", err
		}
	}
	if !b.limiter.allow(evt.Sender) {
		return "", userErrorf("too many calls placed by command; try again in a little while")
	}
	if target != nil && !target.Own() {
		if br := b.bridges.withParty(evt.RoomID, string(evt.Sender)); br != nil {
			if br.networkParties() > 1 {
				return "", userErrorf("your call with the bot already bridges someone in; the bot bridges two parties at a time")
			}
			t := *target
			br.post(func() { br.ring(t) })
			return fmt.Sprintf("Calling %s into your call.", t), nil
		}
	}
	if joined, err := b.mx.Joined(ctx, evt.RoomID, invitee); err != nil {
		return "", err
	} else if !joined {
		return "", userErrorf("%s is not in this room: a call rings only members", invitee)
	}
	own := b.bridges.routeFor(ctx, evt.RoomID)
	if !own.Own() {
		own = Target{Kind: leg.Kind(b.cfg.Calls.Source)}
	}
	var pending *Target
	if target != nil {
		if target.Own() {
			own = *target
		} else {
			pending = target
		}
	}
	l, err := b.bridges.callMember(evt.RoomID, invitee, video, own, pending)
	if err != nil {
		return "", err
	}
	kind := "voice"
	if video {
		kind = "video"
	}
	if pending != nil {
		return fmt.Sprintf("Calling you (%s call `%s`); once you answer, the bot calls %s.", kind, l.CallID(), pending), nil
	}
	return fmt.Sprintf("Calling %s (%s call `%s`).", invitee, kind, l.CallID()), nil
}

// callMember places a call from the bot to user in room, in a new bridge:
// with the bot's own source, or ringing pending once the user answers.
func (reg *registry) callMember(room id.RoomID, user id.UserID, video bool, own Target, pending *Target) (*matrixcall.Leg, error) {
	callID, legID, err := reg.calls.NewCallID()
	if err != nil {
		return nil, err
	}
	if busy := reg.adm.admit(legID, room, ""); busy != "" {
		return nil, userErrorf("the bot is busy: %s", busy)
	}
	target := own
	if pending != nil {
		target = *pending
	}
	b := reg.newBridge(room, target)
	l, err := reg.calls.Place(room, callID, matrixcall.PlaceOptions{Invitee: user, Video: video}, b.events)
	if err != nil {
		reg.adm.release(legID)
		b.post(func() { b.maybeClose() })
		return nil, err
	}
	b.post(func() {
		b.join(l, true)
		if pending != nil {
			t := *pending
			b.pending = &t
		} else {
			b.addOwn(own.Kind)
		}
		l.Start()
	})
	return l, nil
}

// withParty finds the bridge in room with a live leg whose peer is peer.
func (reg *registry) withParty(room id.RoomID, peer string) *Bridge {
	for _, b := range reg.inRoom(room) {
		if b.hasParty(peer) {
			return b
		}
	}
	return nil
}

// hangup ends the bridges in this room.
func (b *Bot) hangup(_ context.Context, evt *matrix.Event, _ []string) (string, error) {
	bs := b.bridges.touching(evt.RoomID)
	for _, br := range bs {
		br.hangup(leg.Hangup, "hung up by command")
	}
	if len(bs) == 0 {
		return "No call of the bot's in this room.", nil
	}
	return fmt.Sprintf("Hung up %d call(s).", len(bs)), nil
}

// route shows or sets where calls to the bot in this room go.
func (b *Bot) route(ctx context.Context, evt *matrix.Event, args []string) (string, error) {
	return b.setRoute(ctx, evt, args, false)
}

// setSource is route for the bot's own sources only (the command that came
// before routes).
func (b *Bot) setSource(ctx context.Context, evt *matrix.Event, args []string) (string, error) {
	return b.setRoute(ctx, evt, args, true)
}

func (b *Bot) setRoute(ctx context.Context, evt *matrix.Event, args []string, ownOnly bool) (string, error) {
	room, err := b.store.Room(ctx, evt.RoomID)
	if err != nil {
		return "", err
	}
	if room == nil {
		return "", errors.New("the bot has no record of this room")
	}
	p := b.cfg.Commands.Prefix
	if len(args) == 0 {
		how := "the default"
		if room.Settings.Route != "" || room.Settings.Source != "" {
			how = "set for this room"
		}
		return fmt.Sprintf("Calls to the bot in this room go to **%s** (%s). Set with `%s route <target>|default`: "+
			"a source (%s) or `matrix:@user:server`, `matrix:!room:server`, `matrix:#alias:server`.",
			b.bridges.routeFor(ctx, evt.RoomID), how, p, joinModes()), nil
	}
	if len(args) > 1 {
		return "", userErrorf("one target, please (like `%s route matrix:@alice:example.org`)", p)
	}
	if may, err := b.mx.MayChangeState(ctx, evt.RoomID, evt.Sender); err != nil {
		return "", err
	} else if !may {
		return "", userErrorf("only members who may change this room's settings (power level at least the room's state_default) may set where its calls go")
	}
	choice := args[0]
	if strings.EqualFold(choice, "default") {
		room.Settings.Route, room.Settings.Source = "", ""
	} else {
		t, err := ParseTarget(choice)
		switch {
		case err != nil && ownOnly:
			return "", userErrorf("%q is not a source (%s, or default)", choice, joinModes())
		case err != nil:
			return "", userErrorf("%v", err)
		}
		switch {
		case ownOnly && !t.Own():
			return "", userErrorf("`source` takes %s or default; `%s route` sends calls to people", joinModes(), p)
		case t.Kind == leg.KindFile && b.cfg.Calls.AudioFile == "" && b.cfg.Calls.VideoFile == "":
			return "", userErrorf("no file is configured (calls.audio_file, calls.video_file)")
		}
		if !t.Own() {
			if err := b.checkTarget(ctx, evt.RoomID, t); err != nil {
				return "", err
			}
			if err := b.bridges.loops(ctx, evt.RoomID, t); err != nil {
				return "", err
			}
		}
		room.Settings.Route, room.Settings.Source = t.String(), ""
	}
	if err = b.store.SetRoomSettings(ctx, evt.RoomID, room.Settings); err != nil {
		return "", err
	}
	return fmt.Sprintf("Calls to the bot in this room now go to **%s** (calls already going on keep theirs).", b.bridges.routeFor(ctx, evt.RoomID)), nil
}

// checkTarget refuses a network target the bot must not or cannot call
// from room: itself, a user outside its access policy, this very room, a
// room it is not in.
func (b *Bot) checkTarget(ctx context.Context, from id.RoomID, t Target) error {
	if t.Kind == leg.KindJami {
		switch {
		case b.dht == nil:
			return userErrorf("the bot is not on the Jami network (jami.enabled is off)")
		case t.Jami == b.dht.AccountID().String():
			return userErrorf("that is the bot's own Jami ID: the bot cannot call itself")
		}
		return nil
	}
	if t.Kind == leg.KindRTC {
		return b.checkRTCTarget(ctx, from, t)
	}
	if t.Kind == leg.KindXMPP {
		return b.checkXMPPTarget(t)
	}
	switch {
	case t.User == b.mx.UserID():
		return userErrorf("the bot cannot call itself")
	case t.User != "" && !b.mx.Allowed(t.User):
		return userErrorf("%s is not a user the bot may call (its access policy)", t.User)
	case t.User != "":
		return nil
	}
	room := t.Room
	if t.Alias != "" {
		var err error
		if room, err = b.mx.ResolveAlias(ctx, t.Alias); err != nil {
			return userErrorf("cannot find %s: %v", t.Alias, err)
		}
	}
	if room == from {
		return userErrorf("that is this room: a call here cannot ring this room")
	}
	if joined, err := b.mx.Joined(ctx, room, b.mx.UserID()); err != nil || !joined {
		return userErrorf("the bot is not in %s", t)
	}
	return nil
}

// checkRTCTarget refuses a room's Element Call the bot cannot join: a room
// it is not in, or one where it may not send call memberships.
func (b *Bot) checkRTCTarget(ctx context.Context, from id.RoomID, t Target) error {
	switch {
	case t.User == b.mx.UserID():
		return userErrorf("the bot cannot call itself")
	case t.User != "" && !b.mx.Allowed(t.User):
		return userErrorf("%s is not a user the bot may call (its access policy)", t.User)
	case t.User != "":
		return nil // rung in the bot's direct room with them (its own: it may send memberships)
	}
	room := t.Room
	if t.Alias != "" {
		var err error
		if room, err = b.mx.ResolveAlias(ctx, t.Alias); err != nil {
			return userErrorf("cannot find %s: %v", t.Alias, err)
		}
	}
	if room == "" {
		room = from
	} else if joined, err := b.mx.Joined(ctx, room, b.mx.UserID()); err != nil || !joined {
		return userErrorf("the bot is not in %s", t)
	}
	may, err := b.mx.MaySendState(ctx, room, b.mx.UserID(), rtcevent.TypeCallMember)
	if err != nil {
		return err
	}
	if !may {
		return userErrorf("the bot may not join calls in %s: its power level is below what %s needs (give it that level, or 0 for everyone as Element Call's rooms do)", room, rtcevent.TypeCallMember)
	}
	return nil
}

// loops refuses a route from room that leads back to it: through the rooms
// the routes lead to (a user's direct room with the bot, where there is
// one), A → B → A or longer.
func (reg *registry) loops(ctx context.Context, from id.RoomID, t Target) error {
	seen := map[id.RoomID]bool{from: true}
	path := []string{t.String()}
	for range 8 {
		if t.Own() || t.Kind == leg.KindRTC {
			return nil // a room's Element Call rings no one onwards
		}
		room, err := reg.knownRoom(ctx, t)
		if err != nil || room == "" {
			return nil // nowhere known yet: checked again when a call rings
		}
		if seen[room] {
			return userErrorf("that route leads back here (%s)", strings.Join(path, " → "))
		}
		seen[room] = true
		t = reg.routeFor(ctx, room)
		path = append(path, t.String())
	}
	return nil
}

// knownRoom is the room a Matrix target rings in, if the bot knows it
// without creating anything.
func (reg *registry) knownRoom(ctx context.Context, t Target) (id.RoomID, error) {
	switch {
	case t.User != "":
		return reg.mx.FindDirectRoom(ctx, t.User)
	case t.Alias != "":
		return reg.mx.ResolveAlias(ctx, t.Alias)
	}
	return t.Room, nil
}

// describeCalls lists the room's calls and bridges for the status command.
func (b *Bot) describeCalls(ctx context.Context, room id.RoomID) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n* Calls here go to: %s", b.bridges.routeFor(ctx, room))
	lines := b.calls.Describe(room)
	for _, br := range b.bridges.touching(room) {
		lines = append(lines, br.describe())
	}
	if len(lines) == 0 {
		return sb.String()
	}
	sb.WriteString("\n\nCalls in this room:\n")
	for _, l := range lines {
		sb.WriteString("\n* " + l)
	}
	return sb.String()
}
