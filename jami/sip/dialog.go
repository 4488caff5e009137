package sip

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
)

// Handler is what a Dialog tells of the peer's requests. Every callback
// runs on the Conn's callback goroutine, in order, with no lock held; a
// callback that blocks holds up those behind it (on every dialog of the
// Conn), not the reader.
type Handler struct {
	// OnReInvite answers the peer's re-INVITE (hold: a=sendonly or
	// inactive; resume; a media change) with our SDP answer. An error
	// (or no OnReInvite) refuses it with 488 and the call goes on as it was.
	OnReInvite func(offer []byte) (answer []byte, err error)
	// OnInfo is a SIP INFO (already answered 200): media_control
	// (ParseMediaControl), jamid's DTMF (application/dtmf-relay), ...
	OnInfo func(contentType string, body []byte)
	// OnMessage is an in-dialog MESSAGE (already answered 200): text
	// from the peer. jamid sends one text/plain body, or several parts
	// as multipart/mixed; see MessageParts.
	OnMessage func(contentType string, body []byte)
	// OnBye is the peer hanging up (Done is closed too).
	OnBye func()
}

// EndInfo is how a dialog ended.
type EndInfo struct {
	ByPeer bool   // the peer's BYE; false: our Bye, or the connection closed
	Code   int    // 200 for a BYE, else the code that ended it (481, 408); 0 when the connection closed
	Reason string //
	Err    error  // the connection's error when it closed under the dialog
}

// Dialog is one established call.
type Dialog struct {
	c   *Conn
	id  dialogID
	log zerolog.Logger

	mu           sync.Mutex
	local        gosip.FromHeader // From of our requests, with our tag
	remote       gosip.ToHeader   // To of our requests, with the peer's tag
	remoteTarget gosip.Uri        // the peer's Contact
	localCSeq    uint32
	remoteCSeq   uint32
	haveRemote   bool // remoteCSeq is set
	inviteCSeq   uint32
	lastAck      *gosip.Request // to repeat for a repeated 2xx
	outInvite    bool           // our re-INVITE waits for its answer
	inInvite     bool           // the peer's re-INVITE waits for ours
	peerUA       string

	handler    Handler
	hasHandler bool
	held       []func(Handler) // events before SetHandler

	ack     chan struct{} // UAS: closed at the ACK of our 200
	ackOnce sync.Once
	done    chan struct{}
	endInfo EndInfo
	endOnce sync.Once
}

func (c *Conn) newDialog(id dialogID, local gosip.FromHeader, remote gosip.ToHeader, target gosip.Uri, peerUA string) *Dialog {
	d := &Dialog{
		c:            c,
		id:           id,
		log:          c.log.With().Str("call_id", id.callID).Logger(),
		local:        local,
		remote:       remote,
		remoteTarget: target,
		peerUA:       peerUA,
		ack:          make(chan struct{}),
		done:         make(chan struct{}),
	}
	return d
}

// register makes the dialog known to the reader; false if the Conn closed.
func (c *Conn) register(d *Dialog) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.dialogs[d.id] = d
	return true
}

func (c *Conn) dialogOf(callID, local, remote string) *Dialog {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dialogs[dialogID{callID, local, remote}]
}

// CallID is the dialog's Call-ID (for logs).
func (d *Dialog) CallID() string { return d.id.callID }

// PeerUserAgent is the peer's User-Agent, from its INVITE or its answer.
func (d *Dialog) PeerUserAgent() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.peerUA
}

// PeerVersion is the peer's Jami version (zero if it sent none).
func (d *Dialog) PeerVersion() Version {
	v, _ := ParseUserAgent(d.PeerUserAgent())
	return v
}

// Done is closed when the dialog ended.
func (d *Dialog) Done() <-chan struct{} { return d.done }

// End is how the dialog ended (the zero EndInfo while it runs).
func (d *Dialog) End() EndInfo {
	select {
	case <-d.done:
		return d.endInfo
	default:
		return EndInfo{}
	}
}

// SetHandler sets the callbacks. Requests that came before are held and
// told now, in order (a re-INVITE waits for its answer until then).
func (d *Dialog) SetHandler(h Handler) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handler, d.hasHandler = h, true
	for _, f := range d.held {
		d.c.cb.push(func() { f(h) })
	}
	d.held = nil
}

// deliver runs f with the handler on the callback goroutine, or holds it.
func (d *Dialog) deliver(f func(Handler)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.hasHandler {
		d.held = append(d.held, f)
		return
	}
	h := d.handler
	d.c.cb.push(func() { f(h) })
}

// end ends the dialog once; it never touches the stream (see Conn.Close).
func (d *Dialog) end(info EndInfo) bool {
	ended := false
	d.endOnce.Do(func() {
		ended = true
		d.c.mu.Lock()
		if d.c.dialogs[d.id] == d {
			delete(d.c.dialogs, d.id)
		}
		d.c.mu.Unlock()
		d.endInfo = info
		close(d.done)
		d.log.Debug().Bool("by_peer", info.ByPeer).Int("code", info.Code).Err(info.Err).Msg("dialog ended")
	})
	return ended
}

func (d *Dialog) ended() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// request builds an in-dialog request with the next CSeq (RFC 3261 12.2.1.1).
func (d *Dialog) request(method gosip.RequestMethod, ctype string, body []byte) *gosip.Request {
	d.mu.Lock()
	var seq uint32
	if method == gosip.ACK {
		seq = d.inviteCSeq
	} else {
		d.localCSeq++
		seq = d.localCSeq
	}
	if method == gosip.INVITE {
		d.inviteCSeq = seq
	}
	req := gosip.NewRequest(method, d.remoteTarget)
	req.AppendHeader(d.c.via())
	req.AppendHeader(header("Max-Forwards", "70"))
	from, to := d.local, d.remote
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	d.mu.Unlock()
	callID := gosip.CallIDHeader(d.id.callID)
	req.AppendHeader(&callID)
	req.AppendHeader(&gosip.CSeqHeader{SeqNo: seq, MethodName: method})
	if method == gosip.INVITE {
		req.AppendHeader(d.c.contact())
		req.AppendHeader(header("Allow", allowed))
	}
	req.AppendHeader(header("User-Agent", d.c.cfg.UserAgent))
	if ctype != "" {
		req.AppendHeader(header("Content-Type", ctype))
	}
	req.SetBody(body)
	return req
}

// ackFor sends the ACK of a 2xx to an INVITE of this dialog.
func (d *Dialog) ackFor(res *gosip.Response) {
	ack := d.request(gosip.ACK, "", nil)
	if cs := res.CSeq(); cs != nil {
		ack.CSeq().SeqNo = cs.SeqNo
	}
	d.mu.Lock()
	d.lastAck = ack
	d.mu.Unlock()
	if err := d.c.send(ack); err != nil {
		d.log.Debug().Err(err).Msg("sending ACK")
	}
}

func (d *Dialog) reAck(res *gosip.Response) {
	d.mu.Lock()
	ack := d.lastAck
	d.mu.Unlock()
	if ack != nil && ack.CSeq().SeqNo == res.CSeq().SeqNo {
		_ = d.c.send(ack)
	}
}

// ErrRequestPending is ReInvite's error while another re-INVITE (ours or
// the peer's) is under way.
var ErrRequestPending = errors.New("sip: a re-INVITE is already under way")

// ReInvite sends a re-INVITE with our new offer (hold, resume, media
// change) and returns the peer's answer. The peer refusing it is a
// *StatusError; 491 is glare (both sides re-INVITEd at once: RFC 3261
// 14.1 says retry after 2.1 to 4 s if we own the Call-ID, else 0 to 2 s);
// after a non-2xx the call goes on with the media as before, but a 481
// ends the dialog. ctx cancelled before the answer cancels the re-INVITE.
func (d *Dialog) ReInvite(ctx context.Context, offer []byte) ([]byte, error) {
	d.mu.Lock()
	if d.ended() {
		d.mu.Unlock()
		return nil, ErrDialogEnded
	}
	if d.outInvite || d.inInvite {
		d.mu.Unlock()
		return nil, ErrRequestPending
	}
	d.outInvite = true
	d.mu.Unlock()

	req := d.request(gosip.INVITE, "application/sdp", offer)
	tx, err := d.c.start(req, func(res *gosip.Response) *Dialog {
		// On the reader: ACK, learn the new target, let re-INVITEs go again.
		if res.IsSuccess() {
			d.mu.Lock()
			if ct := res.Contact(); ct != nil {
				d.remoteTarget = ct.Address
			}
			d.mu.Unlock()
			d.ackFor(res)
		} else {
			d.c.ackNon2xx(req, res)
		}
		d.mu.Lock()
		d.outInvite = false
		d.mu.Unlock()
		if res.StatusCode == 481 {
			d.end(EndInfo{Code: 481, Reason: res.Reason})
		}
		return d
	})
	if err != nil {
		d.mu.Lock()
		d.outInvite = false
		d.mu.Unlock()
		return nil, err
	}
	r, err := d.c.await(ctx, tx, d.c.cfg.TransactionTimeout, nil)
	if err != nil {
		return nil, err
	}
	if !r.res.IsSuccess() {
		return nil, &StatusError{Code: r.res.StatusCode, Reason: r.res.Reason}
	}
	return r.res.Body(), nil
}

// Bye hangs up: the dialog ends at once (Done is closed), and Bye waits
// for the peer's answer at most Timer F or ctx. The stream stays open.
func (d *Dialog) Bye(ctx context.Context) error {
	if !d.end(EndInfo{Code: 200, Reason: "BYE"}) {
		return ErrDialogEnded
	}
	tx, err := d.c.start(d.request(gosip.BYE, "", nil), nil)
	if err != nil {
		return err
	}
	r, err := d.c.await(ctx, tx, d.c.cfg.TransactionTimeout, nil)
	if err != nil {
		return err
	}
	if !r.res.IsSuccess() && r.res.StatusCode != 481 {
		return &StatusError{Code: r.res.StatusCode, Reason: r.res.Reason}
	}
	return nil
}

// Info sends a SIP INFO (use ContentTypeMediaControl and KeyframeRequest
// etc. for media_control). It waits for the answer at most
// Config.InfoTimeout: jamid answers 200 only to bodies it recognises, and
// no answer is not an error. A refusal is a *StatusError, except pjsip's
// "500 Unhandled by dialog usages", which jamid sends after it handled a
// request its code did not answer.
func (d *Dialog) Info(ctx context.Context, contentType string, body []byte) error {
	return d.shortRequest(ctx, gosip.INFO, contentType, body, d.c.cfg.InfoTimeout, true)
}

// Message sends a text (or other) MESSAGE in the dialog, e.g. "text/plain".
// jamid 13.7.0 shows it and then lets pjsip answer 500 "Unhandled by
// dialog usages", which counts as delivered here.
func (d *Dialog) Message(ctx context.Context, contentType string, body []byte) error {
	return d.shortRequest(ctx, gosip.MESSAGE, contentType, body, d.c.cfg.TransactionTimeout, false)
}

func (d *Dialog) shortRequest(ctx context.Context, method gosip.RequestMethod, ctype string, body []byte, timeout time.Duration, noAnswerOK bool) error {
	if d.ended() {
		return ErrDialogEnded
	}
	tx, err := d.c.start(d.request(method, ctype, body), nil)
	if err != nil {
		return err
	}
	r, err := d.c.await(ctx, tx, timeout, nil)
	var se *StatusError
	if noAnswerOK && errors.As(err, &se) && se.Code == 408 {
		d.log.Debug().Str("method", string(method)).Msg("no answer to our request (normal for jamid)")
		return nil
	}
	if err != nil {
		return err
	}
	if r.res.IsSuccess() || unhandled(r.res) {
		return nil
	}
	if r.res.StatusCode == 481 {
		d.end(EndInfo{Code: 481, Reason: r.res.Reason})
	}
	return &StatusError{Code: r.res.StatusCode, Reason: r.res.Reason}
}

// unhandled is pjsip's answer to an in-dialog request no usage took.
func unhandled(res *gosip.Response) bool {
	return res.StatusCode == 500 && strings.EqualFold(res.Reason, "Unhandled by dialog usages")
}
