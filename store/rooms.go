package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// Membership is the bot's own membership in a room.
type Membership string

// The memberships the room table records.
const (
	MembershipInvite Membership = "invite"
	MembershipJoin   Membership = "join"
	MembershipLeave  Membership = "leave"
	MembershipBan    Membership = "ban"
)

// RoomSettings are per-room settings, stored as one JSON object so that a
// feature can add a setting without a migration.
type RoomSettings struct {
	// Source is what the bot sends into calls in the room ("" = the
	// configured default); the bridge names the values.
	Source string `json:"source,omitempty"`
	// Route is where calls to the bot in the room go, as a target
	// (kind:address, or a source name); "" = the configured default.
	Route string `json:"route,omitempty"`
	// Report: post a quality report when a call ends (nil = the
	// configured default).
	Report *bool `json:"report,omitempty"`
	// Record: record the room's calls and post the recordings.
	Record bool `json:"record,omitempty"`
	// CallKey is the passphrase of the room's Element Call when it is
	// encrypted with one key for everyone (?password=); "" if not.
	CallKey string `json:"call_key,omitempty"`
}

// Room is a room the bot has been invited to or joined.
type Room struct {
	RoomID     id.RoomID
	Membership Membership
	Inviter    id.UserID
	UpdatedAt  time.Time
	Settings   RoomSettings
}

// SetMembership records the bot's membership in a room. The inviter is kept
// from the invite when later changes do not name one.
func (s *Store) SetMembership(ctx context.Context, room id.RoomID, m Membership, inviter id.UserID) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO room (room_id, membership, inviter, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (room_id) DO UPDATE SET
			membership=excluded.membership,
			inviter=CASE WHEN excluded.inviter <> '' THEN excluded.inviter ELSE room.inviter END,
			updated_at=excluded.updated_at`,
		room, m, inviter, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("recording membership %s in %s: %w", m, room, err)
	}
	return nil
}

// Room returns the stored room, or nil if the bot never had a membership in it.
func (s *Store) Room(ctx context.Context, room id.RoomID) (*Room, error) {
	var r Room
	var updated int64
	err := s.db.QueryRow(ctx,
		"SELECT room_id, membership, inviter, updated_at, settings FROM room WHERE room_id=$1", room,
	).Scan(&r.RoomID, &r.Membership, &r.Inviter, &updated, dbutil.JSON{Data: &r.Settings})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading room %s: %w", room, err)
	}
	r.UpdatedAt = time.UnixMilli(updated)
	return &r, nil
}

// SetRoomSettings replaces a room's settings.
func (s *Store) SetRoomSettings(ctx context.Context, room id.RoomID, settings RoomSettings) error {
	res, err := s.db.Exec(ctx, "UPDATE room SET settings=$2, updated_at=$3 WHERE room_id=$1",
		room, dbutil.JSON{Data: &settings}, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("storing settings of %s: %w", room, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("storing settings of %s: the bot is not in that room", room)
	}
	return nil
}

// CountRooms returns how many rooms the bot has the given membership in.
func (s *Store) CountRooms(ctx context.Context, m Membership) (int, error) {
	var n int
	if err := s.db.QueryRow(ctx, "SELECT COUNT(*) FROM room WHERE membership=$1", m).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting rooms: %w", err)
	}
	return n, nil
}

// RoomsRoutedTo lists the joined rooms whose route is exactly route (a
// target as the bridge writes it), most recently changed first: where a
// call from that target rings.
func (s *Store) RoomsRoutedTo(ctx context.Context, route string) ([]id.RoomID, error) {
	rows, err := s.db.Query(ctx, `
		SELECT room_id FROM room
		WHERE membership=$1 AND json_extract(settings, '$.route')=$2
		ORDER BY updated_at DESC, room_id`, MembershipJoin, route)
	if err != nil {
		return nil, fmt.Errorf("finding the rooms routed to %s: %w", route, err)
	}
	defer rows.Close()
	var rooms []id.RoomID
	for rows.Next() {
		var r id.RoomID
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("finding the rooms routed to %s: %w", route, err)
		}
		rooms = append(rooms, r)
	}
	return rooms, rows.Err()
}
