package jami

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/jami/connect"
	"github.com/voipbot/voipbot/jami/contacts"
	"github.com/voipbot/voipbot/jami/dht"
)

// The bot's Jami contacts (jami/contacts has the wire format and the
// exchange). The bot listens at its device's inbox; a trust request from an
// account jami.allow lets call the bot (and jami.ban does not name) is
// accepted at once: the contact is stored as confirmed and a confirmation
// goes to every device of the account, after which the Jami user sees the
// bot as a confirmed contact. Requests from other accounts are logged and
// dropped. SendTrustRequest invites an account; its confirmation marks the
// contact confirmed. The bot does not speak the swarm (the git
// conversation jamid makes for a contact): see the contacts package.

const (
	// contactHandlers bounds the inbox values being handled at once (each
	// costs an RSA decryption and DHT lookups).
	contactHandlers = 4
	// contactTimeout bounds the handling of one value or one invitation.
	contactTimeout = time.Minute
)

// contactBook serialises the changes to the stored contacts.
type contactBook struct {
	mu       sync.Mutex
	handlers chan struct{}
}

// startContacts listens at the device's inbox and sends again the
// invitations not confirmed yet.
func (s *Service) startContacts(ctx context.Context) error {
	s.book.handlers = make(chan struct{}, contactHandlers)
	inbox := contacts.InboxKey(s.ident.KeyID())
	// Raw values, not Secure.Listen's opened ones: Open says why a value is
	// refused.
	err := s.node.Listen(ctx, inbox, func(v *dht.Value) {
		if ctx.Err() != nil {
			return
		}
		select {
		case s.book.handlers <- struct{}{}:
		default:
			s.log.Warn().Uint64("value", v.ID).Msg("Too many trust requests at once: dropping one")
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.book.handlers }()
			hctx, cancel := context.WithTimeout(ctx, contactTimeout)
			defer cancel()
			s.onInbox(hctx, v)
		}()
	})
	if err != nil {
		return fmt.Errorf("listening for trust requests: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.resendInvitations(ctx)
	}()
	return nil
}

// onInbox handles one value at the inbox.
func (s *Service) onInbox(ctx context.Context, v *dht.Value) {
	in, err := contacts.Open(v, s.account.DeviceKey)
	if err != nil {
		s.log.Debug().Err(err).Uint64("value", v.ID).Msg("Ignoring a value at the bot's inbox")
		return
	}
	log := s.log.With().Stringer("device", in.FromID).Bool("confirm", in.Confirm).
		Str("conversation", in.ConversationID).Logger()
	if s.Banned(in.FromID) {
		log.Info().Msg("Ignoring a trust request from a banned device (jami.ban)")
		return
	}
	// The sender's account is the issuer of its device certificate, as
	// jamid finds it (onPeerMessage: findCertificate, foundPeerDevice).
	chain, key, err := s.secure.FindCertificate(ctx, in.FromID)
	if err != nil {
		log.Info().Err(err).Msg("Ignoring a trust request: the sending device's certificate is not on the DHT")
		return
	}
	if !key.Equal(in.From) {
		log.Warn().Msg("Ignoring a trust request signed by another key than the device's certificate")
		return
	}
	dev, err := connect.ParseDevice(chain)
	if err != nil {
		log.Info().Err(err).Msg("Ignoring a trust request from a device with an invalid chain")
		return
	}
	log = log.With().Stringer("account", dev.Account).Logger()
	if s.Banned(dev.Account) {
		log.Info().Msg("Ignoring a trust request from a banned account (jami.ban)")
		return
	}
	if dev.Account == s.account.ID() {
		log.Info().Msg("Ignoring a trust request from the bot's own account (another of its devices)")
		return
	}
	if in.Confirm {
		s.onConfirmation(ctx, log, dev.Account, in)
		return
	}
	if !s.Allowed(dev.Account) {
		log.Info().Msg("Ignoring a Jami trust request: the account is not in jami.allow")
		return
	}
	if err := s.acceptRequest(ctx, dev.Account, in); err != nil {
		log.Warn().Err(err).Msg("Accepting a Jami trust request failed")
		return
	}
	log.Info().Msg("Accepted a Jami trust request: the account is a confirmed contact")
}

// acceptRequest stores the contact as confirmed and confirms to every
// device of the account, naming the request's conversation (which jamid
// then keeps as it is).
func (s *Service) acceptRequest(ctx context.Context, account dht.InfoHash, in *contacts.Incoming) error {
	s.book.mu.Lock()
	c, err := s.contact(ctx, account)
	if err == nil {
		if c == nil {
			c = &Contact{Account: account.String(), Added: time.Now()}
		}
		c.ConversationID, c.Confirmed = in.ConversationID, true
		err = s.store.PutJamiContact(ctx, *c)
	}
	s.book.mu.Unlock()
	if err != nil {
		return fmt.Errorf("storing the contact: %w", err)
	}
	_, err = s.putToAccount(ctx, account, &contacts.Request{Service: contacts.Service, ConversationID: in.ConversationID, Confirm: true})
	return err
}

// onConfirmation marks a contact the bot invited confirmed.
func (s *Service) onConfirmation(ctx context.Context, log zerolog.Logger, account dht.InfoHash, in *contacts.Incoming) {
	s.book.mu.Lock()
	defer s.book.mu.Unlock()
	c, err := s.contact(ctx, account)
	switch {
	case err != nil:
		log.Warn().Err(err).Msg("Reading the Jami contacts failed")
		return
	case c == nil:
		log.Info().Msg("Ignoring a trust confirmation from an account the bot did not invite")
		return
	case c.Confirmed && (in.ConversationID == "" || in.ConversationID == c.ConversationID):
		return // again (a redelivery, a second device)
	}
	c.Confirmed = true
	if in.ConversationID != "" {
		c.ConversationID = in.ConversationID
	}
	if err := s.store.PutJamiContact(ctx, *c); err != nil {
		log.Warn().Err(err).Msg("Storing a confirmed Jami contact failed")
		return
	}
	log.Info().Msg("A Jami account accepted the bot's trust request: it is a confirmed contact")
}

// contact is the stored contact of account, nil if there is none. The
// caller holds contacts.mu.
func (s *Service) contact(ctx context.Context, account dht.InfoHash) (*Contact, error) {
	all, err := s.store.JamiContacts(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(all, func(c Contact) bool { return strings.EqualFold(c.Account, account.String()) })
	if i < 0 {
		return nil, nil
	}
	return &all[i], nil
}

// Contacts lists the bot's Jami contacts, confirmed or invited.
func (s *Service) Contacts(ctx context.Context) ([]Contact, error) {
	return s.store.JamiContacts(ctx)
}

// SendTrustRequest invites a Jami account to be the bot's contact: it is
// stored as an unconfirmed contact and a trust request goes to each of its
// devices; the account's acceptance makes it confirmed. Inviting an account
// again sends the request again (an accepted one is confirmed once more by
// jamid). An error says no device was reached; the invitation is kept and
// sent again at the next start.
func (s *Service) SendTrustRequest(ctx context.Context, account dht.InfoHash) error {
	if s.Banned(account) {
		return fmt.Errorf("jami account %s is banned (jami.ban)", account)
	}
	if account == s.account.ID() {
		return errors.New("the bot cannot invite its own account")
	}
	select {
	case <-s.ready:
	default:
		return ErrNotConnected
	}
	s.book.mu.Lock()
	c, err := s.contact(ctx, account)
	if err == nil && c == nil {
		c = &Contact{Account: account.String(), Added: time.Now()}
		err = s.store.PutJamiContact(ctx, *c)
	}
	s.book.mu.Unlock()
	if err != nil {
		return fmt.Errorf("storing the invitation: %w", err)
	}
	return s.invite(ctx, c)
}

// invite sends c a trust request (the bot makes no swarm: no conversation
// id, jamid's "old path"), dated when it was first invited.
func (s *Service) invite(ctx context.Context, c *Contact) error {
	account, err := ParseID(c.Account)
	if err != nil {
		return err
	}
	n, err := s.putToAccount(ctx, account, &contacts.Request{Service: contacts.Service, InvitedMs: c.Added.UnixMilli()})
	if err != nil {
		return err
	}
	s.log.Info().Stringer("account", account).Int("devices", n).Msg("Sent a Jami trust request")
	return nil
}

// resendInvitations sends the invitations not confirmed yet again (jamid
// does so when an unconfirmed contact comes online): a trust request lives
// on the DHT for minutes only.
func (s *Service) resendInvitations(ctx context.Context) {
	all, err := s.store.JamiContacts(ctx)
	if err != nil {
		s.log.Warn().Err(err).Msg("Reading the Jami contacts failed")
		return
	}
	for _, c := range all {
		if c.Confirmed || ctx.Err() != nil {
			continue
		}
		ictx, cancel := context.WithTimeout(ctx, contactTimeout)
		if err := s.invite(ictx, &c); err != nil {
			s.log.Info().Err(err).Str("account", c.Account).Msg("Sending a Jami trust request again failed")
		}
		cancel()
	}
}

// putToAccount puts req, encrypted, at the inbox of each device of account,
// as jamid's forEachDevice does; it returns how many took it, and an error
// if none did.
func (s *Service) putToAccount(ctx context.Context, account dht.InfoHash, req *contacts.Request) (int, error) {
	devs, err := s.Devices(ctx, account)
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, d := range devs {
		if _, err := s.secure.PutEncrypted(ctx, contacts.InboxKey(d.ID), d.Key, req.Value()); err != nil {
			errs = append(errs, fmt.Errorf("device %s: %w", d.ID, err))
			continue
		}
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("no device of Jami account %s took the trust request: %w", account, errors.Join(errs...))
	}
	return n, nil
}
