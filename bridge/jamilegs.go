package bridge

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/jamicall"
	"github.com/voipbot/voipbot/bridge/leg"
)

// jamiHost is the registry as the host of the Jami leg kind.
type jamiHost struct{ reg *registry }

var _ jamicall.Host = jamiHost{}

// Ringing implements jamicall.Host: a call from a Jami account rings the
// room whose route names that account (the newest such), else
// jami.default_room, else the bot's default source answers it.
func (h jamiHost) Ringing(l *jamicall.Leg) leg.Events {
	reg := h.reg
	room, target := reg.jamiRoute(reg.ctx, l.Peer())
	b := reg.newBridge(room, target)
	b.ringsOwnRoom = true
	b.post(func() {
		b.join(l, true)
		// A Jami leg is in no Matrix room: it counts towards calls.max_calls
		// only, not a room's limit.
		if busy := reg.adm.admit(l.ID(), "", ""); busy != "" {
			l.Hangup(leg.Busy, busy)
			return
		}
		if target.Own() {
			b.addOwn(target.Kind)
			l.Answer()
			return
		}
		b.ring(target)
	})
	return b.events
}

// jamiRoute is where a call from a Jami account goes.
func (reg *registry) jamiRoute(ctx context.Context, account string) (id.RoomID, Target) {
	route := Target{Kind: leg.KindJami, Jami: account}.String()
	rooms, err := reg.store.RoomsRoutedTo(ctx, route)
	if err != nil {
		reg.log.Warn().Err(err).Str("jami_account", account).Msg("Cannot read the rooms routed to a Jami account")
	}
	if len(rooms) > 0 {
		return rooms[0], Target{Kind: leg.KindMatrix, Room: rooms[0]}
	}
	if reg.jamiDefaultRoom != "" {
		return reg.jamiDefaultRoom, Target{Kind: leg.KindMatrix, Room: reg.jamiDefaultRoom}
	}
	return "", Target{Kind: leg.Kind(reg.cfg.Source)}
}

// Text implements jamicall.Host: what a Jami peer writes during a call is
// shown in the room of its bridge.
func (h jamiHost) Text(l *jamicall.Leg, text string) {
	for _, b := range h.reg.all() {
		if b.hasLeg(l.ID()) && b.room != "" {
			h.reg.notice(b.room, fmt.Sprintf("💬 Jami %s: %s", l.Peer(), text))
		}
	}
}

// placeJami makes the leg that rings every device of a Jami account.
func (reg *registry) placeJami(b *Bridge, t Target, video bool) (placedLeg, error) {
	if reg.jami == nil {
		return nil, fmt.Errorf("%s: the bot is not on the Jami network (jami.enabled is off)", t)
	}
	l, err := reg.jami.Place(t.Jami, video, b.events)
	if err != nil {
		return nil, err
	}
	if busy := reg.adm.admit(l.ID(), "", ""); busy != "" { // in no Matrix room (see Ringing)
		return nil, &busyError{why: busy}
	}
	return l, nil
}
