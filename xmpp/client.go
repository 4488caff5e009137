package xmpp

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/voipbot/voipbot/xmpp/qbsignal"
)

// ErrNotConnected: Send while no session is ready. Nothing is queued: a
// signal that waited for a reconnection would be stale (the SDK re-sends
// its calls every 5 s; the leg on top decides what to send again).
var ErrNotConnected = errors.New("xmpp: not connected")

// Timings of a session's life.
const (
	// stableSession is how long a session must have lasted for the next
	// failure to start the backoff afresh (a server that takes the login
	// and then drops it, or two clients kicking each other off one
	// resource, would otherwise be retried at ReconnectMin forever).
	stableSession = time.Minute
	// closeWait is how long an orderly close waits for the server to
	// close its stream.
	closeWait = 2 * time.Second
)

// Client keeps one account logged in while Run runs.
type Client struct {
	cfg    Config
	addr   jid.JID // the bare JID with the configured resource, if any
	server string  // host:port
	h      Handler

	mu        sync.Mutex
	sess      *xmpp.Session // the ready session, or nil
	bound     jid.JID       // its full JID
	lastErr   error
	connected atomic.Bool
	noTLS     atomic.Bool // the server offered no STARTTLS last time
}

// New checks cfg and makes a client; Run connects it.
func New(cfg Config, h Handler) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("xmpp: a nil Handler")
	}
	cfg = cfg.withDefaults()
	addr, err := jid.Parse(cfg.JID)
	if err != nil {
		return nil, fmt.Errorf("xmpp.jid: %w", err)
	}
	if cfg.Resource != "" {
		if addr, err = addr.WithResource(cfg.Resource); err != nil {
			return nil, fmt.Errorf("xmpp.resource: %w", err)
		}
	}
	server := cfg.Server
	if server == "" {
		server = net.JoinHostPort(addr.Domainpart(), DefaultPort)
	}
	return &Client{cfg: cfg, addr: addr, server: server, h: h}, nil
}

// Run logs in and stays logged in until ctx ends: after any failure or
// loss of the session it waits (see Config.ReconnectMin) and tries again.
// It returns nil when ctx ends, once every goroutine it started has
// stopped and the Handler has had its last call.
func (c *Client) Run(ctx context.Context) error {
	log := zerolog.Ctx(ctx).With().Str("component", "xmpp").Stringer("jid", c.addr.Bare()).Str("server", c.server).Logger()
	ctx = log.WithContext(ctx)
	q := newInbox()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		q.run(ctx, c.h)
	}()
	defer func() {
		q.close()
		wg.Wait()
	}()

	b := newBackoff(c.cfg.ReconnectMin, c.cfg.ReconnectMax)
	for {
		up, err := c.runSession(ctx, q)
		if ctx.Err() != nil {
			return nil
		}
		if up >= stableSession {
			b.reset()
		}
		wait := b.next()
		c.setErr(err)
		ev := log.Warn()
		if errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrPlaintextRefused) {
			ev = log.Error() // needs a person: the password, the account, the server's TLS
		}
		ev.Err(err).Dur("session", up).Dur("retry_in", wait).Msg("XMPP session failed or lost; reconnecting")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// runSession connects, serves the session until it fails or ctx ends, and
// says how long it was ready.
func (c *Client) runSession(ctx context.Context, q *inbox) (time.Duration, error) {
	log := zerolog.Ctx(ctx)
	cn, err := c.connect(ctx)
	if err != nil {
		return 0, err
	}
	served := make(chan struct{})
	var serveErr error
	go func() {
		defer close(served)
		serveErr = cn.sess.Serve(c.handler(ctx, q))
	}()
	defer c.teardown(ctx, cn, served)

	if err = c.announce(ctx, cn); err != nil {
		return 0, err
	}
	start := time.Now()
	c.setReady(cn.sess, nil)
	q.putState(true)
	log.Info().Stringer("bound", cn.sess.LocalAddr()).Bool("tls", cn.sess.ConnectionState().Version != 0).Msg("XMPP session ready")
	err = c.keepAlive(ctx, cn, served, &serveErr)
	up := time.Since(start)
	c.setReady(nil, err)
	q.putState(false)
	return up, err
}

// announce does what makes the server deliver: a roster get (as the SDK
// does; a server without rosters is let be), then initial presence, then
// a ping that proves the server has taken it.
func (c *Client) announce(ctx context.Context, cn *conn) error {
	rctx := cn.timeout(ctx, c.cfg.PingTimeout)
	sess := cn.sess
	if err := fetchRoster(rctx, sess); err != nil {
		if isIOError(err) {
			return fmt.Errorf("getting the roster: %w", err)
		}
		zerolog.Ctx(ctx).Warn().Err(err).Msg("The server refused the roster get; going on")
	}
	if err := sess.Send(rctx, stanza.Presence{}.Wrap(nil)); err != nil {
		return fmt.Errorf("sending initial presence: %w", err)
	}
	// A server handles a stream's stanzas in order: once a ping sent after
	// the presence is answered, the presence has been processed, and
	// messages to the bare JID reach this session (a headline sent to a
	// user with no available resource is dropped, RFC 6121 8.5.2.1.1). So
	// "ready" means reachable, not just logged in.
	if err := c.ping(cn.timeout(ctx, c.cfg.PingTimeout), sess); err != nil {
		return fmt.Errorf("after initial presence: %w", err)
	}
	return nil
}

// keepAlive pings the server every PingInterval until the session ends,
// a ping goes unanswered for PingTimeout, or ctx ends.
func (c *Client) keepAlive(ctx context.Context, cn *conn, served <-chan struct{}, serveErr *error) error {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-served:
			if *serveErr != nil {
				return fmt.Errorf("reading the stream: %w", *serveErr)
			}
			return errors.New("the server closed the stream")
		case <-t.C:
			if err := c.ping(cn.pingTimeout(ctx, c.cfg.PingTimeout), cn.sess); err != nil {
				return err
			}
		}
	}
}

// teardown ends a session: when ctx ended, by closing the stream and
// waiting (a little) for the server to close its own; then the
// connection, and the read loop.
func (c *Client) teardown(ctx context.Context, cn *conn, served <-chan struct{}) {
	if ctx.Err() != nil {
		// (Not SetCloseDeadline: in mellium v0.22.0 it races with Serve.)
		if err := cn.sess.Close(); err == nil {
			t := time.NewTimer(closeWait)
			select {
			case <-served:
			case <-t.C:
			}
			t.Stop()
		}
	}
	_ = cn.raw.Close()
	<-served
	cn.cancelAll()
}

// setReady records the ready session, or its end and why.
func (c *Client) setReady(sess *xmpp.Session, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess, c.lastErr = sess, err
	c.bound = jid.JID{}
	if sess != nil {
		c.bound = sess.LocalAddr()
	}
	c.connected.Store(sess != nil)
}

func (c *Client) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err
}

func (c *Client) session() *xmpp.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// Connected reports whether a session is ready.
func (c *Client) Connected() bool { return c.connected.Load() }

// JID is the bound full JID while connected (the zero JID otherwise).
func (c *Client) JID() jid.JID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bound
}

// LastError is why the last session failed or ended, nil while connected
// and before the first try (for a health check: ErrAuthFailed needs a
// person).
func (c *Client) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Send sends sig to the bare JID of to (every available resource of the
// peer gets it), as a headline with a new message id, as the SDK does. It
// returns ErrNotConnected, without waiting, when no session is ready.
func (c *Client) Send(ctx context.Context, to jid.JID, sig qbsignal.Signal) error {
	payload, err := qbsignal.EncodeTokens(sig)
	if err != nil {
		return fmt.Errorf("encoding the %s signal: %w", sig.Type, err)
	}
	msg := stanza.Message{To: to.Bare(), Type: stanza.HeadlineMessage, ID: qbsignal.NewMessageID()}
	if err := c.SendElement(ctx, msg.Wrap(payload)); err != nil {
		return fmt.Errorf("sending the %s signal of %s to %s: %w", sig.Type, sig.SessionID, to.Bare(), err)
	}
	zerolog.Ctx(ctx).Debug().Str("signal", string(sig.Type)).Str("session_id", sig.SessionID).
		Stringer("to", to.Bare()).Str("message_id", msg.ID).Msg("Sent QuickBlox signal")
	return nil
}

// SendElement sends one stanza that r gives (its first element) on the
// ready session, or returns ErrNotConnected.
func (c *Client) SendElement(ctx context.Context, r xml.TokenReader) error {
	sess := c.session()
	if sess == nil {
		return ErrNotConnected
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Not ctx itself (see conn.later): the write has a deadline of its
	// own, PingTimeout, after which the session is given up.
	return sess.Send(context.WithoutCancel(ctx), r)
}
