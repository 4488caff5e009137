package xmpp

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"mellium.im/sasl"
	"mellium.im/xmpp"
)

// connectTimeout bounds a connection and its negotiation (TCP, STARTTLS,
// SASL, bind).
const connectTimeout = 30 * time.Second

// ErrAuthFailed: the server refused the login (a wrong password, an
// unknown account), or there was no SASL mechanism in common. Retrying
// will not help until the configuration or the server changes.
var ErrAuthFailed = errors.New("xmpp: authentication failed")

// errNoStartTLS: the server's first features list offered no STARTTLS;
// errStartTLSOffered: a plaintext try found it offered after all.
var (
	errNoStartTLS      = errors.New("the server offers no STARTTLS")
	errStartTLSOffered = errors.New("the server offers STARTTLS now")
)

// connect dials the server and negotiates a session: with STARTTLS when
// the server offers it; without, when plaintext is allowed, on a second
// connection (mellium's negotiator sends STARTTLS unasked, to resist a
// downgrade, so the first is given up as soon as the offer is missing).
// A server found without STARTTLS is tried in plaintext first the next
// time (one connection, not two), until it offers STARTTLS again.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	// The timeout is cancelled when the session ends, not when it is
	// ready (lateCancel).
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	cn, err := c.connectWith(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	cn.later = append(cn.later, cancel)
	return cn, nil
}

func (c *Client) connectWith(ctx context.Context) (*conn, error) {
	log := zerolog.Ctx(ctx)
	if c.cfg.AllowPlaintext && c.noTLS.Load() {
		cn, err := c.negotiate(ctx, true)
		if !errors.Is(err, errStartTLSOffered) {
			return cn, err
		}
		log.Info().Msg("The server offers STARTTLS now")
		c.noTLS.Store(false)
	}
	cn, err := c.negotiate(ctx, false)
	if errors.Is(err, errNoStartTLS) {
		if !c.cfg.AllowPlaintext {
			return nil, fmt.Errorf("%w: %s offers no STARTTLS (xmpp.allow_plaintext allows a loopback server without)", ErrPlaintextRefused, c.server)
		}
		log.Info().Msg("The server offers no STARTTLS: plaintext sessions on loopback")
		c.noTLS.Store(true)
		cn, err = c.negotiate(ctx, true)
	}
	return cn, err
}

// conn is a negotiated session and its TCP connection.
type conn struct {
	raw  net.Conn
	sess *xmpp.Session
	// later are the cancels of the contexts given to the session's calls,
	// called when it ends. mellium v0.22.0 watches a call's context in a
	// goroutine which, when it finds the context done just as the call
	// returns, sets the connection's deadline in the past for an instant,
	// failing whatever read or write is under way: a context cancelled
	// long after its call cannot.
	later []context.CancelFunc
	// lastPing cancels the last ping's context: at the next ping (pings
	// would pile up in later) or at the end.
	lastPing context.CancelFunc
}

// pingTimeout is timeout for a ping, cancelling the last one's.
func (cn *conn) pingTimeout(ctx context.Context, d time.Duration) context.Context {
	if cn.lastPing != nil {
		cn.lastPing()
	}
	ctx, cn.lastPing = context.WithTimeout(ctx, d)
	return ctx
}

// timeout is a context of d for a call on the session, cancelled when the
// session ends.
func (cn *conn) timeout(ctx context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(ctx, d)
	cn.later = append(cn.later, cancel)
	return ctx
}

func (cn *conn) cancelAll() {
	for _, cancel := range cn.later {
		cancel()
	}
	if cn.lastPing != nil {
		cn.lastPing()
	}
	cn.later, cn.lastPing = nil, nil
}

func (c *Client) negotiate(ctx context.Context, plaintext bool) (*conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", c.server)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", c.server, err)
	}
	if plaintext {
		// What the name resolved to, not what it says.
		if a, ok := raw.RemoteAddr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
			_ = raw.Close()
			return nil, fmt.Errorf("%w: %s is %s, not on loopback", ErrPlaintextRefused, c.server, raw.RemoteAddr())
		}
	}
	var features []xmpp.StreamFeature
	state := xmpp.SessionState(0)
	if plaintext {
		// mellium negotiates SASL on a secure session only: on loopback
		// the session counts as one. PLAIN would give the password away.
		state = xmpp.Secure
		features = []xmpp.StreamFeature{startTLSNotOffered(), c.saslFeature(sasl.ScramSha256, sasl.ScramSha1), xmpp.BindResource()}
	} else {
		features = []xmpp.StreamFeature{startTLSOffered(c.tlsConfig()), c.saslFeature(sasl.ScramSha256, sasl.ScramSha1, sasl.Plain), xmpp.BindResource()}
	}
	// mellium's own watch of ctx (a deadline in the past, reset at once)
	// can miss a read that is blocked: closing the connection cannot.
	unwatch := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer unwatch()
	wrapped := &deadlineConn{Conn: raw, timeout: c.cfg.PingTimeout}
	sess, err := xmpp.NewSession(ctx, c.addr.Domain(), c.addr, wrapped, state,
		xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Lang: "en", Features: features}
		}))
	if err != nil {
		_ = raw.Close()
		if ctx.Err() != nil && !errors.Is(err, ErrAuthFailed) {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("logging in to %s as %s: %w", c.server, c.addr.Bare(), err)
	}
	if !unwatch() {
		return nil, fmt.Errorf("logging in to %s as %s: %w", c.server, c.addr.Bare(), ctx.Err())
	}
	return &conn{raw: raw, sess: sess}, nil
}

func (c *Client) tlsConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.cfg.TLS != nil {
		cfg = c.cfg.TLS.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = c.addr.Domainpart()
	}
	return cfg
}

// startTLSOffered is mellium's STARTTLS that fails with errNoStartTLS,
// having sent nothing, where the server did not offer it. (One feature per
// connection: it remembers the offer.)
func startTLSOffered(cfg *tls.Config) xmpp.StreamFeature {
	f := xmpp.StartTLS(cfg)
	offered := false
	parse, negotiate := f.Parse, f.Negotiate
	f.Parse = func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, any, error) {
		offered = true
		return parse(ctx, d, start)
	}
	f.Negotiate = func(ctx context.Context, s *xmpp.Session, data any) (xmpp.SessionState, io.ReadWriter, error) {
		if !offered {
			return 0, nil, errNoStartTLS
		}
		return negotiate(ctx, s, data)
	}
	return f
}

// startTLSNotOffered is a STARTTLS that is never negotiated (the session
// counts as secure already) and fails the login with errStartTLSOffered
// if the server lists it: a plaintext try gives way to one with TLS.
func startTLSNotOffered() xmpp.StreamFeature {
	f := xmpp.StartTLS(nil)
	f.Parse = func(context.Context, *xml.Decoder, *xml.StartElement) (bool, any, error) {
		return false, nil, errStartTLSOffered
	}
	f.Negotiate = nil
	return f
}

// saslFeature is mellium's SASL whose refusals are ErrAuthFailed, naming
// what the server offered when nothing matched.
func (c *Client) saslFeature(mechs ...sasl.Mechanism) xmpp.StreamFeature {
	f := xmpp.SASL("", c.cfg.Password, mechs...)
	var offered []string
	parse, negotiate := f.Parse, f.Negotiate
	f.Parse = func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, any, error) {
		req, data, err := parse(ctx, d, start)
		offered, _ = data.([]string)
		return req, data, err
	}
	f.Negotiate = func(ctx context.Context, s *xmpp.Session, data any) (xmpp.SessionState, io.ReadWriter, error) {
		mask, rw, err := negotiate(ctx, s, data)
		if err == nil || isIOError(err) {
			return mask, rw, err
		}
		names := make([]string, len(mechs))
		for i, m := range mechs {
			names[i] = m.Name
		}
		return mask, rw, fmt.Errorf("%w: %w (the client offers %s, the server %s)", ErrAuthFailed, err,
			strings.Join(names, " "), strings.Join(offered, " "))
	}
	return f
}

// isIOError reports whether err is the connection failing, not an answer.
func isIOError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne)
}

// deadlineConn gives each write a deadline, so that a peer that stops
// reading fails the write (and the session) instead of blocking a sender.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	if err := c.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
