package matrix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"

	"github.com/voipbot/voipbot/store"
)

// Client is the bot's Matrix connection.
type Client struct {
	cfg         Config
	log         zerolog.Logger
	aslog       zerolog.Logger
	store       *store.Store
	metrics     *Metrics
	health      *Health
	intake      *intake
	syncer      *syncer
	cli         *mautrix.Client
	crypto      *olmCrypto               // nil without encryption
	reg         *appservice.Registration // appservice mode only
	started     atomic.Bool              // Start finished: events may be taken in
	uploadLimit uploadLimit              // the media repository's, asked once
	features    features                 // /versions' unstable features, cached
}

// New prepares a client; Start logs in.
func New(cfg Config, st *store.Store, reg prometheus.Registerer, log zerolog.Logger) (*Client, error) {
	cli, err := mautrix.NewClient(cfg.Homeserver.URL, cfg.Bot.UserID, "")
	if err != nil {
		return nil, fmt.Errorf("creating Matrix client: %w", err)
	}
	// mautrix adds its own "component" (crypto, …) to this logger.
	cli.Log = log.With().Str("lib", "mautrix").Logger()
	cli.Store = &syncStore{store: st}
	cli.DefaultHTTPRetries = 3
	m := NewMetrics(reg)
	c := &Client{
		cfg:     cfg,
		log:     log.With().Str("component", "matrix").Logger(),
		aslog:   log.With().Str("component", "appservice").Logger(),
		store:   st,
		metrics: m,
		health:  newHealth(cfg.Mode == ModeUser || cfg.Appservice.ToDevice == ToDeviceViaSync, cfg.Homeserver.SyncStaleAfter),
		cli:     cli,
	}
	c.intake = newIntake(st, log.With().Str("component", "intake").Logger(), m)
	c.syncer = newSyncer(cfg.Bot.UserID, c.intake, m, c.health, log.With().Str("component", "sync").Logger())
	c.syncer.roomsFromSync = cfg.Mode == ModeUser
	if cfg.Mode == ModeAppservice {
		if c.reg, err = LoadRegistration(cfg); err != nil {
			return nil, err
		}
		if cfg.Appservice.ToDevice == ToDeviceViaSync {
			c.syncer.FilterJSON = toDeviceOnlyFilter
		}
	}
	cli.Syncer = c.syncer
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "voipbot_inbox_pending",
		Help: "Events taken in and not yet handled.",
	}, func() float64 { return float64(c.intake.Pending()) }))
	c.registerMembership()
	return c, nil
}

// toDeviceOnlyFilter is the /sync filter of an appservice, whose room events
// arrive as transactions: only to-device messages, key counts and device
// lists are wanted from /sync.
var toDeviceOnlyFilter = &mautrix.Filter{
	Presence:    &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
	AccountData: &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
	Room: &mautrix.RoomFilter{
		Timeline:    &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}, Limit: 1},
		State:       &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
		Ephemeral:   &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
		AccountData: &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
	},
}

// On registers a handler for events of type t (filter may be nil). Register
// every handler before Start.
func (c *Client) On(t event.Type, filter Filter, h Handler) { c.intake.on(t, filter, h) }

// OnBatchEnd registers a handler for the end of each room's share of a sync
// response; call it before Start.
func (c *Client) OnBatchEnd(h BatchEndHandler) { c.intake.batchEnds = append(c.intake.batchEnds, h) }

// UserID is the bot's user ID.
func (c *Client) UserID() id.UserID { return c.cfg.Bot.UserID }

// DeviceID is the bot's device, known after Start.
func (c *Client) DeviceID() id.DeviceID { return c.cli.DeviceID }

// Health reports readiness for /health.
func (c *Client) Health() *Health { return c.health }

// Encrypted reports whether end-to-end encryption is on.
func (c *Client) Encrypted() bool { return c.crypto != nil }

// Start logs in (or restores the stored login), sets up encryption and
// queues the events an earlier run left pending. It retries while the
// homeserver cannot be reached, until ctx ends.
func (c *Client) Start(ctx context.Context) error {
	// Start retries on its own, reporting each failure to /health; mautrix's
	// own retries would hide the first failure for half a minute.
	retries := c.cli.DefaultHTTPRetries
	c.cli.DefaultHTTPRetries = 0
	delay := time.Second
	for {
		err := c.login(ctx)
		c.health.setLoggedIn(err)
		if err == nil {
			break
		}
		if !isTransient(err) || ctx.Err() != nil {
			return err
		}
		c.log.Warn().Err(err).Dur("retry_in", delay).Msg("Homeserver not reachable; retrying login")
		select {
		case <-ctx.Done():
			return fmt.Errorf("logging in: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 30*time.Second)
	}
	c.cli.DefaultHTTPRetries = retries
	log := c.log.With().Stringer("user_id", c.cli.UserID).Stringer("device_id", c.cli.DeviceID).Logger()

	stateStore := sqlstatestore.NewSQLStateStore(c.store.DB(), dbutil.ZeroLogger(log.With().Str("db_section", "matrix_state").Logger()), false)
	if err := stateStore.Upgrade(ctx); err != nil {
		return fmt.Errorf("upgrading Matrix state store: %w", err)
	}
	c.cli.StateStore = stateStore
	c.syncer.OnEvent(c.cli.StateStoreSyncHandler)

	if c.cfg.Encryption.Enabled {
		if err := c.startCrypto(ctx); err != nil {
			return err
		}
	}
	if c.cfg.Bot.Displayname != "" {
		if err := c.ensureDisplayname(ctx); err != nil {
			log.Warn().Err(err).Msg("Failed to set display name")
		}
	}
	if err := c.intake.resume(ctx); err != nil {
		return fmt.Errorf("resuming pending events: %w", err)
	}
	c.started.Store(true)
	log.Info().Bool("encryption", c.crypto != nil).Str("mode", string(c.cfg.Mode)).Msg("Logged in")
	return nil
}

func (c *Client) startCrypto(ctx context.Context) error {
	oc, err := newOlmCrypto(ctx, c.cli, c.store.DB(), []byte(c.cfg.Encryption.PickleKey),
		c.cli.StateStore.(crypto.StateStore), c.cli.Log.With().Str("component", "crypto").Logger())
	if err != nil {
		return fmt.Errorf("setting up encryption: %w", err)
	}
	oc.register(c.syncer)
	c.crypto = oc
	c.cli.Crypto = oc
	c.syncer.olm = oc.mach
	c.intake.decrypt = c.decryptRoomEvent
	return nil
}

func (c *Client) ensureDisplayname(ctx context.Context) error {
	current, err := c.cli.GetOwnDisplayName(ctx)
	if err == nil && current.DisplayName == c.cfg.Bot.Displayname {
		return nil
	}
	return c.cli.SetDisplayName(ctx, c.cfg.Bot.Displayname)
}

// Run takes in events until ctx ends: the /sync loop in user mode and for an
// appservice's to-device messages; an appservice taking everything from
// transactions just waits. It returns nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	if !c.health.needsSync {
		<-ctx.Done()
		return nil
	}
	err := c.cli.SyncWithContext(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("sync loop stopped: %w", err)
}

// Stop stops handing events to handlers: those running get up to grace to
// finish; the rest stay stored for the next start.
func (c *Client) Stop(grace time.Duration) {
	c.health.stopping()
	c.intake.stop(grace)
}

// decryptRoomEvent decrypts a Megolm event, waiting up to key_wait for its
// room key (and asking the sender's devices for it after an eighth of that).
func (c *Client) decryptRoomEvent(ctx context.Context, evt *event.Event) (*event.Event, error) {
	decrypted, err := c.crypto.Decrypt(ctx, evt)
	if !errors.Is(err, crypto.ErrNoSessionFound) {
		return decrypted, err
	}
	content := evt.Content.AsEncrypted()
	mach := c.crypto.mach
	first := c.cfg.Encryption.KeyWait / 8
	zerolog.Ctx(ctx).Debug().Stringer("session_id", content.SessionID).Msg("Waiting for room key")
	if !mach.WaitForSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, first) {
		// No device: ask all of the sender's devices (and the bot's own).
		c.crypto.RequestSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, evt.Sender, "")
		if !mach.WaitForSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, c.cfg.Encryption.KeyWait-first) {
			return nil, fmt.Errorf("no room key for session %s after %s: %w", content.SessionID, c.cfg.Encryption.KeyWait, crypto.ErrNoSessionFound)
		}
	}
	return c.crypto.Decrypt(ctx, evt)
}

// AppserviceHandler serves the homeserver's requests in appservice mode; it
// is nil in user mode.
func (c *Client) AppserviceHandler() http.Handler {
	if c.reg == nil {
		return nil
	}
	return &appserviceHandler{client: c}
}

// isTransient reports whether an error may go away by itself: the homeserver
// being unreachable or overloaded, as opposed to an answer that refuses.
func isTransient(err error) bool {
	retry, _ := RetryAfter(err)
	return retry
}

// Allowed reports whether a user may invite the bot and use its commands.
func (c *Client) Allowed(user id.UserID) bool { return c.cfg.Access.Allowed(c.cfg.Bot.UserID, user) }

// Mode is the configured connection mode.
func (c *Client) Mode() Mode { return c.cfg.Mode }
