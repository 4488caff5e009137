package sip

import (
	"context"
	"sync"
	"time"

	gosip "github.com/emiago/sipgo/sip"
)

// clientTx is one request of ours waiting for its final answer. On a
// reliable stream there is nothing to retransmit: it is only a place for
// the reader to put the answers, and Timer B/F in the waiter.
type clientTx struct {
	key string
	req *gosip.Request

	prov chan int // provisional codes; dropped if the waiter lags

	// onFinal (INVITE only) runs on the reader when the final answer
	// comes, before anything after it is read: it ACKs and makes the
	// dialog, so a BYE right behind a 200 finds it. Its Dialog goes to the
	// waiter with the answer.
	onFinal func(*gosip.Response) *Dialog

	mu         sync.Mutex
	finished   bool
	gotProv    bool
	cancelNext bool // the waiter gave up before any 1xx: CANCEL on the first
	abandoned  bool // the waiter gave up
	// hangUp: a dialog made after the waiter gave up is hung up (an
	// initial INVITE whose CANCEL crossed the 2xx).
	hangUp bool
	final  chan txResult
}

type txResult struct {
	res *gosip.Response
	d   *Dialog
	err error
}

func txKey(branch string, method gosip.RequestMethod) string { return branch + " " + string(method) }

// start registers a transaction for req (which has its Via) and sends req.
func (c *Conn) start(req *gosip.Request, onFinal func(*gosip.Response) *Dialog) (*clientTx, error) {
	tx := &clientTx{
		key:     txKey(branchOf(req), req.Method),
		req:     req,
		prov:    make(chan int, 8),
		onFinal: onFinal,
		final:   make(chan txResult, 1),
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.clients[tx.key] = tx
	c.mu.Unlock()
	if err := c.send(req); err != nil {
		c.forget(tx)
		return nil, err
	}
	return tx, nil
}

func (c *Conn) forget(tx *clientTx) {
	c.mu.Lock()
	if c.clients[tx.key] == tx {
		delete(c.clients, tx.key)
	}
	c.mu.Unlock()
}

// finish hands the final outcome to the waiter, once.
func (tx *clientTx) finish(res *gosip.Response, err error) {
	var d *Dialog
	if res != nil && tx.onFinal != nil {
		d = tx.onFinal(res)
	}
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.finished {
		return
	}
	tx.finished = true
	if tx.abandoned {
		if d != nil && tx.hangUp {
			d.log.Info().Msg("call answered after we gave up: hanging up")
			go func() { _ = d.Bye(context.Background()) }()
		}
		return
	}
	tx.final <- txResult{res: res, d: d, err: err}
}

func (c *Conn) handleResponse(res *gosip.Response) {
	key := txKey(branchOf(res), res.CSeq().MethodName)
	c.mu.Lock()
	tx := c.clients[key]
	if tx != nil && res.StatusCode >= 200 {
		delete(c.clients, key)
	}
	c.mu.Unlock()
	if tx == nil {
		if res.CSeq().MethodName == gosip.INVITE && res.IsSuccess() {
			// A repeated 2xx: its ACK was lost or is late; ACK again.
			if d := c.dialogOf(res.CallID().Value(), tagOf(res.From().Params), tagOf(res.To().Params)); d != nil {
				d.reAck(res)
				return
			}
		}
		c.log.Debug().Str("start_line", res.StartLine()).Str("cseq", res.CSeq().Value()).Msg("SIP response matching no request dropped")
		return
	}
	if res.StatusCode < 200 {
		tx.mu.Lock()
		tx.gotProv = true
		cancel := tx.cancelNext
		tx.cancelNext = false
		tx.mu.Unlock()
		if cancel {
			c.sendCancel(tx.req)
		}
		select {
		case tx.prov <- res.StatusCode:
		default:
		}
		return
	}
	tx.finish(res, nil)
}

// await waits for tx's final answer for at most timeout, or ctx. On
// timeout or ctx, an INVITE is cancelled (its final answer, when it
// comes, is still ACKed by the reader); other requests are forgotten.
func (c *Conn) await(ctx context.Context, tx *clientTx, timeout time.Duration, progress func(int)) (txResult, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case code := <-tx.prov:
			if progress != nil {
				progress(code)
			}
		case r := <-tx.final:
			return r, r.err
		case <-t.C:
			c.abandon(tx)
			return txResult{}, &StatusError{Code: 408, Reason: "Request Timeout"}
		case <-ctx.Done():
			c.abandon(tx)
			return txResult{}, ctx.Err()
		}
	}
}

// abandon gives up waiting for tx. An INVITE stays known to the reader
// for one more Timer B, so its final answer is ACKed (and a 2xx's dialog
// hung up by onFinal); it is CANCELled now, or at its first provisional
// answer, as RFC 3261 9.1 wants one before a CANCEL.
func (c *Conn) abandon(tx *clientTx) {
	if tx.req.Method != gosip.INVITE {
		c.forget(tx)
		tx.mu.Lock()
		tx.abandoned = true
		tx.mu.Unlock()
		return
	}
	tx.mu.Lock()
	tx.abandoned = true
	finished := tx.finished
	prov := tx.gotProv
	if !prov {
		tx.cancelNext = true
	}
	tx.mu.Unlock()
	if finished {
		return
	}
	if prov {
		c.sendCancel(tx.req)
	}
	time.AfterFunc(c.cfg.TransactionTimeout, func() { c.forget(tx) })
}

// sendCancel cancels an INVITE (RFC 3261 9.1): same Request-URI, Call-ID,
// From, To, CSeq number and top Via as the INVITE.
func (c *Conn) sendCancel(inv *gosip.Request) {
	req := gosip.NewRequest(gosip.CANCEL, inv.Recipient)
	req.AppendHeader(gosip.HeaderClone(inv.Via()))
	req.AppendHeader(header("Max-Forwards", "70"))
	req.AppendHeader(gosip.HeaderClone(inv.From()))
	req.AppendHeader(gosip.HeaderClone(inv.To()))
	req.AppendHeader(gosip.HeaderClone(inv.CallID()))
	req.AppendHeader(&gosip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: gosip.CANCEL})
	req.AppendHeader(header("User-Agent", c.cfg.UserAgent))
	req.SetBody(nil)
	if err := c.send(req); err != nil {
		c.log.Debug().Err(err).Msg("sending CANCEL")
	}
}

// ackNon2xx is the ACK a client transaction sends for a non-2xx final
// answer to an INVITE (RFC 3261 17.1.1.3): same branch, the answer's To.
func (c *Conn) ackNon2xx(inv *gosip.Request, res *gosip.Response) {
	req := gosip.NewRequest(gosip.ACK, inv.Recipient)
	req.AppendHeader(gosip.HeaderClone(inv.Via()))
	req.AppendHeader(header("Max-Forwards", "70"))
	req.AppendHeader(gosip.HeaderClone(inv.From()))
	req.AppendHeader(gosip.HeaderClone(res.To()))
	req.AppendHeader(gosip.HeaderClone(inv.CallID()))
	req.AppendHeader(&gosip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: gosip.ACK})
	req.AppendHeader(header("User-Agent", c.cfg.UserAgent))
	req.SetBody(nil)
	if err := c.send(req); err != nil {
		c.log.Debug().Err(err).Msg("sending ACK")
	}
}
