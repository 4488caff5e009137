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

// CallDirection says who placed a call.
type CallDirection string

// The two directions of a call.
const (
	CallInbound  CallDirection = "inbound"
	CallOutbound CallDirection = "outbound"
)

// CallStateEnded is the one call state the store itself knows: every other
// state is active. The call state machine names the rest.
const CallStateEnded = "ended"

// Call is one call leg between the bot and one peer party in a room, as the
// call state machine last persisted it.
type Call struct {
	RoomID        id.RoomID
	CallID        string
	OurPartyID    string
	PeerUserID    id.UserID
	PeerPartyID   string // "" until the peer's invite or answer names it
	PeerDeviceID  id.DeviceID
	Direction     CallDirection
	Version       string
	Video         bool
	State         string
	StateReason   string
	HangupReason  string
	HangupBy      string // "", "local" or "remote"
	Missed        bool
	InviteEventID id.EventID
	Lifetime      time.Duration
	CreatedAt     time.Time
	UpdatedAt     time.Time
	AnsweredAt    time.Time // zero if never answered
	ConnectedAt   time.Time // zero if media never flowed
	EndedAt       time.Time // zero while active
}

const callColumns = `room_id, call_id, our_party_id, peer_user_id, peer_party_id, peer_device_id,
	direction, version, video, state, state_reason, hangup_reason, hangup_by, missed,
	invite_event_id, lifetime_ms, created_at, updated_at, answered_at, connected_at, ended_at`

func (c *Call) scan(row dbutil.Scannable) error {
	var lifetime, created, updated int64
	var answered, connected, ended sql.NullInt64
	err := row.Scan(&c.RoomID, &c.CallID, &c.OurPartyID, &c.PeerUserID, &c.PeerPartyID, &c.PeerDeviceID,
		&c.Direction, &c.Version, &c.Video, &c.State, &c.StateReason, &c.HangupReason, &c.HangupBy, &c.Missed,
		&c.InviteEventID, &lifetime, &created, &updated, &answered, &connected, &ended)
	if err != nil {
		return err
	}
	c.Lifetime = time.Duration(lifetime) * time.Millisecond
	c.CreatedAt = time.UnixMilli(created)
	c.UpdatedAt = time.UnixMilli(updated)
	c.AnsweredAt = fromNullMilli(answered)
	c.ConnectedAt = fromNullMilli(connected)
	c.EndedAt = fromNullMilli(ended)
	return nil
}

func fromNullMilli(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64)
}

func nullMilli(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

// PutCall inserts or replaces a call record. The call state machine calls it
// on every transition; UpdatedAt is set here.
func (s *Store) PutCall(ctx context.Context, c *Call) error {
	if c.Direction != CallInbound && c.Direction != CallOutbound {
		return fmt.Errorf("storing call %s: invalid direction %q", c.CallID, c.Direction)
	}
	if c.State == "" {
		return fmt.Errorf("storing call %s: empty state", c.CallID)
	}
	c.UpdatedAt = time.Now()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = c.UpdatedAt
	}
	_, err := s.db.Exec(ctx, `
		INSERT INTO call (`+callColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
		ON CONFLICT (room_id, call_id) DO UPDATE SET
			our_party_id=excluded.our_party_id, peer_user_id=excluded.peer_user_id,
			peer_party_id=excluded.peer_party_id, peer_device_id=excluded.peer_device_id,
			direction=excluded.direction, version=excluded.version, video=excluded.video,
			state=excluded.state, state_reason=excluded.state_reason,
			hangup_reason=excluded.hangup_reason, hangup_by=excluded.hangup_by, missed=excluded.missed,
			invite_event_id=excluded.invite_event_id, lifetime_ms=excluded.lifetime_ms,
			updated_at=excluded.updated_at, answered_at=excluded.answered_at,
			connected_at=excluded.connected_at, ended_at=excluded.ended_at`,
		c.RoomID, c.CallID, c.OurPartyID, c.PeerUserID, c.PeerPartyID, c.PeerDeviceID,
		c.Direction, c.Version, c.Video, c.State, c.StateReason, c.HangupReason, c.HangupBy, c.Missed,
		c.InviteEventID, c.Lifetime.Milliseconds(), c.CreatedAt.UnixMilli(), c.UpdatedAt.UnixMilli(),
		nullMilli(c.AnsweredAt), nullMilli(c.ConnectedAt), nullMilli(c.EndedAt))
	if err != nil {
		return fmt.Errorf("storing call %s in %s: %w", c.CallID, c.RoomID, err)
	}
	return nil
}

// Call returns a call record, or nil if there is none.
func (s *Store) Call(ctx context.Context, room id.RoomID, callID string) (*Call, error) {
	var c Call
	err := c.scan(s.db.QueryRow(ctx, "SELECT "+callColumns+" FROM call WHERE room_id=$1 AND call_id=$2", room, callID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading call %s in %s: %w", callID, room, err)
	}
	return &c, nil
}

// ActiveCalls returns every call not yet ended, oldest first: after a
// restart these are the calls to resume or to end.
func (s *Store) ActiveCalls(ctx context.Context) ([]*Call, error) {
	rows, err := s.db.Query(ctx, "SELECT "+callColumns+" FROM call WHERE state <> $1 ORDER BY created_at", CallStateEnded)
	if err != nil {
		return nil, fmt.Errorf("reading active calls: %w", err)
	}
	defer rows.Close()
	var out []*Call
	for rows.Next() {
		var c Call
		if err = c.scan(rows); err != nil {
			return nil, fmt.Errorf("reading active call: %w", err)
		}
		out = append(out, &c)
	}
	if err = rows.Err(); err != nil {
		return nil, fmt.Errorf("reading active calls: %w", err)
	}
	return out, nil
}

// CountCallsByState counts the calls in each state that is not ended.
func (s *Store) CountCallsByState(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.Query(ctx, "SELECT state, COUNT(*) FROM call WHERE state <> $1 GROUP BY state", CallStateEnded)
	if err != nil {
		return nil, fmt.Errorf("counting calls by state: %w", err)
	}
	defer rows.Close()
	out := make(map[string]int)
	for rows.Next() {
		var state string
		var n int
		if err = rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("counting calls by state: %w", err)
		}
		out[state] = n
	}
	return out, rows.Err()
}
