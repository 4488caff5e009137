package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"
)

// Account is the bot's own Matrix login. It is written once after the first
// login and reused on every start: logging in again would create a new
// device and strand the bot's end-to-end encryption keys.
type Account struct {
	UserID      id.UserID
	DeviceID    id.DeviceID
	AccessToken string
	Homeserver  string
	LoggedInAt  time.Time
}

// Account returns the stored login, or nil if the bot has never logged in.
func (s *Store) Account(ctx context.Context) (*Account, error) {
	var a Account
	var loggedIn int64
	err := s.db.QueryRow(ctx,
		"SELECT user_id, device_id, access_token, homeserver, logged_in_at FROM account",
	).Scan(&a.UserID, &a.DeviceID, &a.AccessToken, &a.Homeserver, &loggedIn)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading stored login: %w", err)
	}
	a.LoggedInAt = time.UnixMilli(loggedIn)
	return &a, nil
}

// PutAccount stores the bot's login, replacing any earlier one of the same
// user. A login of another user is refused: the crypto store in the same file
// belongs to the first one.
func (s *Store) PutAccount(ctx context.Context, a *Account) error {
	return s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		var other id.UserID
		err := s.db.QueryRow(ctx, "SELECT user_id FROM account WHERE user_id <> $1", a.UserID).Scan(&other)
		if err == nil {
			return fmt.Errorf("the database already holds the login of %s, not %s", other, a.UserID)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("checking stored login: %w", err)
		}
		_, err = s.db.Exec(ctx, `
			INSERT INTO account (user_id, device_id, access_token, homeserver, logged_in_at)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id) DO UPDATE SET
				device_id=excluded.device_id, access_token=excluded.access_token,
				homeserver=excluded.homeserver, logged_in_at=excluded.logged_in_at`,
			a.UserID, a.DeviceID, a.AccessToken, a.Homeserver, a.LoggedInAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("storing login: %w", err)
		}
		return nil
	})
}
