package bridge

import (
	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/guest"
	"github.com/voipbot/voipbot/bridge/leg"
)

// guestHost is the registry as the host of the guest leg kind.
type guestHost struct{ reg *registry }

var _ guest.Host = guestHost{}

// Ringing implements guest.Host: a guest's call rings the members of the
// link's room (first to answer), or joins the room's Element Call where
// one is going on (the room is the bridge's own room); a link made for
// testing is answered by the bot's echo.
func (h guestHost) Ringing(l *guest.Leg) leg.Events {
	reg := h.reg
	link := l.Link()
	room := id.RoomID(link.Room)
	target := Target{Kind: leg.KindMatrix, Room: room}
	if link.Echo {
		target = Target{Kind: leg.KindEcho}
	}
	b := reg.newBridge(room, target)
	b.ringsOwnRoom = true
	b.post(func() {
		b.join(l, true)
		if busy := reg.adm.admit(l.ID(), room, ""); busy != "" {
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

// ICEServers implements guest.Host: the servers Matrix calls use.
func (h guestHost) ICEServers() []webrtc.ICEServer {
	if h.reg.calls == nil {
		return nil
	}
	return h.reg.calls.ICEServers()
}
