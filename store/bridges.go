package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"
)

// Bridge is one conversation as the store keeps it: which room started it,
// where it rang, and when it ended.
type Bridge struct {
	BridgeID  string
	RoomID    id.RoomID
	Target    string
	CreatedAt time.Time
	EndedAt   time.Time // zero while active
	EndReason string
}

// BridgeLeg is one leg of a bridge. State is "ringing", "answered",
// "connected" or LegStateEnded.
type BridgeLeg struct {
	LegID      string
	BridgeID   string
	Kind       string
	Direction  string
	Peer       string
	State      string
	CreatedAt  time.Time
	AnsweredAt time.Time
	EndedAt    time.Time
	EndReason  string
	EndedBy    string
	EndDetail  string
}

// LegStateEnded is the state of a leg that is over.
const LegStateEnded = "ended"

// PutBridge inserts or updates a bridge.
func (s *Store) PutBridge(ctx context.Context, b *Bridge) error {
	if b.BridgeID == "" {
		return fmt.Errorf("storing a bridge: empty ID")
	}
	_, err := s.db.Exec(ctx, `
		INSERT INTO bridge (bridge_id, room_id, target, created_at, ended_at, end_reason) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (bridge_id) DO UPDATE SET target=excluded.target, ended_at=excluded.ended_at, end_reason=excluded.end_reason`,
		b.BridgeID, b.RoomID, b.Target, b.CreatedAt.UnixMilli(), nullMilli(b.EndedAt), b.EndReason)
	if err != nil {
		return fmt.Errorf("storing bridge %s: %w", b.BridgeID, err)
	}
	return nil
}

// PutBridgeLeg inserts or updates a leg of a bridge (stored already).
func (s *Store) PutBridgeLeg(ctx context.Context, l *BridgeLeg) error {
	if l.LegID == "" || l.BridgeID == "" || l.State == "" {
		return fmt.Errorf("storing leg %q of bridge %q: empty ID or state", l.LegID, l.BridgeID)
	}
	_, err := s.db.Exec(ctx, `
		INSERT INTO bridge_leg (leg_id, bridge_id, kind, direction, peer, state, created_at, answered_at, ended_at, end_reason, ended_by, end_detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (leg_id) DO UPDATE SET peer=excluded.peer, state=excluded.state, answered_at=excluded.answered_at,
			ended_at=excluded.ended_at, end_reason=excluded.end_reason, ended_by=excluded.ended_by, end_detail=excluded.end_detail`,
		l.LegID, l.BridgeID, l.Kind, l.Direction, l.Peer, l.State, l.CreatedAt.UnixMilli(),
		nullMilli(l.AnsweredAt), nullMilli(l.EndedAt), l.EndReason, l.EndedBy, l.EndDetail)
	if err != nil {
		return fmt.Errorf("storing leg %s of bridge %s: %w", l.LegID, l.BridgeID, err)
	}
	return nil
}

// BridgeLegs returns a bridge's legs in the order they joined it.
func (s *Store) BridgeLegs(ctx context.Context, bridgeID string) ([]*BridgeLeg, error) {
	return s.queryLegs(ctx, "WHERE bridge_id=$1 ORDER BY created_at, rowid", bridgeID)
}

func (s *Store) queryLegs(ctx context.Context, where string, args ...any) ([]*BridgeLeg, error) {
	rows, err := s.db.Query(ctx, `SELECT leg_id, bridge_id, kind, direction, peer, state, created_at, answered_at, ended_at,
		end_reason, ended_by, end_detail FROM bridge_leg `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("reading bridge legs: %w", err)
	}
	defer rows.Close()
	var out []*BridgeLeg
	for rows.Next() {
		var l BridgeLeg
		var created int64
		var answered, ended sql.NullInt64
		if err = rows.Scan(&l.LegID, &l.BridgeID, &l.Kind, &l.Direction, &l.Peer, &l.State, &created, &answered, &ended,
			&l.EndReason, &l.EndedBy, &l.EndDetail); err != nil {
			return nil, fmt.Errorf("reading a bridge leg: %w", err)
		}
		l.CreatedAt, l.AnsweredAt, l.EndedAt = time.UnixMilli(created), fromNullMilli(answered), fromNullMilli(ended)
		out = append(out, &l)
	}
	return out, rows.Err()
}

// ActiveLegs returns the legs of a kind not yet ended (before
// EndActiveBridges, what the last run left: an Element Call leg's room
// still has the bot's membership).
func (s *Store) ActiveLegs(ctx context.Context, kind string) ([]*BridgeLeg, error) {
	return s.queryLegs(ctx, "WHERE ended_at IS NULL AND kind=$1 ORDER BY created_at, rowid", kind)
}

// EndActiveBridges marks every bridge and leg not yet ended as ended at now
// for reason: after a restart, the media of those bridges is gone. It
// returns how many bridges it ended.
func (s *Store) EndActiveBridges(ctx context.Context, now time.Time, reason string) (int, error) {
	var n int
	err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := s.db.Exec(ctx, `UPDATE bridge_leg SET state=$1, ended_at=$2, end_reason=$3, ended_by='bot', end_detail='the bot restarted'
			WHERE ended_at IS NULL`, LegStateEnded, now.UnixMilli(), reason); err != nil {
			return err
		}
		res, err := s.db.Exec(ctx, "UPDATE bridge SET ended_at=$1, end_reason=$2 WHERE ended_at IS NULL", now.UnixMilli(), reason)
		if err != nil {
			return err
		}
		affected, err := res.RowsAffected()
		n = int(affected)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("ending the bridges left from the last run: %w", err)
	}
	return n, nil
}

// CountLegs counts the legs of bridges not yet ended, by kind and state.
func (s *Store) CountLegs(ctx context.Context) (map[[2]string]int, error) {
	rows, err := s.db.Query(ctx, "SELECT kind, state, COUNT(*) FROM bridge_leg WHERE ended_at IS NULL GROUP BY kind, state")
	if err != nil {
		return nil, fmt.Errorf("counting bridge legs: %w", err)
	}
	defer rows.Close()
	out := map[[2]string]int{}
	for rows.Next() {
		var kind, state string
		var n int
		if err = rows.Scan(&kind, &state, &n); err != nil {
			return nil, fmt.Errorf("counting bridge legs: %w", err)
		}
		out[[2]string{kind, state}] = n
	}
	return out, rows.Err()
}

// CountActiveBridges counts bridges not yet ended.
func (s *Store) CountActiveBridges(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRow(ctx, "SELECT COUNT(*) FROM bridge WHERE ended_at IS NULL").Scan(&n); err != nil {
		return 0, fmt.Errorf("counting bridges: %w", err)
	}
	return n, nil
}

// BridgeOfLeg is the bridge a leg is (or was) in; "" if none.
func (s *Store) BridgeOfLeg(ctx context.Context, legID string) (string, error) {
	var b string
	err := s.db.QueryRow(ctx, "SELECT bridge_id FROM bridge_leg WHERE leg_id=$1", legID).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("finding the bridge of leg %s: %w", legID, err)
	}
	return b, nil
}
