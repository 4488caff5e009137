package bridge

import (
	"context"
	"fmt"

	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/bridge/xmppcall"
)

// xmppHost is the registry as the host of the QuickBlox leg kind.
type xmppHost struct{ reg *registry }

var _ xmppcall.Host = xmppHost{}

// Ringing implements xmppcall.Host: a call from a QuickBlox user rings
// the room whose route names that user (the newest such), else
// xmpp.default_room, else the bot's default source answers it (so an app
// developer can try their app against the bot).
func (h xmppHost) Ringing(l *xmppcall.Leg) leg.Events {
	reg := h.reg
	room, target := reg.xmppRoute(reg.ctx, l.PeerID())
	b := reg.newBridge(room, target)
	b.ringsOwnRoom = true
	b.post(func() {
		b.join(l, true)
		// A QuickBlox leg is in no Matrix room: it counts towards
		// calls.max_calls only, not a room's limit.
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

// ICEServers implements xmppcall.Host: the servers Matrix calls use.
func (h xmppHost) ICEServers() []webrtc.ICEServer {
	if h.reg.calls == nil {
		return nil
	}
	return h.reg.calls.ICEServers()
}

// xmppRoute is where a call from a QuickBlox user goes.
func (reg *registry) xmppRoute(ctx context.Context, user uint64) (id.RoomID, Target) {
	route := Target{Kind: leg.KindXMPP, XMPP: user}.String()
	rooms, err := reg.store.RoomsRoutedTo(ctx, route)
	if err != nil {
		reg.log.Warn().Err(err).Uint64("quickblox_user", user).Msg("Cannot read the rooms routed to a QuickBlox user")
	}
	if len(rooms) > 0 {
		return rooms[0], Target{Kind: leg.KindMatrix, Room: rooms[0]}
	}
	if reg.xmppDefaultRoom != "" {
		return reg.xmppDefaultRoom, Target{Kind: leg.KindMatrix, Room: reg.xmppDefaultRoom}
	}
	return "", Target{Kind: leg.Kind(reg.cfg.Source)}
}

// placeXMPP makes the leg that calls a QuickBlox user.
func (reg *registry) placeXMPP(b *Bridge, t Target, video bool) (placedLeg, error) {
	if reg.xmpp == nil {
		return nil, fmt.Errorf("%s: the bot is on no XMPP server (xmpp.enabled is off)", t)
	}
	l, err := reg.xmpp.Place(t.XMPP, video, b.events)
	if err != nil {
		return nil, err
	}
	if busy := reg.adm.admit(l.ID(), "", ""); busy != "" { // in no Matrix room (see Ringing)
		l.Hangup(leg.Busy, busy)
		return nil, &busyError{why: busy}
	}
	return l, nil
}

// checkXMPPTarget refuses a QuickBlox target the bot cannot call.
func (b *Bot) checkXMPPTarget(t Target) error {
	m := b.bridges.xmpp
	if m == nil {
		return userErrorf("the bot is on no XMPP server (xmpp.enabled is off)")
	}
	if t.xmppJID != "" {
		if _, err := m.ParsePeer(t.xmppJID); err != nil {
			return userErrorf("%s", err)
		}
	}
	if m.IsSelf(t.XMPP) {
		return userErrorf("that is the bot's own QuickBlox id: the bot cannot call itself")
	}
	return nil
}
