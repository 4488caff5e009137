package xmpp

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"

	"github.com/rs/zerolog"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/roster"
	"mellium.im/xmpp/stanza"

	"github.com/voipbot/voipbot/xmpp/qbsignal"
)

// handler is what the read loop does with each stanza: messages to q
// (whatever their payload: mellium's mux routes a message by its first
// child, and a <delay> may come first), pings answered, roster pushes
// acknowledged; any other IQ get or set gets mellium's
// service-unavailable. None sends on the session outside the writer it is
// given (Serve holds the stream's locks while it runs them).
func (c *Client) handler(ctx context.Context, q *inbox) xmpp.Handler {
	m := mux.New(stanza.NSClient,
		ping.Handle(),
		mux.IQFunc(stanza.SetIQ, xml.Name{Space: roster.NS, Local: "query"}, ackRosterPush),
	)
	return xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local == "message" && start.Name.Space == stanza.NSClient {
			c.receive(ctx, q, t, start)
			return nil
		}
		return m.HandleXMPP(t, start)
	})
}

// receive reads one message: a headline (decoded as a signal) or an error
// bounce, queued for the Handler. Others (chat, normal, groupchat) are not
// for the bot.
func (c *Client) receive(ctx context.Context, q *inbox, r xml.TokenReader, start *xml.StartElement) {
	log := zerolog.Ctx(ctx)
	msg, err := stanza.NewMessage(*start)
	if err != nil {
		log.Debug().Err(err).Msg("Ignored a message with a bad address")
		return
	}
	m := Message{From: msg.From, To: msg.To, Type: msg.Type, ID: msg.ID}
	switch msg.Type {
	case stanza.HeadlineMessage:
		m.Signal, m.Err = qbsignal.DecodeElement(*start, r)
		ev := log.Debug()
		if m.Err != nil && !errors.Is(m.Err, qbsignal.ErrNotSignal) && !errors.Is(m.Err, qbsignal.ErrDelayed) {
			ev = log.Warn()
		}
		ev.Stringer("from", m.From).Str("message_id", m.ID).Str("signal", string(m.Signal.Type)).
			Str("session_id", m.Signal.SessionID).AnErr("refused", m.Err).Msg("Received a headline")
	case stanza.ErrorMessage:
		m.Err = bounce(r)
		log.Debug().Stringer("from", m.From).Str("message_id", m.ID).Err(m.Err).Msg("Received an error message")
	default:
		return
	}
	if !q.putMessage(m) {
		log.Warn().Stringer("from", m.From).Str("message_id", m.ID).Int("queued", QueueSize).
			Msg("Dropped a received message: the handler is behind")
	}
}

// bounce reads the stanza error of an error message.
func bounce(r xml.TokenReader) error {
	d := xml.NewTokenDecoder(r)
	for {
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return &BounceError{Stanza: stanza.Error{Condition: stanza.UndefinedCondition}}
			}
			return fmt.Errorf("%w: reading its error: %w", ErrBounced, err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok || start.Name.Local != "error" {
			continue
		}
		var se stanza.Error
		if err := d.DecodeElement(&se, &start); err != nil {
			return fmt.Errorf("%w: reading its error: %w", ErrBounced, err)
		}
		return &BounceError{Stanza: se}
	}
}

// ackRosterPush answers a roster push (RFC 6121 2.1.6) with a result.
func ackRosterPush(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
	_, err := xmlstream.Copy(t, iq.Result(nil))
	return err
}

// fetchRoster gets the roster and throws it away: the bot keeps no
// contacts, but a server may treat a session that never asked as one
// that wants no presence (and the SDK asks).
func fetchRoster(ctx context.Context, sess *xmpp.Session) error {
	iter := roster.Fetch(ctx, sess)
	for iter.Next() {
	}
	err := iter.Err()
	if cerr := iter.Close(); err == nil {
		err = cerr
	}
	return err
}

// ping pings the server; no answer before ctx's deadline (PingTimeout) is
// a dead link.
func (c *Client) ping(ctx context.Context, sess *xmpp.Session) error {
	if err := ping.Send(ctx, sess, c.addr.Domain()); err != nil {
		return fmt.Errorf("pinging the server (no answer in %s: a dead link?): %w", c.cfg.PingTimeout, err)
	}
	return nil
}
