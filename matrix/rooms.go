package matrix

import (
	"context"
	"errors"
	"fmt"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"
)

// RoomIsPublic says whether anyone may join the room without an invite (join
// rule "public"). The spec recommends not ringing for invites in such rooms.
// It reads the state store, and asks the homeserver the first time.
func (c *Client) RoomIsPublic(ctx context.Context, room id.RoomID) (bool, error) {
	ss, ok := c.cli.StateStore.(*sqlstatestore.SQLStateStore)
	if !ok {
		return false, fmt.Errorf("reading join rules of %s: no state store", room)
	}
	rules, err := ss.GetJoinRules(ctx, room)
	if err != nil {
		return false, fmt.Errorf("reading join rules of %s: %w", room, err)
	}
	if rules == nil {
		var content event.JoinRulesEventContent
		if err = c.cli.StateEvent(ctx, room, event.StateJoinRules, "", &content); err != nil {
			return false, fmt.Errorf("fetching join rules of %s: %w", room, err)
		}
		rules = &content
		if err = ss.SetJoinRules(ctx, room, rules); err != nil {
			return false, fmt.Errorf("storing join rules of %s: %w", room, err)
		}
	}
	return rules.JoinRule == event.JoinRulePublic, nil
}

// Joined says whether user is joined to room, by the homeserver's room state.
func (c *Client) Joined(ctx context.Context, room id.RoomID, user id.UserID) (bool, error) {
	var m event.MemberEventContent
	if err := c.cli.StateEvent(ctx, room, event.StateMember, user.String(), &m); err != nil {
		if errors.Is(err, mautrix.MNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("reading %s's membership in %s: %w", user, room, err)
	}
	return m.Membership == event.MembershipJoin, nil
}

// OthersInRoom counts the members of room (joined or invited) other than the
// bot and except, by the bot's view of the room's state.
func (c *Client) OthersInRoom(ctx context.Context, room id.RoomID, except id.UserID) (int, error) {
	ss, ok := c.cli.StateStore.(*sqlstatestore.SQLStateStore)
	if !ok {
		return 0, fmt.Errorf("reading members of %s: no state store", room)
	}
	members, err := ss.GetRoomJoinedOrInvitedMembers(ctx, room)
	if err != nil {
		return 0, fmt.Errorf("reading members of %s: %w", room, err)
	}
	n := 0
	for _, m := range members {
		if m != c.UserID() && m != except {
			n++
		}
	}
	return n, nil
}

// RoomName is the room's m.room.name, "" if it has none or it cannot be
// read.
func (c *Client) RoomName(ctx context.Context, room id.RoomID) string {
	var content event.RoomNameEventContent
	if err := c.cli.StateEvent(ctx, room, event.StateRoomName, "", &content); err != nil {
		return ""
	}
	return content.Name
}
