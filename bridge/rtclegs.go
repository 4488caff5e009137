package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/bridge/rtc"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/matrix/rtcevent"
)

// callMemberEvent is the state event of a device's Element Call
// membership.
var callMemberEvent = event.Type{Type: rtcevent.TypeCallMember, Class: event.StateEventType}

// registerRTC has membership changes reach the legs in those rooms' calls
// (only rooms with a leg: others are not even stored).
func (b *Bot) registerRTC() {
	b.mx.On(callMemberEvent, func(evt *event.Event) bool { return b.bridges.rtc.In(evt.RoomID) != nil },
		func(_ context.Context, evt *matrix.Event) error {
			b.bridges.rtc.MembershipChanged(evt.RoomID)
			return nil
		})
	// Sticky memberships (Element Call's newer shape) are kept for every
	// room: a homeserver sends each once.
	stickyType := event.Type{Type: rtcevent.TypeRTCMember, Class: event.MessageEventType}
	b.mx.On(stickyType, func(evt *event.Event) bool { return evt.Sticky.GetDuration() > 0 },
		func(_ context.Context, evt *matrix.Event) error {
			b.bridges.rtc.StickyMembership(evt.RoomID, rtcevent.StickyEvent{
				Sender: evt.Sender.String(), EventID: evt.ID.String(), OriginServerTS: evt.Timestamp,
				Until: evt.GetStickyUntil(), Content: evt.Content.VeryRaw,
			})
			return nil
		})
	b.registerRTCKeys()
}

// registerRTCKeys has members' media keys (Olm to-device) reach the legs.
func (b *Bot) registerRTCKeys() {
	keysType := event.Type{Type: rtcevent.TypeEncryptionKeys, Class: event.ToDeviceEventType}
	b.mx.On(keysType, nil, func(ctx context.Context, evt *matrix.Event) error {
		if err := b.bridges.rtc.KeysReceived(evt.Sender, evt.SenderDevice, evt.Encrypted, evt.Content.VeryRaw); err != nil {
			zerolog.Ctx(ctx).Info().Err(err).Stringer("sender", evt.Sender).Stringer("sender_device", evt.SenderDevice).Msg("Ignoring a media key")
		}
		return nil
	})
}

// rtcRoom is the room whose call an rtc target joins: its own room, or
// the room of the bridge (the call came from there).
func (reg *registry) rtcRoom(ctx context.Context, b *Bridge, t Target) (id.RoomID, error) {
	switch {
	case t.Room != "":
		return t.Room, nil
	case t.Alias != "":
		return reg.mx.ResolveAlias(ctx, t.Alias)
	case b.room != "":
		return b.room, nil
	}
	return "", errors.New("rtc: the call came from no room (write rtc:!room:server)")
}

// callKey is the room's call passphrase (`!voip callkey`), "" if none.
func (reg *registry) callKey(ctx context.Context, room id.RoomID) string {
	r, err := reg.store.Room(ctx, room)
	if err != nil || r == nil {
		return ""
	}
	return r.Settings.CallKey
}

// setCallKey: `callkey <passphrase>|off` sets the passphrase of this
// room's Element Call when it is encrypted with one key for everyone
// (started with ?password=). Only members who may change the room's
// settings; the reply never repeats it.
func (b *Bot) setCallKey(ctx context.Context, evt *matrix.Event, args []string) (string, error) {
	room, err := b.store.Room(ctx, evt.RoomID)
	if err != nil {
		return "", err
	}
	if room == nil {
		return "", userErrorf("the bot has no record of this room yet")
	}
	if len(args) == 0 {
		if room.Settings.CallKey == "" {
			return "This room's Element Call has no shared key set: the bot uses per-participant keys in an encrypted room.", nil
		}
		return "A shared key is set for this room's Element Call (`callkey off` clears it).", nil
	}
	may, err := b.mx.MayChangeState(ctx, evt.RoomID, evt.Sender)
	if err != nil {
		return "", err
	}
	if !may {
		return "", userErrorf("only members whose power level lets them change the room's settings may set its call key")
	}
	switch key := strings.Join(args, " "); {
	case key == "off":
		room.Settings.CallKey = ""
	case len(key) < 8:
		return "", userErrorf("a call key of fewer than 8 characters is too easy to guess")
	default:
		room.Settings.CallKey = key
	}
	if err = b.store.SetRoomSettings(ctx, evt.RoomID, room.Settings); err != nil {
		return "", err
	}
	if room.Settings.CallKey == "" {
		return "This room's Element Call key is cleared: calls the bot joins from now use per-participant keys in an encrypted room.", nil
	}
	return "This room's Element Call key is set: calls the bot joins from now are encrypted with it, as with Element Call's `?password=`.", nil
}

// callGoingOn says whether someone other than the bot is in room's
// Element Call now.
func (reg *registry) callGoingOn(ctx context.Context, room id.RoomID) bool {
	events, err := reg.mx.CallMemberships(ctx, room)
	if err != nil {
		reg.log.Warn().Err(err).Stringer("room_id", room).Msg("Cannot tell whether the room's Element Call is going on")
		return false
	}
	members, _ := rtcevent.Members(events, reg.now())
	for _, m := range members {
		if id.UserID(m.User) != reg.mx.UserID() {
			return true
		}
	}
	return false
}

// placeRTC makes the leg that puts the bot into a room's Element Call for
// b.
func (reg *registry) placeRTC(ctx context.Context, b *Bridge, t Target, video bool, caller string) (placedLeg, error) {
	var room id.RoomID
	var ring []id.UserID
	var err error
	if t.User != "" {
		// A call in the bot's direct room with the user, who is rung
		// (Element X rings on the rtc.notification that mentions them).
		if room, _, err = reg.findMatrix(ctx, Target{Kind: leg.KindMatrix, User: t.User}, b.room, caller); err != nil {
			return nil, err
		}
		ring = []id.UserID{t.User}
	} else if room, err = reg.rtcRoom(ctx, b, t); err != nil {
		return nil, err
	}
	l, err := reg.rtc.Join(room, rtc.JoinOptions{Video: video, Ring: ring, SharedKey: reg.callKey(ctx, room)}, b.events)
	if err != nil {
		if errors.Is(err, rtc.ErrInCall) {
			return nil, &busyError{why: "the bot is in that room's call already"}
		}
		return nil, err
	}
	// The bot's place in a room's call counts towards calls.max_calls, not
	// the room's limit: that is for the room's 1:1 calls (a legacy caller
	// routed into the room's call is one of those), and the bot has one
	// place per room's call anyway.
	if busy := reg.adm.admit(l.ID(), "", ""); busy != "" {
		l.Hangup(leg.Busy, busy)
		return nil, &busyError{why: busy}
	}
	return l, nil
}

// joinCall: `join [source]` puts one of the bot's own sources into this
// room's Element Call (starting one, which rings the room, if none is
// going on).
func (b *Bot) joinCall(ctx context.Context, evt *matrix.Event, args []string) (string, error) {
	kind := leg.Kind(b.cfg.Calls.Source)
	if len(args) > 0 {
		kind = leg.Kind(strings.ToLower(args[0]))
	}
	if kind.Network() {
		return "", userErrorf("%q is not one of the bot's sources (echo, tone, silence, file)", args[0])
	}
	if kind == leg.KindFile && b.cfg.Calls.AudioFile == "" && b.cfg.Calls.VideoFile == "" {
		return "", userErrorf("the file source needs calls.audio_file or calls.video_file")
	}
	if b.bridges.rtc.In(evt.RoomID) != nil {
		return "", userErrorf("the bot is in this room's call already (`%s leave` first)", b.cfg.Commands.Prefix)
	}
	may, err := b.mx.MaySendState(ctx, evt.RoomID, b.mx.UserID(), rtcevent.TypeCallMember)
	if err != nil {
		return "", err
	}
	if !may {
		return "", userErrorf("the bot may not join calls here: its power level is below what %s needs (give it that level, or 0 for everyone as Element Call's rooms do)", rtcevent.TypeCallMember)
	}
	reg := b.bridges
	br := reg.newBridge(evt.RoomID, Target{Kind: leg.KindRTC})
	l, err := reg.rtc.Join(evt.RoomID, rtc.JoinOptions{SharedKey: reg.callKey(ctx, evt.RoomID)}, br.events)
	if err != nil {
		br.post(func() { br.hangup(leg.Failed, err.Error()) })
		return "", err
	}
	br.post(func() {
		br.join(l, true)
		br.addOwn(kind)
		l.Start()
	})
	return fmt.Sprintf("Joining this room's call with the bot's %s.", kind), nil
}

// leaveCall: `leave` takes the bot out of this room's Element Call.
func (b *Bot) leaveCall(_ context.Context, evt *matrix.Event, _ []string) (string, error) {
	l := b.bridges.rtc.In(evt.RoomID)
	if l == nil {
		return "", userErrorf("the bot is not in this room's call")
	}
	l.Hangup(leg.Hangup, fmt.Sprintf("%s asked the bot to leave", evt.Sender))
	return "Leaving this room's call.", nil
}
