// Package xmppcall is the QuickBlox leg kind: a video chat with a user of
// a QuickBlox app, signalled as its JavaScript SDK does it (headline
// messages of the WebRTCVideoChat module over XMPP: xmpp, xmpp/qbsignal)
// with WebRTC media through the bot's media plane (voip).
//
// An inbound leg is a user's `call` to the bot, from a user xmpp.allow
// lets in; an outbound leg is the bot's `call` to a user, re-sent every
// 5 s until answered as the SDK re-sends its own. It never imports bridge:
// Host is what it needs of the conversation layer.
package xmppcall

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"mellium.im/xmpp/jid"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/xmpp"
	"github.com/voipbot/voipbot/xmpp/qbsignal"
)

// Network is what the leg kind needs of the XMPP client (*xmpp.Client).
type Network interface {
	Send(ctx context.Context, to jid.JID, sig qbsignal.Signal) error
}

// Host is what the leg kind needs of the conversation layer.
type Host interface {
	// Ringing: a call from an allowed QuickBlox user rings. The host
	// answers it, declines it or routes it (through the leg's methods),
	// and returns where the leg reports what happens to it.
	Ringing(l *Leg) leg.Events
	// ICEServers are the STUN and TURN servers a new call's media uses.
	ICEServers() []webrtc.ICEServer
}

// What happened to a signal, for voipbot_xmpp_signals_total.
const (
	resultOK             = "ok"
	resultDelayed        = "delayed"
	resultMalformed      = "malformed"
	resultSpoofed        = "spoofed"
	resultNotAllowed     = "not_allowed"
	resultDuplicate      = "duplicate"
	resultUnknownSession = "unknown_session"
)

// endedMemory is how long a session that ended is remembered, so that the
// caller's re-sent `call` (every 5 s, up to 60 s) makes no new leg.
const endedMemory = 90 * time.Second

// Manager runs the QuickBlox legs of the bot's XMPP account.
type Manager struct {
	cfg   Config
	self  identity
	net   Network
	media *voip.Engine
	host  Host
	log   zerolog.Logger
	ctx   context.Context
	wg    sync.WaitGroup

	signals   *prometheus.CounterVec
	connected prometheus.Gauge

	mu    sync.Mutex
	legs  map[string]*Leg      // by session id
	ended map[string]time.Time // session id → when it ended
}

// New makes the manager; Run logs the bot in and takes signals. The
// configuration must have been validated.
func New(ctx context.Context, cfg Config, media *voip.Engine, host Host, reg prometheus.Registerer, log zerolog.Logger) (*Manager, error) {
	self, err := identityOf(cfg.JID)
	if err != nil {
		return nil, fmt.Errorf("xmpp.jid: %w", err)
	}
	m := &Manager{
		cfg: cfg.withDefaults(), self: self, media: media, host: host, ctx: ctx,
		log:  log.With().Str("component", "quickblox").Logger(),
		legs: map[string]*Leg{}, ended: map[string]time.Time{},
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbot_xmpp_signals_total",
			Help: "QuickBlox video chat signals received, by type and result (ok; delayed: a replay, ignored as the SDK does; malformed; spoofed: a callerID or session not the sender's; not_allowed: a caller outside xmpp.allow; duplicate: a re-sent call; unknown_session).",
		}, []string{"type", "result"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "voipbot_xmpp_connected",
			Help: "1 while the bot is logged in to its XMPP server.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.signals, m.connected)
	}
	return m, nil
}

// Run logs the bot's account in and keeps it logged in until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	c, err := xmpp.New(m.cfg.Config, m)
	if err != nil {
		return fmt.Errorf("the XMPP client: %w", err)
	}
	m.mu.Lock()
	m.net = c
	m.mu.Unlock()
	return c.Run(ctx)
}

// UseNetwork sets the network (tests: one that is not an XMPP client).
func (m *Manager) UseNetwork(n Network) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.net = n
}

func (m *Manager) network() Network {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.net
}

// HandleState implements xmpp.Handler.
func (m *Manager) HandleState(_ context.Context, connected bool) {
	if connected {
		m.connected.Set(1)
		m.log.Info().Str("jid", m.self.JID().String()).Msg("Logged in to the XMPP server")
		return
	}
	m.connected.Set(0)
}

func (m *Manager) count(t qbsignal.Type, result string) {
	if !t.Valid() {
		t = "unknown"
	}
	m.signals.WithLabelValues(string(t), result).Inc()
}

// HandleMessage implements xmpp.Handler: one received message, on the
// client's delivery goroutine. It never waits for a call's work.
func (m *Manager) HandleMessage(_ context.Context, msg xmpp.Message) {
	log := m.log.With().Str("from", msg.From.String()).Logger()
	switch {
	case errors.Is(msg.Err, qbsignal.ErrNotSignal):
		return
	case errors.Is(msg.Err, xmpp.ErrBounced):
		log.Info().Err(msg.Err).Str("id", msg.ID).Msg("The XMPP server bounced a signal the bot sent (is the QuickBlox user registered?)")
		return
	case errors.Is(msg.Err, qbsignal.ErrDelayed):
		m.count(msg.Signal.Type, resultDelayed)
		log.Debug().Msg("Ignoring a delayed (replayed) signal, as the SDK does")
		return
	case msg.Err != nil:
		m.count(msg.Signal.Type, resultMalformed)
		log.Info().Err(msg.Err).Msg("Ignoring a malformed QuickBlox signal")
		return
	}
	sig := msg.Signal
	log = log.With().Str("type", string(sig.Type)).Str("session", sig.SessionID).Logger()
	from, err := identityOf(msg.From.Bare().String())
	if err != nil || from.App != m.self.App || from.Domain != m.self.Domain {
		m.count(sig.Type, resultSpoofed)
		log.Info().Msg("Ignoring a signal from a JID that is no user of the bot's QuickBlox application")
		return
	}
	if from.User == m.self.User {
		return // our own, echoed to another resource of ours
	}
	m.mu.Lock()
	l := m.legs[sig.SessionID]
	_, wasEnded := m.ended[sig.SessionID]
	m.mu.Unlock()
	if sig.Type == qbsignal.TypeCall && l == nil {
		switch {
		case wasEnded:
			m.count(sig.Type, resultDuplicate)
		case sig.CallerID != from.User:
			// The SDK answers the callerID, not the sender: a caller that
			// names another would have the bot call someone else.
			m.count(sig.Type, resultSpoofed)
			log.Warn().Uint64("caller_id", sig.CallerID).Msg("Ignoring a call whose callerID is not its sender")
		case !slices.Contains(sig.OpponentIDs, m.self.User):
			m.count(sig.Type, resultUnknownSession)
			log.Info().Msg("Ignoring a call that does not name the bot among its opponents")
		case !m.cfg.allowed(from.User):
			m.count(sig.Type, resultNotAllowed)
			log.Info().Uint64("caller", from.User).Msg("Rejecting a call from a QuickBlox user outside xmpp.allow")
			m.sendReject(from.User, sig)
		default:
			m.count(sig.Type, resultOK)
			m.inbound(from.User, sig, log)
		}
		return
	}
	switch {
	case l == nil && wasEnded:
		m.count(sig.Type, resultOK) // a late signal of a call that ended
	case l == nil:
		m.count(sig.Type, resultUnknownSession)
		log.Debug().Msg("Ignoring a signal of a session the bot has none of")
	case l.peer != from.User:
		m.count(sig.Type, resultSpoofed)
		log.Warn().Uint64("peer", l.peer).Msg("Ignoring a signal of a session from another user than its peer")
	case sig.Type == qbsignal.TypeCall:
		m.count(sig.Type, resultDuplicate)
		l.repeatedCall(sig)
	default:
		m.count(sig.Type, resultOK)
		l.signal(sig)
	}
}

// sendReject turns a call down without a leg (not allowed, or a group
// call the bot does not take).
func (m *Manager) sendReject(peer uint64, call qbsignal.Signal) {
	net := m.network()
	if net == nil {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		defer cancel()
		reject := reply(call, qbsignal.TypeReject)
		reject.UserInfo = m.userInfo()
		if err := net.Send(ctx, m.peerJID(peer), reject); err != nil {
			m.log.Info().Err(err).Uint64("peer", peer).Msg("Sending a reject")
		}
	}()
}

// reply is a signal of type t in call's session: the SDK checks the
// session's ids and call type on everything.
func reply(call qbsignal.Signal, t qbsignal.Type) qbsignal.Signal {
	return qbsignal.Signal{
		Type: t, SessionID: call.SessionID, CallType: call.CallType,
		CallerID: call.CallerID, OpponentIDs: slices.Clone(call.OpponentIDs),
	}
}

func (m *Manager) userInfo() qbsignal.Fields {
	return qbsignal.Fields{"name": qbsignal.Text(m.cfg.Name)}
}

func (m *Manager) peerJID(user uint64) jid.JID {
	return identity{User: user, App: m.self.App, Domain: m.self.Domain}.JID()
}

// inbound makes the leg of a call to the bot and lets the host decide.
func (m *Manager) inbound(peer uint64, call qbsignal.Signal, log zerolog.Logger) {
	l := newLeg(m, newLegID(), leg.Inbound, peer, call, log)
	m.mu.Lock()
	m.legs[call.SessionID] = l
	m.mu.Unlock()
	l.ring()
}

// Place makes the leg that calls a QuickBlox user (once started); events
// hears what happens to it.
func (m *Manager) Place(peer uint64, video bool, events leg.Events) (*Leg, error) {
	if m.ctx.Err() != nil {
		return nil, fmt.Errorf("calling QuickBlox user %d: %w", peer, m.ctx.Err())
	}
	if peer == m.self.User {
		return nil, fmt.Errorf("QuickBlox user %d is the bot itself", peer)
	}
	callType := qbsignal.CallAudio
	if video {
		callType = qbsignal.CallVideo
	}
	call := qbsignal.Signal{
		Type: qbsignal.TypeCall, SessionID: newSessionID(), CallType: callType,
		CallerID: m.self.User, OpponentIDs: []uint64{peer},
	}
	l := newLeg(m, newLegID(), leg.Outbound, peer, call, m.log.With().Str("session", call.SessionID).Logger())
	l.events = events
	m.mu.Lock()
	m.legs[call.SessionID] = l
	m.mu.Unlock()
	return l, nil
}

// IsSelf says whether user is the bot's own QuickBlox id.
func (m *Manager) IsSelf(user uint64) bool { return user == m.self.User }

// forget drops an ended leg, remembering its session for a while.
func (m *Manager) forget(l *Leg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.legs[l.session] == l {
		delete(m.legs, l.session)
	}
	now := time.Now()
	for s, at := range m.ended {
		if now.Sub(at) > endedMemory {
			delete(m.ended, s)
		}
	}
	m.ended[l.session] = now
}

// Shutdown hangs up every leg (reason shutdown) and waits, up to ctx,
// for their goodbyes to go out.
func (m *Manager) Shutdown(ctx context.Context) {
	m.mu.Lock()
	legs := make([]*Leg, 0, len(m.legs))
	for _, l := range m.legs {
		legs = append(legs, l)
	}
	m.mu.Unlock()
	for _, l := range legs {
		l.Hangup(leg.Shutdown, "the bot is stopping")
	}
	for _, l := range legs {
		select {
		case <-l.Done():
		case <-ctx.Done():
			return
		}
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func newLegID() leg.ID {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return leg.ID("xmpp-" + hex.EncodeToString(b[:]))
}

// newSessionID is a UUID, as the SDK makes its session ids.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
