package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"
)

// InboxEvent is an event taken in from the homeserver and not yet handled.
type InboxEvent struct {
	Seq     int64
	Queue   string // the room ID, or "" for to-device events
	EventID id.EventID
	Source  int // mautrix event.Source bits: where in the sync response it came from
	Event   json.RawMessage
	// SenderDevice and Decrypted describe an Olm-encrypted to-device event
	// that was decrypted before it was stored.
	SenderDevice id.DeviceID
	Decrypted    bool
	ReceivedAt   time.Time
	Attempts     int
}

// Intake is everything one /sync response or one appservice transaction
// delivered, together with the position that acknowledges it. Committing both
// in one transaction is what makes a restart neither replay nor skip events.
type Intake struct {
	Events []*InboxEvent

	// For /sync: the user and the next_batch token to resume from.
	SyncUser  id.UserID
	NextBatch string
	// For an appservice transaction: its ID.
	TxnID string
}

// CommitIntake stores the events of one intake and its position atomically,
// and sets each event's Seq.
func (s *Store) CommitIntake(ctx context.Context, in *Intake) error {
	if (in.NextBatch == "") == (in.TxnID == "") {
		return errors.New("committing intake: exactly one of a sync token and a transaction ID is needed")
	}
	return s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		for _, evt := range in.Events {
			// LastInsertId rather than RETURNING: RETURNING makes SQLite keep
			// a statement journal, which tripled the cost of a commit.
			res, err := s.db.Exec(ctx, `
				INSERT INTO event_inbox (queue, event_id, source, event, sender_device, decrypted, received_at, attempts)
				VALUES ($1, $2, $3, $4, $5, $6, $7, 0)`,
				evt.Queue, evt.EventID, evt.Source, string(evt.Event), evt.SenderDevice, evt.Decrypted, evt.ReceivedAt.UnixMilli(),
			)
			if err == nil {
				evt.Seq, err = res.LastInsertId()
			}
			if err != nil {
				return fmt.Errorf("storing event %s from %q: %w", evt.EventID, evt.Queue, err)
			}
		}
		now := time.Now().UnixMilli()
		if in.TxnID != "" {
			if _, err := s.db.Exec(ctx,
				"INSERT INTO appservice_txn (txn_id, received_at) VALUES ($1, $2)", in.TxnID, now,
			); err != nil {
				return fmt.Errorf("recording transaction %s: %w", in.TxnID, err)
			}
			return nil
		}
		if _, err := s.db.Exec(ctx, `
			INSERT INTO sync_state (user_id, next_batch, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (user_id) DO UPDATE SET next_batch=excluded.next_batch, updated_at=excluded.updated_at`,
			in.SyncUser, in.NextBatch, now,
		); err != nil {
			return fmt.Errorf("storing sync position: %w", err)
		}
		return nil
	})
}

// NextBatch is the /sync token to resume from, or "" before the first sync.
func (s *Store) NextBatch(ctx context.Context, user id.UserID) (string, error) {
	var token string
	err := s.db.QueryRow(ctx, "SELECT next_batch FROM sync_state WHERE user_id=$1", user).Scan(&token)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("reading sync position: %w", err)
	}
	return token, nil
}

// ResetSyncPosition forgets the sync position, so the next sync is an
// initial one.
func (s *Store) ResetSyncPosition(ctx context.Context, user id.UserID) error {
	if _, err := s.db.Exec(ctx, "DELETE FROM sync_state WHERE user_id=$1", user); err != nil {
		return fmt.Errorf("resetting sync position: %w", err)
	}
	return nil
}

// TxnSeen reports whether the appservice transaction was already taken in.
func (s *Store) TxnSeen(ctx context.Context, txnID string) (bool, error) {
	var seen bool
	err := s.db.QueryRow(ctx, "SELECT EXISTS(SELECT 1 FROM appservice_txn WHERE txn_id=$1)", txnID).Scan(&seen)
	if err != nil {
		return false, fmt.Errorf("checking transaction %s: %w", txnID, err)
	}
	return seen, nil
}

// PruneTxns forgets transaction IDs recorded before the given time. A
// homeserver retries a transaction for minutes, not days.
func (s *Store) PruneTxns(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.Exec(ctx, "DELETE FROM appservice_txn WHERE received_at < $1", before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("pruning transaction IDs: %w", err)
	}
	return res.RowsAffected()
}

// ResumeInbox returns every event not yet handled, oldest first, after
// counting one more attempt for each: an event that keeps being pending
// across restarts (one that crashes the process) can then be given up on.
func (s *Store) ResumeInbox(ctx context.Context) ([]*InboxEvent, error) {
	var out []*InboxEvent
	err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := s.db.Exec(ctx, "UPDATE event_inbox SET attempts = attempts + 1"); err != nil {
			return fmt.Errorf("counting attempts of pending events: %w", err)
		}
		rows, err := s.db.Query(ctx, `
			SELECT seq, queue, event_id, source, event, sender_device, decrypted, received_at, attempts
			FROM event_inbox ORDER BY seq`)
		if err != nil {
			return fmt.Errorf("reading pending events: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var e InboxEvent
			var raw string
			var received int64
			if err = rows.Scan(&e.Seq, &e.Queue, &e.EventID, &e.Source, &raw, &e.SenderDevice, &e.Decrypted, &received, &e.Attempts); err != nil {
				return fmt.Errorf("reading pending event: %w", err)
			}
			e.Event = json.RawMessage(raw)
			e.ReceivedAt = time.UnixMilli(received)
			out = append(out, &e)
		}
		return rows.Err()
	})
	return out, err
}

// DeleteInbox removes a handled event.
func (s *Store) DeleteInbox(ctx context.Context, seq int64) error {
	if _, err := s.db.Exec(ctx, "DELETE FROM event_inbox WHERE seq=$1", seq); err != nil {
		return fmt.Errorf("removing handled event %d: %w", seq, err)
	}
	return nil
}

// InboxLen is the number of events not yet handled.
func (s *Store) InboxLen(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRow(ctx, "SELECT COUNT(*) FROM event_inbox").Scan(&n); err != nil {
		return 0, fmt.Errorf("counting pending events: %w", err)
	}
	return n, nil
}
