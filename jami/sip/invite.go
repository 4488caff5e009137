package sip

import (
	"context"
	"fmt"

	gosip "github.com/emiago/sipgo/sip"
)

// Invite calls the peer with our SDP offer and returns the dialog and the
// peer's SDP answer once it answered 2xx (the ACK is sent by then).
// progress, if not nil, is told each provisional code (100, 180, 183) on
// the caller's goroutine. A refusal is a *StatusError (jamid: 486 busy or
// its ring timeout, 603 declined, 415/488 media it cannot take); no final
// answer in Timer B is a *StatusError 408. ctx cancelled first sends a
// CANCEL and returns ctx's error; should the peer answer 2xx anyway, that
// call is ACKed and hung up.
func (c *Conn) Invite(ctx context.Context, offer []byte, progress func(code int)) (*Dialog, []byte, error) {
	callID := gosip.CallIDHeader(token(16))
	ph, pp := splitHostPort(c.cfg.PeerHost)
	// jamid's own INVITE has Request-URI sips:IP:PORT;transport=tls and
	// To <sips:ACCOUNT@IP:PORT;transport=tls>; it reads neither but the
	// To user (the callee, used to join a conference).
	target := gosip.Uri{Scheme: "sips", User: c.cfg.PeerAccount, Host: ph, Port: pp,
		UriParams: gosip.HeaderParams{{K: "transport", V: "tls"}}}
	from := gosip.FromHeader{
		Address: gosip.Uri{Scheme: "sip", User: c.cfg.LocalAccount, Host: "ring.dht"},
		Params:  gosip.HeaderParams{{K: "tag", V: token(8)}},
	}
	to := gosip.ToHeader{Address: target}

	req := gosip.NewRequest(gosip.INVITE, target)
	req.AppendHeader(c.via())
	req.AppendHeader(header("Max-Forwards", "70"))
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(&callID)
	req.AppendHeader(&gosip.CSeqHeader{SeqNo: 1, MethodName: gosip.INVITE})
	req.AppendHeader(c.contact())
	req.AppendHeader(header("Allow", allowed))
	req.AppendHeader(header("User-Agent", c.cfg.UserAgent))
	req.AppendHeader(header("Content-Type", "application/sdp"))
	req.SetBody(offer)

	log := c.log.With().Str("call_id", string(callID)).Logger()
	tx, err := c.start(req, func(res *gosip.Response) *Dialog {
		// On the reader, before the next message is read.
		if !res.IsSuccess() {
			c.ackNon2xx(req, res)
			return nil
		}
		remote := *res.To()
		target := req.Recipient
		if ct := res.Contact(); ct != nil {
			target = ct.Address
		}
		ua := ""
		if h := res.GetHeader("User-Agent"); h != nil {
			ua = h.Value()
		}
		id := dialogID{string(callID), tagOf(from.Params), tagOf(remote.Params)}
		d := c.newDialog(id, from, remote, target, ua)
		d.localCSeq, d.inviteCSeq = 1, 1
		if !c.register(d) {
			return nil
		}
		d.ackFor(res)
		return d
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sending INVITE: %w", err)
	}
	// finish reads hangUp only once await gave up, which is after this.
	tx.mu.Lock()
	tx.hangUp = true
	tx.mu.Unlock()
	r, err := c.await(ctx, tx, c.cfg.TransactionTimeout, progress)
	if err != nil {
		// The 2xx may have been read just as we gave up: it is in
		// tx.final (finish and abandon take tx.mu, so it is there or
		// finish will hang up itself).
		select {
		case r := <-tx.final:
			if r.d != nil {
				log.Info().Msg("call answered as we gave up: hanging up")
				go func() { _ = r.d.Bye(context.Background()) }()
			}
		default:
		}
		return nil, nil, fmt.Errorf("calling %s: %w", c.cfg.PeerAccount, err)
	}
	if !r.res.IsSuccess() {
		return nil, nil, &StatusError{Code: r.res.StatusCode, Reason: r.res.Reason}
	}
	if r.d == nil {
		return nil, nil, ErrClosed
	}
	return r.d, r.res.Body(), nil
}
