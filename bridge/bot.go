// Package bridge is where Matrix meets media: call state machines, the busy
// policy, room commands, and the wiring of call legs. It is the only package
// that knows both sides.
package bridge

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"

	"github.com/voipbot/voipbot/jami"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/store"
	"github.com/voipbot/voipbot/voip"
)

// BuildInfo identifies the running binary.
type BuildInfo struct {
	Version   string
	Commit    string
	BuildTime string
}

// Bot is the bridge: it answers room commands and will run calls.
type Bot struct {
	cfg      Config
	mx       *matrix.Client
	store    *store.Store
	media    *voip.Engine
	build    BuildInfo
	started  time.Time
	log      zerolog.Logger
	commands []command
	counts   *prometheus.CounterVec
	calls    *callManager
	dht      *dhtService // nil unless jami.enabled
	dhtStats *dhtCollector
}

// New creates the bridge and registers its handlers and metrics; call it
// before mx.Start. ctx bounds the bridge's life.
func New(ctx context.Context, cfg Config, mx *matrix.Client, st *store.Store, media *voip.Engine, build BuildInfo, reg prometheus.Registerer, log zerolog.Logger) *Bot {
	b := &Bot{
		cfg:     cfg,
		mx:      mx,
		store:   st,
		media:   media,
		build:   build,
		started: time.Now(),
		log:     log,
		counts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbot_commands_total",
			Help: "Room commands received, by command and result (ok; invalid: not done as asked, answered; refused: sender not allowed; unknown; error: the bot failed).",
		}, []string{"command", "result"}),
	}
	b.commands = b.commandTable()
	b.dhtStats = &dhtCollector{}
	reg.MustRegister(b.counts, &callCollector{store: st}, b.dhtStats)
	mx.On(event.EventMessage, b.isCommand, b.handleCommand)
	b.calls = newCallManager(ctx, cfg.Calls, mx, st, media, newCallMetrics(reg), log)
	b.calls.ice.fetch = mx.TURN
	b.calls.register(mx)
	return b
}

// Start ends the calls a previous run left active (their media died with
// it), and starts the DHT node if jami.enabled; call it once the Matrix
// client is logged in.
func (b *Bot) Start(ctx context.Context, jamiCfg jami.Config) error {
	if jamiCfg.Enabled {
		var err error
		if b.dht, err = startDHT(ctx, jamiCfg, b.store, b.log); err != nil {
			return fmt.Errorf("starting the DHT node: %w", err)
		}
		b.dhtStats.svc.Store(b.dht)
	}
	if err := b.calls.endStale(ctx); err != nil {
		return fmt.Errorf("ending calls left from the last run: %w", err)
	}
	if b.cfg.Calls.HomeserverTURN {
		// The first fetch is made now, so that the first call has TURN.
		next, _ := b.calls.ice.refreshOnce(ctx, 0)
		go b.calls.ice.run(ctx, next)
	}
	return nil
}

// Stop hangs up every call and waits, up to ctx, until they have ended;
// then it stops the DHT node.
func (b *Bot) Stop(ctx context.Context) {
	b.calls.shutdown(ctx)
	if b.dht != nil {
		b.dht.Stop(ctx)
	}
}

// callCollector reports calls by state from the database at scrape time, so
// the series can never disagree with the call table.
type callCollector struct {
	store *store.Store
}

var callsDesc = prometheus.NewDesc("voipbot_calls", "Calls not yet ended, by state.", []string{"state"}, nil)

func (c *callCollector) Describe(ch chan<- *prometheus.Desc) { ch <- callsDesc }

func (c *callCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.store.CountCallsByState(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(callsDesc, err)
		return
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(callsDesc, prometheus.GaugeValue, float64(n), state)
	}
}
