package sip

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
)

// IncomingCall is a new INVITE from the peer, not yet answered.
type IncomingCall struct {
	c   *Conn
	req *gosip.Request
	log zerolog.Logger

	Offer       []byte // the SDP offer
	From        string // the From user: the caller's account id
	DisplayName string // the From display name, if any
	To          string // the To user (jamid: whom it calls; a conference id to join)
	UserAgent   string // the caller's User-Agent
	Version     Version

	toTag string

	mu       sync.Mutex
	final    bool // a final answer was sent, or the call was cancelled
	canceled chan struct{}
	cancelOn sync.Once
	err      error // why it ended before an answer
}

// ErrCanceled is Answer's error once the caller cancelled.
var ErrCanceled = errors.New("sip: call cancelled by the caller")

// CallID is the INVITE's Call-ID (for logs).
func (ic *IncomingCall) CallID() string { return ic.req.CallID().Value() }

// Canceled is closed when the caller gave up (its CANCEL, already
// answered 200, and the INVITE 487) or the connection closed (Err tells).
func (ic *IncomingCall) Canceled() <-chan struct{} { return ic.canceled }

// Err is ErrCanceled after the caller's CANCEL, the Conn's error if it
// closed first, else nil.
func (ic *IncomingCall) Err() error {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	return ic.err
}

func (ic *IncomingCall) respond(code int, reason string, withContact bool, ctype string, body []byte) *gosip.Response {
	res := ic.c.newResponse(ic.req, code, reason, ic.toTag)
	if withContact {
		res.AppendHeader(ic.c.contact())
		res.AppendHeader(header("Allow", allowed))
	}
	if ctype != "" {
		res.AppendHeader(header("Content-Type", ctype))
	}
	res.SetBody(body)
	return res
}

// Ringing sends 180 Ringing (jamid sends it right after its 100 Trying).
func (ic *IncomingCall) Ringing() error {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.final {
		return ic.endedErr()
	}
	return ic.c.send(ic.respond(180, "Ringing", true, "", nil))
}

func (ic *IncomingCall) endedErr() error {
	if ic.err != nil {
		return ic.err
	}
	return errors.New("sip: call already answered")
}

// Reject refuses the call: 486 Busy Here (what jamid sends to refuse, and
// at its ring timeout), 603 Decline, 480 Temporarily Unavailable, 488 Not
// Acceptable Here (media).
func (ic *IncomingCall) Reject(code int, reason string) error {
	if code < 300 || code > 699 {
		return fmt.Errorf("sip: rejecting with %d: not a failure code", code)
	}
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.final {
		return ic.endedErr()
	}
	ic.final = true
	ic.c.forgetServer(ic)
	return ic.c.send(ic.respond(code, reason, false, "", nil))
}

// Answer sends 200 OK with our SDP answer and returns the dialog once the
// caller's ACK came, or ctx ended / Timer H (Config.TransactionTimeout)
// passed without it (the call is then hung up: BYE, and an error).
func (ic *IncomingCall) Answer(ctx context.Context, answer []byte) (*Dialog, error) {
	d, err := ic.accept(answer)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(ic.c.cfg.TransactionTimeout)
	defer t.Stop()
	select {
	case <-d.ack:
		return d, nil
	case <-d.done:
		// The peer hung up (or the Conn closed) before its ACK.
		return d, nil
	case <-t.C:
		ic.log.Warn().Msg("no ACK for our 200 OK: hanging up")
		_ = d.Bye(context.Background())
		return nil, errors.New("sip: answered call got no ACK")
	case <-ctx.Done():
		go func() { _ = d.Bye(context.Background()) }()
		return nil, ctx.Err()
	}
}

// accept sends the 200 with the dialog made and known to the reader.
func (ic *IncomingCall) accept(answer []byte) (*Dialog, error) {
	ic.mu.Lock()
	if ic.final {
		ic.mu.Unlock()
		return nil, ic.endedErr()
	}
	ic.final = true
	ic.c.forgetServer(ic)
	local := ic.req.To().AsFrom()
	local.Params = local.Params.Clone()
	if local.Params == nil {
		local.Params = gosip.NewParams()
	}
	local.Params.Add("tag", ic.toTag)
	remote := ic.req.From().AsTo()
	target := ic.req.Recipient
	if ct := ic.req.Contact(); ct != nil {
		target = ct.Address
	}
	id := dialogID{ic.CallID(), ic.toTag, tagOf(ic.req.From().Params)}
	d := ic.c.newDialog(id, local, remote, target, ic.UserAgent)
	d.remoteCSeq, d.haveRemote = ic.req.CSeq().SeqNo, true
	d.inviteCSeq = ic.req.CSeq().SeqNo
	if !ic.c.register(d) {
		ic.mu.Unlock()
		return nil, ErrClosed
	}
	err := ic.c.send(ic.respond(200, "OK", true, "application/sdp", answer))
	ic.mu.Unlock()
	if err != nil {
		d.end(EndInfo{Err: err})
		return nil, fmt.Errorf("answering: %w", err)
	}
	return d, nil
}

func (c *Conn) forgetServer(ic *IncomingCall) {
	c.mu.Lock()
	if c.servers[branchOf(ic.req)] == ic {
		delete(c.servers, branchOf(ic.req))
	}
	c.mu.Unlock()
}

// cancel is the caller's CANCEL: 487 to the INVITE if not answered yet.
func (ic *IncomingCall) cancel() {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.final {
		return
	}
	ic.final = true
	ic.err = ErrCanceled
	ic.c.forgetServer(ic)
	_ = ic.c.send(ic.respond(487, "Request Terminated", false, "", nil))
	ic.cancelOn.Do(func() { close(ic.canceled) })
}

func (ic *IncomingCall) connClosed() {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.final {
		return
	}
	ic.final = true
	ic.err = ErrClosed
	ic.cancelOn.Do(func() { close(ic.canceled) })
}

// newInvite takes a new INVITE: 100 Trying at once, as jamid does, then
// OnInvite.
func (c *Conn) newInvite(req *gosip.Request) {
	branch := branchOf(req)
	from := req.From()
	if c.cfg.PeerAccount != "" && from.Address.User != c.cfg.PeerAccount {
		c.log.Warn().Str("from", from.Address.User).Msg("INVITE from another account than the connection's: refused")
		c.respond(req, 403, "Forbidden", token(8))
		return
	}
	ic := &IncomingCall{
		c:           c,
		req:         req,
		log:         c.log.With().Str("call_id", req.CallID().Value()).Logger(),
		Offer:       req.Body(),
		From:        from.Address.User,
		DisplayName: from.DisplayName,
		To:          req.To().Address.User,
		toTag:       newToTag(),
		canceled:    make(chan struct{}),
	}
	if h := req.GetHeader("User-Agent"); h != nil {
		ic.UserAgent = h.Value()
		ic.Version, _ = ParseUserAgent(ic.UserAgent)
	}
	c.mu.Lock()
	if _, dup := c.servers[branch]; dup || c.closed {
		c.mu.Unlock()
		return // a repeated INVITE: the first is being handled
	}
	c.servers[branch] = ic
	c.mu.Unlock()
	c.respond(req, 100, "Trying", "")
	ic.log.Info().Str("from", ic.From).Str("user_agent", ic.UserAgent).Msg("incoming call")
	if c.cfg.OnInvite == nil {
		_ = ic.Reject(480, "Temporarily Unavailable")
		return
	}
	c.cb.push(func() { c.cfg.OnInvite(ic) })
}

// respond sends a bodiless response (errors are only logged: the stream
// is going away then).
func (c *Conn) respond(req *gosip.Request, code int, reason, toTag string, extra ...gosip.Header) {
	res := c.newResponse(req, code, reason, toTag)
	for _, h := range extra {
		res.AppendHeader(h)
	}
	res.SetBody(nil)
	if err := c.send(res); err != nil {
		c.log.Debug().Err(err).Int("code", code).Msg("sending response")
	}
}
