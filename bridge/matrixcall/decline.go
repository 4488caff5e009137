package matrixcall

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/call"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/matrix/callevent"
)

// refusal is why and how an invite is turned down before it rings.
type refusal struct {
	// kind names the refusal in metrics and logs: not_allowed,
	// unusable_offer, busy.
	kind string
	// reason goes in the reject ("": a plain reject, as a person declining).
	reason callevent.HangupReason
	// why completes "Missed call from @x: …" and the call's record.
	why string
	// record keeps the call as missed and tells the room.
	record bool
}

// refuse turns an invite down before it rings. Every refusal goes this way,
// with a reject for a version 1 invite (a hangup for version 0): a caller
// that has taken no answer ignores hangups of parties it has not chosen
// (matrix-js-sdk does), so it would ring until its invite expired. Nothing
// is sent when others in the room may answer the invite, nor beyond the
// caller's refusal budget (a flood rings out on its own).
func (cm *Manager) refuse(ctx context.Context, evt *matrix.Event, inv *callevent.Invite, r refusal) {
	log := zerolog.Ctx(ctx).With().Str("call_id", string(inv.CallID)).Stringer("sender", evt.Sender).Str("refusal", r.kind).Logger()
	cm.early.refuse(callKey{evt.RoomID, inv.CallID}, cm.now())
	silent := func(because string) {
		log.Debug().Str("why", r.why).Str("because", because).Msg("Not declining a call out loud")
		cm.metrics.refusals.WithLabelValues(r.kind, "silent").Inc()
	}
	if !cm.mayDecline(ctx, evt, inv) {
		silent("it is for anyone in the room, and others may answer")
		return
	}
	if !cm.budget.allow(evt.Sender) {
		silent("the caller is over its refusal budget")
		return
	}
	select {
	case cm.refusing <- struct{}{}:
	default:
		silent("too many rejects are being sent")
		return
	}
	m, _ := call.NewInbound(cm.options(evt.RoomID, inv.CallID), evt.Sender, inv, evt.Age(cm.now()))
	effects, err := m.Decline(r.reason, r.why)
	if err != nil {
		<-cm.refusing
		log.Err(err).Msg("Cannot decline a call")
		return
	}
	cm.metrics.refusals.WithLabelValues(r.kind, "declined").Inc()
	log.Info().Str("why", r.why).Msg("Declining a call")
	rec := callRecord(m, evt.ID)
	go func() {
		defer func() { <-cm.refusing }()
		sctx, cancel := context.WithTimeout(cm.ctx, time.Minute)
		defer cancel()
		for _, e := range effects {
			if s, ok := e.(call.Send); ok {
				_, _ = cm.sendCallEvent(sctx, log, evt.RoomID, s.Type, s.Content)
			}
		}
		if r.record {
			if err := cm.store.PutCall(sctx, rec); err != nil {
				log.Err(err).Msg("Failed to store a declined call")
			}
		}
	}()
	if r.record {
		cm.notices.missed(evt.RoomID, evt.Sender, r.why)
	}
}

// mayDecline says whether the bot may turn an invite down out loud: a
// reject ends the caller's call for everyone, so an invite that is for
// anyone in the room (no invitee) is declined only where nobody else could
// answer it.
func (cm *Manager) mayDecline(ctx context.Context, evt *matrix.Event, inv *callevent.Invite) bool {
	if inv.Invitee == cm.mx.UserID() {
		return true
	}
	others, err := cm.mx.OthersInRoom(ctx, evt.RoomID, evt.Sender)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Cannot tell who else is in the room; declining the call")
		return true
	}
	return others == 0
}

// sendCallEvent sends a call event, retrying what may succeed later:
// no answer, a 5xx, or a rate limit (after the wait the homeserver asks
// for). A refusal (any other 4xx: too large, forbidden, …) is final at
// once. All tries carry one transaction ID, so a try that timed out after
// the homeserver stored the event does not send it twice.
func (cm *Manager) sendCallEvent(ctx context.Context, log zerolog.Logger, room id.RoomID, t callevent.Type, c callevent.Content) (id.EventID, error) {
	txnID := matrix.NewTxnID()
	delay := sendRetryDelay
	for try := 1; ; try++ {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		evtID, err := cm.mx.SendCallEvent(tctx, room, t, c, txnID)
		cancel()
		if err == nil {
			log.Debug().Str("type", string(t)).Stringer("event_id", evtID).Int("tries", try).Msg("Sent call event")
			return evtID, nil
		}
		retry, after := matrix.RetryAfter(err)
		switch {
		case !retry:
			cm.metrics.sendGiveUps.WithLabelValues("permanent").Inc()
			log.Err(err).Str("type", string(t)).Int("tries", try).Msg("The homeserver refused a call event; not retrying")
			return "", err
		case try == sendTries || ctx.Err() != nil:
			cm.metrics.sendGiveUps.WithLabelValues("transient").Inc()
			log.Err(err).Str("type", string(t)).Int("tries", try).Msg("Giving up sending a call event")
			return "", err
		}
		wait := max(delay, after)
		log.Warn().Err(err).Str("type", string(t)).Int("try", try).Dur("retry_in", wait).Msg("Sending a call event failed; retrying")
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		delay *= 2
	}
}
