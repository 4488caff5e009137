package sip

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
)

// Config is one Conn's identity and callbacks.
type Config struct {
	// LocalAccount is our 40-hex Jami account id: the From user. jamid
	// takes a call only if it is the account that issued the TLS
	// certificate of the connection (newIncomingCall looks the caller up
	// by (From user, device)).
	LocalAccount string
	// LocalDevice is our device id: the Contact user, as jamid puts its
	// own device id there.
	LocalDevice string
	// PeerAccount is the peer's account id: the To user of our INVITEs.
	// For a channel the peer opened it is who its TLS chain says; an
	// INVITE from another From user is then refused (403), as jamid does.
	// Empty: not checked.
	PeerAccount string
	// ContactHost is the host[:port] of our Contact and Via. jamid sends
	// its in-dialog requests (BYE, re-INVITE, INFO) to our Contact through
	// pjsip's resolver, before the dialog's fixed transport is taken, so it
	// must be an IP literal (a name like ring.dht fails to resolve there),
	// and of the family of jamid's end of the connection (pjsip wants a
	// "TLS6" transport for an IPv6 target and the channel is "TLS" when
	// jamid's side is IPv4, or the reverse). Default "127.0.0.1".
	ContactHost string
	// PeerHost is the host[:port] of the To and Request-URI of our
	// INVITEs. jamid puts the connection's remote IP:port there and never
	// checks it. Default "ring.dht".
	PeerHost string
	// UserAgent is our User-Agent; default DefaultUserAgent.
	UserAgent string
	Log       zerolog.Logger

	// OnInvite is told of each new INVITE (not a re-INVITE). It runs on
	// the Conn's callback goroutine, so it must not block: answer from
	// another goroutine. Nil: INVITEs are refused with 480.
	OnInvite func(*IncomingCall)
	// OnMessage is told of a MESSAGE outside any dialog (jamid sends its
	// text messages to a device that way when it has a sip channel), by
	// From user. It is answered 200 first, as jamid does.
	OnMessage func(from, contentType string, body []byte)

	// TransactionTimeout is Timer B/F, how long a request waits for its
	// final answer; default 64*T1 = 32 s. Also how long an answered
	// incoming call waits for its ACK (Timer H).
	TransactionTimeout time.Duration
	// InfoTimeout is how long Info waits for an answer before it returns
	// (jamid answers only some INFO bodies); default 2 s.
	InfoTimeout time.Duration
}

// ErrClosed is returned once the Conn is closed or its stream ended.
var ErrClosed = errors.New("sip: connection closed")

// ErrDialogEnded is returned by a Dialog's requests once it ended.
var ErrDialogEnded = errors.New("sip: dialog ended")

// StatusError is a final answer other than 2xx.
type StatusError struct {
	Code   int
	Reason string
}

func (e *StatusError) Error() string { return fmt.Sprintf("sip: %d %s", e.Code, e.Reason) }

// Conn is the SIP user agent on one stream (a Jami "sip" channel).
type Conn struct {
	rw  io.ReadWriteCloser
	cfg Config
	log zerolog.Logger

	cb *queue // user callbacks, in order
	wq *queue // writes, in order: the reader never blocks on the stream

	mu      sync.Mutex
	closed  bool
	err     error                    // why the stream ended
	clients map[string]*clientTx     // our requests waiting for answers, by txKey
	servers map[string]*IncomingCall // INVITEs not yet answered finally, by branch
	dialogs map[dialogID]*Dialog

	closeOnce  sync.Once
	readerDone chan struct{}
	done       chan struct{}
}

type dialogID struct{ callID, local, remote string }

// NewConn starts the user agent on rw: it reads rw until Close or the end
// of the stream.
func NewConn(rw io.ReadWriteCloser, cfg Config) *Conn {
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.ContactHost == "" {
		cfg.ContactHost = "127.0.0.1"
	}
	if cfg.PeerHost == "" {
		cfg.PeerHost = "ring.dht"
	}
	if cfg.TransactionTimeout <= 0 {
		cfg.TransactionTimeout = 32 * time.Second
	}
	if cfg.InfoTimeout <= 0 {
		cfg.InfoTimeout = 2 * time.Second
	}
	c := &Conn{
		rw:         rw,
		cfg:        cfg,
		log:        cfg.Log.With().Str("component", "sip").Str("peer", cfg.PeerAccount).Logger(),
		cb:         newQueue(),
		wq:         newQueue(),
		clients:    map[string]*clientTx{},
		servers:    map[string]*IncomingCall{},
		dialogs:    map[dialogID]*Dialog{},
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	go c.readLoop()
	return c
}

// Close closes the stream and returns once the reader stopped. Callbacks
// already queued still run; Done is closed after the last one. Ending a
// dialog never closes the Conn: jamid 13.7.0 crashed when the TLS
// connection closed right after its BYE was answered, so close the Conn
// only well after the last dialog ended (or let the peer close it).
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.rw.Close() })
	<-c.readerDone
	return err
}

// Done is closed once the Conn stopped and its callbacks ran.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the Conn stopped (ErrClosed after Close), nil while it runs.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// send writes one message in one Write: jamid's channel reader mishandles
// the rest of a frame that holds more than one message (it keeps the
// wrong bytes), so each message goes in a frame of its own.
func (c *Conn) send(m gosip.Message) error {
	b := []byte(m.String())
	if len(b) > maxMessage {
		return fmt.Errorf("sip: sending %s: message of %d bytes, jamid takes at most %d", startLine(m), len(b), maxMessage)
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if e := c.log.Trace(); e.Enabled() {
		e.Str("msg", string(b)).Msg("sip send")
	}
	c.wq.push(func() {
		if _, err := c.rw.Write(b); err != nil {
			// A stream that lost part of a message is out of step for good.
			c.log.Warn().Err(err).Str("start_line", startLine(m)).Msg("sip write failed, closing the connection")
			c.closeOnce.Do(func() { _ = c.rw.Close() })
		}
	})
	return nil
}

func startLine(m gosip.Message) string {
	switch m := m.(type) {
	case *gosip.Request:
		return m.StartLine()
	case *gosip.Response:
		return m.StartLine()
	}
	return ""
}

func (c *Conn) readLoop() {
	p := gosip.NewParser().NewSIPStream()
	buf := make([]byte, 16<<10)
	var err error
	for {
		var n int
		n, err = c.rw.Read(buf)
		if n > 0 {
			c.input(p, buf[:n])
		}
		if err != nil {
			break
		}
	}
	p.Close()
	c.shutdown(err)
}

// input feeds the parser and handles every complete message. Malformed
// input is logged and what is buffered dropped: the stream has no other
// way back in step than a message starting a later read.
func (c *Conn) input(p *gosip.ParserStream, data []byte) {
	_, _ = p.Write(data)
	for p.Buffer().Len() > 0 {
		msg, err := parseNext(p)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return // wait for more
		}
		if err != nil {
			c.log.Warn().Err(err).Int("dropped_bytes", p.Buffer().Len()).Msg("malformed SIP input dropped")
			p.Discard(p.Buffer().Len())
			return
		}
		c.handle(msg)
	}
}

// parseNext guards the reader against a parser panic on hostile input.
func parseNext(p *gosip.ParserStream) (msg gosip.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sip parser panicked: %v", r)
		}
	}()
	msg, _, err = p.ParseNext()
	return msg, err
}

func (c *Conn) handle(msg gosip.Message) {
	if msg.CallID() == nil || msg.CSeq() == nil || msg.From() == nil || msg.To() == nil || msg.Via() == nil {
		c.log.Warn().Str("start_line", startLine(msg)).Msg("SIP message without Via, From, To, Call-ID or CSeq dropped")
		return
	}
	if e := c.log.Trace(); e.Enabled() {
		e.Str("msg", msg.String()).Msg("sip recv")
	}
	defer func() {
		// A bug of ours must not stop the reader of every call on the Conn.
		if r := recover(); r != nil {
			c.log.Error().Interface("panic", r).Str("start_line", startLine(msg)).Msg("handling a SIP message panicked")
		}
	}()
	switch m := msg.(type) {
	case *gosip.Request:
		c.handleRequest(m)
	case *gosip.Response:
		c.handleResponse(m)
	}
}

// shutdown fails what waits and ends every dialog once the stream ended.
func (c *Conn) shutdown(readErr error) {
	c.mu.Lock()
	c.closed = true
	c.err = ErrClosed
	if readErr != nil && !errors.Is(readErr, io.EOF) {
		c.err = fmt.Errorf("%w: %w", ErrClosed, readErr)
	}
	clients, servers, dialogs := c.clients, c.servers, c.dialogs
	c.clients, c.servers, c.dialogs = map[string]*clientTx{}, map[string]*IncomingCall{}, map[dialogID]*Dialog{}
	err := c.err
	c.mu.Unlock()

	c.log.Debug().Err(readErr).Msg("sip connection ended")
	for _, tx := range clients {
		tx.finish(nil, err)
	}
	for _, ic := range servers {
		ic.connClosed()
	}
	for _, d := range dialogs {
		d.end(EndInfo{Code: 0, Err: err})
	}
	c.closeOnce.Do(func() { _ = c.rw.Close() })
	close(c.readerDone)
	c.wq.close()
	c.cb.close()
	<-c.wq.done
	<-c.cb.done
	close(c.done)
}
