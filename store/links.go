package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
)

// GuestLink is a call link for browser guests (table guest_link). It is an
// alias of the same unnamed struct type as guestlink.Record (see DHTNode),
// so that *Store satisfies guestlink.Store: keep its fields as they are in
// package bridge/guestlink.
//
// The token itself is never stored, only TokenHash; ID is the link's public
// id. Times are kept to the millisecond; RevokedAt is zero until the link
// is revoked. Kind is what the token opens: "call" (the default when
// empty), "whip" or "whep".
type GuestLink = struct {
	ID        string
	TokenHash string
	Room      string
	Video     bool
	Echo      bool
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt time.Time
	Joins     int
	Kind      string
}

const guestLinkColumns = "id, token_hash, room_id, video, echo, created_by, created_at, expires_at, revoked_at, joins, kind"

// CreateLink adds a link. It returns false, and adds nothing, if a link
// with the same ID or TokenHash exists.
func (s *Store) CreateLink(ctx context.Context, l GuestLink) (bool, error) {
	var revoked sql.NullInt64
	kind := l.Kind
	if kind == "" {
		kind = "call"
	}
	if !l.RevokedAt.IsZero() {
		revoked = sql.NullInt64{Int64: l.RevokedAt.UnixMilli(), Valid: true}
	}
	res, err := s.db.Exec(ctx, `
		INSERT INTO guest_link (`+guestLinkColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT DO NOTHING`,
		l.ID, l.TokenHash, l.Room, l.Video, l.Echo, l.CreatedBy,
		l.CreatedAt.UnixMilli(), l.ExpiresAt.UnixMilli(), revoked, l.Joins, kind)
	if err != nil {
		return false, fmt.Errorf("storing call link %s: %w", l.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("storing call link %s: %w", l.ID, err)
	}
	return n == 1, nil
}

func scanGuestLink(row dbutil.Scannable) (GuestLink, error) {
	var l GuestLink
	var created, expires int64
	var revoked sql.NullInt64
	err := row.Scan(&l.ID, &l.TokenHash, &l.Room, &l.Video, &l.Echo, &l.CreatedBy, &created, &expires, &revoked, &l.Joins, &l.Kind)
	if err != nil {
		return l, err
	}
	l.CreatedAt = time.UnixMilli(created)
	l.ExpiresAt = time.UnixMilli(expires)
	if revoked.Valid {
		l.RevokedAt = time.UnixMilli(revoked.Int64)
	}
	return l, nil
}

// LinkByTokenHash returns the link whose token hashes to tokenHash, or nil
// if there is none.
func (s *Store) LinkByTokenHash(ctx context.Context, tokenHash string) (*GuestLink, error) {
	l, err := scanGuestLink(s.db.QueryRow(ctx,
		"SELECT "+guestLinkColumns+" FROM guest_link WHERE token_hash=$1", tokenHash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("looking up a call link: %w", err)
	}
	return &l, nil
}

// LiveLinks lists the links of room that expire after now and are not
// revoked, newest first.
func (s *Store) LiveLinks(ctx context.Context, room string, now time.Time) ([]GuestLink, error) {
	rows, err := s.db.Query(ctx, `
		SELECT `+guestLinkColumns+` FROM guest_link
		WHERE room_id=$1 AND expires_at>$2 AND revoked_at IS NULL
		ORDER BY created_at DESC, id`, room, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("listing the call links of %s: %w", room, err)
	}
	defer rows.Close()
	var out []GuestLink
	for rows.Next() {
		l, err := scanGuestLink(rows)
		if err != nil {
			return nil, fmt.Errorf("listing the call links of %s: %w", room, err)
		}
		out = append(out, l)
	}
	if err = rows.Err(); err != nil {
		return nil, fmt.Errorf("listing the call links of %s: %w", room, err)
	}
	return out, nil
}

// RevokeLink marks the link id of room revoked at at; a link revoked
// before keeps its first time. It returns false if room has no link id.
func (s *Store) RevokeLink(ctx context.Context, room, id string, at time.Time) (bool, error) {
	res, err := s.db.Exec(ctx,
		"UPDATE guest_link SET revoked_at=COALESCE(revoked_at, $3) WHERE id=$1 AND room_id=$2",
		id, room, at.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("revoking call link %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("revoking call link %s: %w", id, err)
	}
	return n == 1, nil
}

// CountLinkJoin adds one to the joins of link id. It returns false if there
// is no link id.
func (s *Store) CountLinkJoin(ctx context.Context, id string) (bool, error) {
	res, err := s.db.Exec(ctx, "UPDATE guest_link SET joins=joins+1 WHERE id=$1", id)
	if err != nil {
		return false, fmt.Errorf("counting a join of call link %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("counting a join of call link %s: %w", id, err)
	}
	return n == 1, nil
}

// PruneLinks deletes the links that expired, or were revoked, before
// before, and returns how many it deleted.
func (s *Store) PruneLinks(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.Exec(ctx,
		"DELETE FROM guest_link WHERE expires_at<$1 OR revoked_at<$1", before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("pruning old call links: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("pruning old call links: %w", err)
	}
	return int(n), nil
}
