package matrixcall

import (
	"github.com/prometheus/client_golang/prometheus"
)

// callMetrics are the call side's Prometheus series: what the bot turned
// down or threw away, so that a flood shows on a dashboard rather than in
// the logs.
type callMetrics struct {
	// refusals counts invites turned down, by why and by what was done:
	// "declined" (the caller was sent a reject) or "silent" (nothing was
	// sent: over the sender's refusal budget, or others in the room may
	// answer).
	refusals *prometheus.CounterVec
	// earlyDropped counts candidate events for unknown calls that were not
	// kept, by why; earlyTrimmed the candidates cut from events that were.
	earlyDropped *prometheus.CounterVec
	earlyTrimmed prometheus.Counter
	earlyBytes   prometheus.Gauge
	// sendGiveUps counts call events the bot gave up sending, by whether
	// the homeserver refused them for good or failed until the last try.
	sendGiveUps *prometheus.CounterVec
	// notices counts missed-call notices folded into a later summary.
	noticesFolded prometheus.Counter
}

func newCallMetrics(reg prometheus.Registerer) *callMetrics {
	m := &callMetrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbot_call_refusals_total",
			Help: "Invites turned down before an answer, by reason (not_allowed, unusable_offer, busy) and action (declined: a reject was sent; silent: nothing was sent).",
		}, []string{"reason", "action"}),
		earlyDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbot_early_candidate_events_dropped_total",
			Help: "Candidate events for calls the bot does not know that were not kept for a later invite, by reason (sender_full, buffer_full, expired, refused_call, not_allowed).",
		}, []string{"reason"}),
		earlyTrimmed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voipbot_early_candidates_trimmed_total",
			Help: "Candidates cut from kept early candidate events (beyond the number an invite can use, or too long).",
		}),
		earlyBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "voipbot_early_candidates_bytes",
			Help: "Bytes of candidates held for calls whose invite has not come.",
		}),
		sendGiveUps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbot_call_send_failures_total",
			Help: "Call events the bot gave up sending, by kind (permanent: the homeserver refused it; transient: it failed on every try).",
		}, []string{"kind"}),
		noticesFolded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voipbot_missed_call_notices_folded_total",
			Help: "Missed-call notices not sent on their own but counted in a summary notice.",
		}),
	}
	reg.MustRegister(m.refusals, m.earlyDropped, m.earlyTrimmed, m.earlyBytes, m.sendGiveUps, m.noticesFolded)
	return m
}
