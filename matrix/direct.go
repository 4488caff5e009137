package matrix

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// MayChangeState says whether user may send state events in room: a power
// level of at least the room's state_default (what changing a room's
// settings, such as where its calls go, asks of a member).
func (c *Client) MayChangeState(ctx context.Context, room id.RoomID, user id.UserID) (bool, error) {
	var pl event.PowerLevelsEventContent
	if err := c.cli.StateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		if errors.Is(err, mautrix.MNotFound) {
			// No power levels event: the spec's state_default is then 0,
			// which every member has.
			return true, nil
		}
		return false, fmt.Errorf("reading the power levels of %s: %w", room, err)
	}
	return pl.GetUserLevel(user) >= pl.StateDefault(), nil
}

// ResolveAlias finds the room an alias names.
func (c *Client) ResolveAlias(ctx context.Context, alias id.RoomAlias) (id.RoomID, error) {
	resp, err := c.cli.ResolveAlias(ctx, alias)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", alias, err)
	}
	return resp.RoomID, nil
}

// FindDirectRoom finds the bot's direct room with user: one the bot's
// m.direct lists, which the bot is in and the user is in or invited to;
// "" if there is none.
func (c *Client) FindDirectRoom(ctx context.Context, user id.UserID) (id.RoomID, error) {
	direct, err := c.directRooms(ctx)
	if err != nil {
		return "", err
	}
	for _, r := range direct[user] {
		if ok, _ := c.Joined(ctx, r, c.UserID()); !ok {
			continue
		}
		var m event.MemberEventContent
		if c.cli.StateEvent(ctx, r, event.StateMember, user.String(), &m) != nil {
			continue
		}
		if m.Membership == event.MembershipJoin || m.Membership == event.MembershipInvite {
			return r, nil
		}
	}
	return "", nil
}

func (c *Client) directRooms(ctx context.Context) (map[id.UserID][]id.RoomID, error) {
	direct := map[id.UserID][]id.RoomID{}
	if err := c.cli.GetAccountData(ctx, event.AccountDataDirectChats.Type, &direct); err != nil && !errors.Is(err, mautrix.MNotFound) {
		return nil, fmt.Errorf("reading the bot's direct rooms: %w", err)
	}
	return direct, nil
}

// DirectRoom finds the bot's direct room with user (FindDirectRoom), or
// creates one: private, the user invited, encrypted if the bot has
// encryption, and marked m.direct. created says which.
func (c *Client) DirectRoom(ctx context.Context, user id.UserID) (room id.RoomID, created bool, err error) {
	if room, err = c.FindDirectRoom(ctx, user); err != nil || room != "" {
		return room, false, err
	}
	req := &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", Invite: []id.UserID{user}, IsDirect: true}
	if c.crypto != nil {
		req.InitialState = []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}}
	}
	resp, err := c.cli.CreateRoom(ctx, req)
	if err != nil {
		return "", false, fmt.Errorf("creating a direct room with %s: %w", user, err)
	}
	if err = c.markDirect(ctx, user, resp.RoomID); err != nil {
		return resp.RoomID, true, err
	}
	return resp.RoomID, true, nil
}

// markDirect lists room in the bot's m.direct as its direct room with user.
// The list is read just before it is written, so that a room added
// meanwhile is kept (there is no compare-and-set for account data).
func (c *Client) markDirect(ctx context.Context, user id.UserID, room id.RoomID) error {
	direct, err := c.directRooms(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(direct[user], room) {
		return nil
	}
	direct[user] = append(direct[user], room)
	if err = c.cli.SetAccountData(ctx, event.AccountDataDirectChats.Type, direct); err != nil {
		return fmt.Errorf("marking %s as the direct room with %s in m.direct: %w", room, user, err)
	}
	return nil
}
