// Package bridge is where Matrix meets media: call state machines, the busy
// policy, room commands, and the wiring of call legs. It is the only package
// that knows both sides.
package bridge

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/guest"
	"github.com/voipbot/voipbot/bridge/guestlink"
	"github.com/voipbot/voipbot/bridge/jamicall"
	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/bridge/matrixcall"
	"github.com/voipbot/voipbot/bridge/rtc"
	"github.com/voipbot/voipbot/bridge/whip"
	"github.com/voipbot/voipbot/bridge/xmppcall"
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
	calls    *matrixcall.Manager
	bridges  *registry
	limiter  callLimiter
	dht      *jami.Service // nil unless jami.enabled
	dhtStats *jami.Collector
	// guestWeb serves call links (nil without guests.public_url).
	guestWeb *guestWeb
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
	b.dhtStats = jami.NewCollector()
	reg.MustRegister(b.counts, &callCollector{store: st}, b.dhtStats)
	mx.On(event.EventMessage, b.isCommand, b.handleCommand)
	b.bridges = newRegistry(ctx, cfg.Calls, st, mx, log)
	b.bridges.recordDir, b.bridges.keepRecordings = media.Config().RecordDir, media.Config().KeepRecordings
	b.calls = matrixcall.New(ctx, cfg.Calls.Config, mx, st, media, b.bridges, reg, log)
	b.bridges.calls = b.calls
	b.calls.Register(mx)
	b.bridges.rtc = rtc.New(ctx, cfg.RTC, mx, log)
	b.registerRTC()
	if cfg.XMPP.Enabled {
		var err error
		// Validated with the configuration: the JID is a QuickBlox one.
		if b.bridges.xmpp, err = xmppcall.New(ctx, cfg.XMPP, media, xmppHost{b.bridges}, reg, log); err != nil {
			log.Error().Err(err).Msg("The QuickBlox leg kind is off")
		}
		b.bridges.xmppDefaultRoom = id.RoomID(cfg.XMPP.DefaultRoom)
	}
	if cfg.Guests.PublicURL != "" {
		b.guestWeb = &guestWeb{
			b: b, links: guestlink.NewManager(st, nil), limit: guestlink.NewLimiter(guestlink.LimiterConfig{}),
			guests: guest.New(ctx, guest.Config{RingTimeout: cfg.Guests.RingTimeout}, media, guestHost{b.bridges}, log),
			whip:   whip.New(ctx, whip.Config{PublicURL: cfg.Guests.PublicURL, RingTimeout: cfg.Guests.RingTimeout}, media, whipHost{b.bridges}, log),
		}
		b.bridges.guests = b.guestWeb.guests
		b.bridges.whip = b.guestWeb.whip
	}
	mx.On(event.StateMember, isJoin, b.handleJoin)
	reg.MustRegister(&bridgeCollector{store: st})
	return b
}

// Start ends the calls a previous run left active (their media died with
// it), and starts the DHT node if jami.enabled; call it once the Matrix
// client is logged in.
func (b *Bot) Start(ctx context.Context, jamiCfg jami.Config) error {
	if jamiCfg.Enabled {
		var err error
		if b.dht, err = jami.Start(ctx, jamiCfg, b.store, b.log); err != nil {
			return fmt.Errorf("starting the DHT node: %w", err)
		}
		b.dhtStats.Attach(b.dht)
		b.bridges.jami = jamicall.New(ctx, jamicall.Config{}, b.dht, jamiHost{b.bridges}, b.log)
		b.bridges.jamiDefaultRoom = id.RoomID(jamiCfg.DefaultRoom)
	}
	if m := b.bridges.xmpp; m != nil {
		go func() { // ends with ctx
			if err := m.Run(ctx); err != nil {
				b.log.Error().Err(err).Msg("The XMPP client stopped")
			}
		}()
	}
	b.leaveStaleCalls(ctx)
	if err := b.bridges.endStale(ctx); err != nil {
		return err
	}
	if err := b.calls.Start(ctx); err != nil {
		return fmt.Errorf("starting Matrix calls: %w", err)
	}
	return nil
}

// Stop ends every bridge (each leg hung up, for reason shutdown) and
// waits, up to ctx, until they have ended; then it stops the DHT node.
func (b *Bot) Stop(ctx context.Context) {
	b.bridges.shutdown(ctx)
	b.calls.Shutdown(ctx)
	if b.bridges.jami != nil {
		b.bridges.jami.Shutdown(ctx)
	}
	if b.bridges.xmpp != nil {
		b.bridges.xmpp.Shutdown(ctx)
	}
	if b.bridges.guests != nil {
		b.bridges.guests.Shutdown(ctx)
	}
	if b.bridges.whip != nil {
		b.bridges.whip.Shutdown(ctx)
	}
	if b.dht != nil {
		b.dht.Stop(ctx)
	}
	b.bridges.rtc.Close()
}

// leaveStaleCalls clears the bot's membership of the rooms' calls the last
// run was in when it ended without leaving them (before their legs are
// marked ended).
func (b *Bot) leaveStaleCalls(ctx context.Context) {
	legs, err := b.store.ActiveLegs(ctx, string(leg.KindRTC))
	if err != nil {
		b.log.Warn().Err(err).Msg("Cannot list the Element Call legs the last run left")
		return
	}
	var rooms []id.RoomID
	for _, l := range legs {
		if !slices.Contains(rooms, id.RoomID(l.Peer)) {
			rooms = append(rooms, id.RoomID(l.Peer))
		}
	}
	b.bridges.rtc.ClearStale(ctx, rooms)
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

// isJoin picks the member events that say a user joined.
func isJoin(evt *event.Event) bool {
	return evt.StateKey != nil && matrix.MembershipOf(evt) == event.MembershipJoin
}

// handleJoin wakes a bridge waiting for a user to join the direct room it
// made to call them.
func (b *Bot) handleJoin(_ context.Context, evt *matrix.Event) error {
	b.bridges.joins.joined(evt.RoomID, id.UserID(*evt.StateKey))
	return nil
}

// bridgeCollector reports bridges and legs from the database at scrape
// time, so the series can never disagree with the tables.
type bridgeCollector struct {
	store *store.Store
}

var (
	bridgesDesc = prometheus.NewDesc("voipbot_bridges", "Bridges (conversations) not yet ended.", nil, nil)
	legsDesc    = prometheus.NewDesc("voipbot_bridge_legs", "Legs of bridges not yet ended, by kind and state.", []string{"kind", "state"}, nil)
)

func (c *bridgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- bridgesDesc; ch <- legsDesc }

func (c *bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := c.store.CountActiveBridges(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(bridgesDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(bridgesDesc, prometheus.GaugeValue, float64(n))
	legs, err := c.store.CountLegs(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(legsDesc, err)
		return
	}
	for k, n := range legs {
		ch <- prometheus.MustNewConstMetric(legsDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}
