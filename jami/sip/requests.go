package sip

import (
	gosip "github.com/emiago/sipgo/sip"
)

func (c *Conn) handleRequest(req *gosip.Request) {
	if string(req.CSeq().MethodName) != string(req.Method) && req.Method != gosip.ACK && req.Method != gosip.CANCEL {
		c.respond(req, 400, "Bad Request (CSeq method)", token(8))
		return
	}
	toTag := tagOf(req.To().Params)
	switch req.Method {
	case gosip.ACK:
		if d := c.dialogOf(req.CallID().Value(), toTag, tagOf(req.From().Params)); d != nil {
			d.ackOnce.Do(func() { close(d.ack) })
		}
		// else: the ACK of a non-2xx answer of ours; nothing to do.
		return
	case gosip.CANCEL:
		c.mu.Lock()
		ic := c.servers[branchOf(req)]
		c.mu.Unlock()
		if ic == nil {
			c.respond(req, 481, "Call/Transaction Does Not Exist", toTag)
			return
		}
		c.respond(req, 200, "OK", ic.toTag)
		ic.log.Info().Msg("caller cancelled")
		ic.cancel()
		return
	}
	if toTag == "" {
		c.outOfDialog(req)
		return
	}
	d := c.dialogOf(req.CallID().Value(), toTag, tagOf(req.From().Params))
	if d == nil {
		c.respond(req, 481, "Call/Transaction Does Not Exist", toTag)
		return
	}
	d.handleRequest(req)
}

// outOfDialog is a request with no To tag.
func (c *Conn) outOfDialog(req *gosip.Request) {
	switch req.Method {
	case gosip.INVITE:
		c.newInvite(req)
	case gosip.OPTIONS:
		c.respond(req, 200, "OK", token(8), c.capabilities()...)
	case gosip.MESSAGE:
		// jamid answers 200 first too (RFC 3428 7).
		c.respond(req, 200, "OK", token(8))
		if f := c.cfg.OnMessage; f != nil {
			from, ct, body := req.From().Address.User, contentType(req), req.Body()
			c.cb.push(func() { f(from, ct, body) })
		}
	default:
		c.respond(req, 405, "Method Not Allowed", token(8), header("Allow", allowed))
	}
}

func (c *Conn) capabilities() []gosip.Header {
	return []gosip.Header{
		header("Allow", allowed),
		header("Accept", "application/sdp, application/media_control+xml, text/plain"),
		c.contact(),
	}
}

// handleRequest is a request in the dialog (RFC 3261 12.2.2).
func (d *Dialog) handleRequest(req *gosip.Request) {
	c := d.c
	seq := req.CSeq().SeqNo
	d.mu.Lock()
	if d.haveRemote && seq <= d.remoteCSeq {
		d.mu.Unlock()
		c.respond(req, 500, "Server Internal Error (CSeq out of order)", d.id.local)
		return
	}
	d.remoteCSeq, d.haveRemote = seq, true
	if ua := req.GetHeader("User-Agent"); ua != nil {
		d.peerUA = ua.Value()
	}
	d.mu.Unlock()

	switch req.Method {
	case gosip.BYE:
		c.respond(req, 200, "OK", d.id.local)
		if d.end(EndInfo{ByPeer: true, Code: 200, Reason: "BYE"}) {
			d.deliver(func(h Handler) {
				if h.OnBye != nil {
					h.OnBye()
				}
			})
		}
	case gosip.INVITE:
		d.reInvited(req)
	case gosip.INFO:
		// Always 200 (jamid never waits on it either way).
		c.respond(req, 200, "OK", d.id.local)
		ct, body := contentType(req), req.Body()
		d.deliver(func(h Handler) {
			if h.OnInfo != nil {
				h.OnInfo(ct, body)
			}
		})
	case gosip.MESSAGE:
		c.respond(req, 200, "OK", d.id.local)
		ct, body := contentType(req), req.Body()
		d.deliver(func(h Handler) {
			if h.OnMessage != nil {
				h.OnMessage(ct, body)
			}
		})
	case gosip.OPTIONS:
		c.respond(req, 200, "OK", d.id.local, c.capabilities()...)
	default:
		// REFER (transfer), UPDATE, NOTIFY, ...: not done here.
		c.respond(req, 405, "Method Not Allowed", d.id.local, header("Allow", allowed))
	}
}

// reInvited is the peer's re-INVITE: glare with ours is 491 (RFC 3261
// 14.2), one under way already is 500 with Retry-After; else the
// handler's answer goes back in a 200 (its error: 488).
func (d *Dialog) reInvited(req *gosip.Request) {
	c := d.c
	d.mu.Lock()
	switch {
	case d.outInvite:
		d.mu.Unlock()
		c.respond(req, 491, "Request Pending", d.id.local)
		return
	case d.inInvite:
		d.mu.Unlock()
		c.respond(req, 500, "Server Internal Error", d.id.local, header("Retry-After", "1"))
		return
	}
	d.inInvite = true
	if ct := req.Contact(); ct != nil {
		d.remoteTarget = ct.Address
	}
	d.mu.Unlock()

	offer := req.Body()
	if len(offer) == 0 {
		// An offer in our 200 and the answer in the ACK: jamid never does it.
		d.answerReInvite(req, 488, "Not Acceptable Here (no offer)", nil)
		return
	}
	d.deliver(func(h Handler) {
		if h.OnReInvite == nil {
			d.answerReInvite(req, 488, "Not Acceptable Here", nil)
			return
		}
		answer, err := h.OnReInvite(offer)
		if err != nil {
			d.log.Info().Err(err).Msg("re-INVITE refused")
			d.answerReInvite(req, 488, "Not Acceptable Here", nil)
			return
		}
		d.answerReInvite(req, 200, "OK", answer)
	})
}

func (d *Dialog) answerReInvite(req *gosip.Request, code int, reason string, answer []byte) {
	res := d.c.newResponse(req, code, reason, d.id.local)
	if code == 200 {
		res.AppendHeader(d.c.contact())
		res.AppendHeader(header("Allow", allowed))
		res.AppendHeader(header("Content-Type", "application/sdp"))
	}
	res.SetBody(answer)
	d.mu.Lock()
	d.inInvite = false
	d.mu.Unlock()
	if d.ended() {
		return // BYE crossed it: the peer's dialog is gone too
	}
	if err := d.c.send(res); err != nil {
		d.log.Debug().Err(err).Msg("answering re-INVITE")
	}
}
