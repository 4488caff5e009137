package store

import (
	"context"
	"fmt"
	"time"
)

// JamiContact is a Jami account the bot has as a contact. It is an alias of
// the same unnamed struct type as jami.Contact (see DHTNode): keep its
// fields as they are in package jami.
type JamiContact = struct {
	Account        string
	ConversationID string
	Added          time.Time
	Confirmed      bool
}

// PutJamiContact adds a contact or replaces the one of its account.
func (s *Store) PutJamiContact(ctx context.Context, c JamiContact) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO jami_contact (account, conversation_id, added, confirmed) VALUES ($1, $2, $3, $4)
		ON CONFLICT (account) DO UPDATE SET conversation_id=excluded.conversation_id, added=excluded.added,
			confirmed=excluded.confirmed`,
		c.Account, c.ConversationID, c.Added.UnixMilli(), c.Confirmed)
	if err != nil {
		return fmt.Errorf("storing a Jami contact: %w", err)
	}
	return nil
}

// JamiContacts lists the contacts, oldest first.
func (s *Store) JamiContacts(ctx context.Context) ([]JamiContact, error) {
	rows, err := s.db.Query(ctx, "SELECT account, conversation_id, added, confirmed FROM jami_contact ORDER BY added, account")
	if err != nil {
		return nil, fmt.Errorf("reading Jami contacts: %w", err)
	}
	defer rows.Close()
	var out []JamiContact
	for rows.Next() {
		var c JamiContact
		var added int64
		if err = rows.Scan(&c.Account, &c.ConversationID, &added, &c.Confirmed); err != nil {
			return nil, fmt.Errorf("reading Jami contacts: %w", err)
		}
		c.Added = time.UnixMilli(added)
		out = append(out, c)
	}
	return out, rows.Err()
}
