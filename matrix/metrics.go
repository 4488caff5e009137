package matrix

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Matrix side's Prometheus series.
type Metrics struct {
	EventsHandled   *prometheus.CounterVec
	Errors          *prometheus.CounterVec
	HandlerSeconds  *prometheus.HistogramVec
	EventDelay      *prometheus.HistogramVec
	SyncLastSuccess prometheus.Gauge
	SyncFailures    prometheus.Counter
	Transactions    *prometheus.CounterVec
}

// NewMetrics creates the series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		EventsHandled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbot_events_handled_total",
			Help: "Events taken from the inbox, by event type and result (ok, error, ignored, undecryptable, undecodable, given_up).",
		}, []string{"type", "result"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbot_errors_total",
			Help: "Errors by component (sync, intake, handler, appservice, send).",
		}, []string{"component"}),
		HandlerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "voipbot_event_handler_seconds",
			Help:    "Time spent in event handlers, by event type.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"type"}),
		EventDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "voipbot_event_delay_seconds",
			Help: "Sync lag: stage=received is from the event's origin_server_ts to its intake, " +
				"stage=handled from its intake to the end of its handling.",
			Buckets: prometheus.ExponentialBuckets(0.005, 3, 10),
		}, []string{"stage"}),
		SyncLastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "voipbot_sync_last_success_timestamp_seconds",
			Help: "Unix time of the last /sync response or appservice transaction taken in.",
		}),
		SyncFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voipbot_sync_failures_total",
			Help: "Failed /sync requests.",
		}),
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbot_appservice_transactions_total",
			Help: "Appservice transactions received, by result (ok, duplicate, unauthorized, forbidden, bad_request, error).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.EventsHandled, m.Errors, m.HandlerSeconds, m.EventDelay, m.SyncLastSuccess, m.SyncFailures, m.Transactions)
	return m
}
