package matrix

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/store"
)

// registerMembership wires the bot's room membership policy: join rooms an
// allowed user invites it to, decline other invites, record every change of
// its own membership, and leave rooms where nobody else is left.
func (c *Client) registerMembership() {
	c.On(event.StateMember, c.membershipWanted, c.handleMembership)
}

// membershipWanted selects the bot's own membership changes and other
// members leaving; joins of others need no action.
func (c *Client) membershipWanted(evt *event.Event) bool {
	if evt.GetStateKey() == c.UserID().String() {
		return true
	}
	switch membershipOf(evt) {
	case event.MembershipLeave, event.MembershipBan:
		return true
	}
	return false
}

// firstJoin says whether a join of the bot's is its first membership in
// the room (it created the room), rather than an invite taken.
func firstJoin(evt *event.Event) bool {
	prev := evt.Unsigned.PrevContent
	if prev == nil {
		return true
	}
	_ = prev.ParseRaw(event.StateMember) // parsed already, or absent: either way AsMember reads it
	return prev.AsMember().Membership == ""
}

// isDirectInvite says whether an invite is to a direct chat.
func isDirectInvite(evt *event.Event) bool {
	if content, ok := evt.Content.Parsed.(*event.MemberEventContent); ok {
		return content.IsDirect
	}
	direct, _ := evt.Content.Raw["is_direct"].(bool)
	return direct
}

// MembershipOf is a member event's membership, whether or not its content
// has been parsed yet (handler filters see raw content).
func MembershipOf(evt *event.Event) event.Membership { return membershipOf(evt) }

func membershipOf(evt *event.Event) event.Membership {
	if content, ok := evt.Content.Parsed.(*event.MemberEventContent); ok {
		return content.Membership
	}
	m, _ := evt.Content.Raw["membership"].(string)
	return event.Membership(m)
}

func (c *Client) handleMembership(ctx context.Context, evt *Event) error {
	if evt.GetStateKey() != c.UserID().String() {
		return c.leaveIfAlone(ctx, evt.RoomID)
	}
	log := zerolog.Ctx(ctx)
	switch m := membershipOf(evt.Event); m {
	case event.MembershipInvite:
		if err := c.store.SetMembership(ctx, evt.RoomID, store.MembershipInvite, evt.Sender); err != nil {
			return err
		}
		if !c.cfg.Access.Allowed(c.UserID(), evt.Sender) {
			log.Info().Stringer("inviter", evt.Sender).Msg("Declining invite from a user who is not allowed")
			_, err := c.cli.LeaveRoom(ctx, evt.RoomID, &mautrix.ReqLeave{Reason: "This bot only serves allowed users."})
			if err != nil {
				return fmt.Errorf("declining invite to %s: %w", evt.RoomID, err)
			}
			return c.store.SetMembership(ctx, evt.RoomID, store.MembershipLeave, "")
		}
		if isDirectInvite(evt.Event) {
			// As Element does: a direct chat someone starts with the bot
			// is the bot's direct room with them, where the bot calls them.
			// Recorded before joining, so that whoever sees the bot joined
			// finds it there (a room the bot is not in is never used).
			if err := c.markDirect(ctx, evt.Sender, evt.RoomID); err != nil {
				log.Warn().Err(err).Msg("Failed to record the direct room in m.direct")
			}
		}
		if _, err := c.cli.JoinRoomByID(ctx, evt.RoomID); err != nil {
			return fmt.Errorf("joining %s after an invite from %s: %w", evt.RoomID, evt.Sender, err)
		}
		log.Info().Stringer("inviter", evt.Sender).Msg("Joined room after invite")
		if c.cfg.Mode == ModeAppservice {
			// Transactions carry only new events: fetch the room's state so
			// that encryption knows the room's members and settings.
			if _, err := c.cli.State(ctx, evt.RoomID); err != nil {
				return fmt.Errorf("fetching state of %s after joining: %w", evt.RoomID, err)
			}
		}
		return c.store.SetMembership(ctx, evt.RoomID, store.MembershipJoin, "")
	case event.MembershipJoin:
		if err := c.store.SetMembership(ctx, evt.RoomID, store.MembershipJoin, ""); err != nil {
			return err
		}
		if firstJoin(evt.Event) {
			// A room the bot made itself (a direct room to call someone):
			// its invitees may not be invited yet when this join syncs.
			return nil
		}
		// Everyone may have left while the bot was away.
		return c.leaveIfAlone(ctx, evt.RoomID)
	case event.MembershipLeave, event.MembershipBan:
		if evt.Sender != c.UserID() {
			log.Info().Stringer("by", evt.Sender).Str("membership", string(m)).Msg("Removed from room")
		}
		return c.store.SetMembership(ctx, evt.RoomID, store.Membership(m), "")
	}
	return nil
}

// leaveIfAlone leaves a room where no one else is joined or invited. The
// homeserver's member list decides, not the bot's own view of the room.
func (c *Client) leaveIfAlone(ctx context.Context, room id.RoomID) error {
	own, err := c.store.Room(ctx, room)
	if err != nil {
		return err
	}
	if own == nil || own.Membership != store.MembershipJoin {
		return nil
	}
	members, err := c.cli.Members(ctx, room)
	if err != nil {
		return fmt.Errorf("listing members of %s: %w", room, err)
	}
	for _, m := range members.Chunk {
		if m.GetStateKey() == c.UserID().String() {
			continue
		}
		switch membershipOf(m) {
		case event.MembershipJoin, event.MembershipInvite:
			return nil
		}
	}
	zerolog.Ctx(ctx).Info().Msg("Leaving room where no one else is left")
	if _, err = c.cli.LeaveRoom(ctx, room); err != nil {
		return fmt.Errorf("leaving empty room %s: %w", room, err)
	}
	return c.store.SetMembership(ctx, room, store.MembershipLeave, "")
}
