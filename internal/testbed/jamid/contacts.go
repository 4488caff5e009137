//go:build linux

package jamid

import (
	"context"
	"fmt"
	"time"
)

// Contacts and trust requests, as jamid 13.7.0 has them (contact_list.cpp,
// jamiaccount.cpp). AddContact, Contacts and SendTrustRequest are in
// methods.go.
//
// What 13.7.0 does, read in its source:
//   - sendTrustRequest (and addContact, which makes a 1:1 swarm first and
//     sends the request when it sees the peer online) adds the peer as an
//     unconfirmed contact — already ALLOWED for calls — and puts a trust
//     request naming the swarm's conversation id at each of the peer's
//     devices' inboxes.
//   - A trust request from an unknown account is kept (getTrustRequests)
//     and signalled: incomingTrustRequest directly when it names no
//     conversation ("old path"), else incomingTrustRequest and
//     conversationRequestReceived.
//   - acceptTrustRequest makes the sender a confirmed contact (contactAdded
//     confirmed=true) and sends a confirmation (confirm=true, with the
//     request's conversation id) to each of its devices; with a
//     conversation id it also starts cloning that swarm from the sender.
//   - A confirmation from an unconfirmed contact makes it confirmed
//     (contactAdded confirmed=true) — in memory: contact_list.cpp does not
//     save the contacts file there, so after a restart the contact reads
//     unconfirmed again until the next confirmation.

// Keys of getContactDetails / getContacts maps.
const (
	ContactID             = "id"
	ContactAdded          = "added"
	ContactConfirmed      = "confirmed" // "true" / "false"
	ContactBanned         = "banned"
	ContactConversationID = "conversationId"
)

// ContactDetails is what account knows of the contact uri
// (getContactDetails): "id", "added", "confirmed", "conversationId"; empty
// for no contact.
func (d *Daemon) ContactDetails(ctx context.Context, accountID, uri string) (map[string]string, error) {
	var m map[string]string
	return m, d.store(ctx, &m, ConfigurationManager, "getContactDetails", accountID, uri)
}

// RemoveContact removes (ban: and bans) the contact uri.
func (d *Daemon) RemoveContact(ctx context.Context, accountID, uri string, ban bool) error {
	return d.noReply(ctx, ConfigurationManager, "removeContact", accountID, uri, ban)
}

// TrustRequests are the requests account has received and not answered
// (getTrustRequests): maps with "from", "received", "conversationId",
// "payload".
func (d *Daemon) TrustRequests(ctx context.Context, accountID string) ([]map[string]string, error) {
	var r []map[string]string
	return r, d.store(ctx, &r, ConfigurationManager, "getTrustRequests", accountID)
}

// AcceptTrustRequest accepts the trust request account received from from
// (a Jami ID); jamid fails it when there is no such request.
func (d *Daemon) AcceptTrustRequest(ctx context.Context, accountID, from string) error {
	return d.ok(ctx, ConfigurationManager, "acceptTrustRequest", accountID, from)
}

// DiscardTrustRequest drops the trust request account received from from.
func (d *Daemon) DiscardTrustRequest(ctx context.Context, accountID, from string) error {
	return d.ok(ctx, ConfigurationManager, "discardTrustRequest", accountID, from)
}

// IncomingTrustRequest is an incomingTrustRequest signal.
type IncomingTrustRequest struct {
	Time           time.Time
	AccountID      string
	ConversationID string // "" for a request without swarm
	From           string // the sender's Jami ID
	Payload        []byte
	Received       uint64 // receiveTime, seconds since 1970
}

func incomingTrustRequest(s Signal) (IncomingTrustRequest, bool) {
	if s.Name != ConfigurationManager+".incomingTrustRequest" {
		return IncomingTrustRequest{}, false
	}
	r := IncomingTrustRequest{Time: s.Time, AccountID: s.str(0), ConversationID: s.str(1), From: bareID(s.str(2))}
	if len(s.Body) > 4 {
		r.Payload, _ = s.Body[3].([]byte)
		r.Received, _ = s.Body[4].(uint64)
	}
	return r, true
}

// WaitIncomingTrustRequest returns the first incomingTrustRequest on
// account from from (a Jami ID; "" for anyone) since Start, waiting for
// it if there is none yet.
func (d *Daemon) WaitIncomingTrustRequest(ctx context.Context, accountID, from string) (IncomingTrustRequest, error) {
	var found IncomingTrustRequest
	_, err := d.WaitSignal(ctx, 0, func(s Signal) bool {
		r, ok := incomingTrustRequest(s)
		if ok && r.AccountID == accountID && (from == "" || r.From == bareID(from)) {
			found = r
			return true
		}
		return false
	})
	if err != nil {
		return found, fmt.Errorf("waiting for a trust request on account %s from %q: %w", accountID, from, err)
	}
	return found, nil
}

// ContactAddedSignal is a contactAdded signal.
type ContactAddedSignal struct {
	Time      time.Time
	AccountID string
	URI       string
	Confirmed bool
}

func contactAdded(s Signal) (ContactAddedSignal, bool) {
	if s.Name != ConfigurationManager+".contactAdded" {
		return ContactAddedSignal{}, false
	}
	c := ContactAddedSignal{Time: s.Time, AccountID: s.str(0), URI: bareID(s.str(1))}
	if len(s.Body) > 2 {
		c.Confirmed, _ = s.Body[2].(bool)
	}
	return c, true
}

// ContactSignals are the contactAdded signals of account about uri so far.
func (d *Daemon) ContactSignals(accountID, uri string) []ContactAddedSignal {
	var out []ContactAddedSignal
	for _, s := range d.Signals() {
		if c, ok := contactAdded(s); ok && c.AccountID == accountID && c.URI == bareID(uri) {
			out = append(out, c)
		}
	}
	return out
}

// WaitContactConfirmed waits until account has uri as a confirmed contact:
// a contactAdded signal with confirmed=true (since Start) and
// getContactDetails saying "confirmed": "true". It returns the details.
func (d *Daemon) WaitContactConfirmed(ctx context.Context, accountID, uri string) (map[string]string, error) {
	var details map[string]string
	err := d.wait(ctx, 0, -1, func(sigs []Signal, _ []string) (bool, error) {
		signalled := false
		for _, c := range d.ContactSignals(accountID, uri) {
			signalled = signalled || c.Confirmed
		}
		if !signalled {
			return false, nil
		}
		var err error
		if details, err = d.ContactDetails(ctx, accountID, uri); err != nil {
			return false, err
		}
		return details[ContactConfirmed] == "true", nil
	})
	if err != nil {
		return details, fmt.Errorf("waiting for %s to be a confirmed contact of account %s (details %v, signals %v): %w",
			uri, accountID, details, d.ContactSignals(accountID, uri), err)
	}
	return details, nil
}
