// Package jamicall is the Jami leg kind: a call with a Jami device, as
// jami-daemon makes one. Its signalling is SIP on a "sip" channel of the
// device's multiplexed socket (jami/connect, jami/sip), its media SDES-SRTP
// over ICE (jami/media), seen by the forwarder as a voip.PacketLeg.
//
// An outbound leg rings every device of a Jami account; the first to answer
// wins and the others are cancelled. An inbound leg is a device's INVITE on
// a channel it opened, from an account jami.allow lets in.
//
// It never imports bridge: Host is what it needs of the conversation layer.
package jamicall

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/jami/connect"
	"github.com/voipbot/voipbot/jami/dht"
	"github.com/voipbot/voipbot/jami/mux"
	"github.com/voipbot/voipbot/jami/sip"
)

// Network is what the leg kind needs of the bot's Jami service
// (*jami.Service is one).
type Network interface {
	AccountID() dht.InfoHash
	DeviceKeyID() dht.InfoHash
	Devices(ctx context.Context, account dht.InfoHash) ([]connect.Device, error)
	OpenSIP(ctx context.Context, dev connect.Device, video bool) (*connect.Peer, *mux.Channel, error)
	Allowed(account dht.InfoHash) bool
	ICEAddresses() []netip.Addr
	SetChannelHandler(h func(*connect.Peer, *mux.Channel))
}

// Host is what the leg kind needs of the conversation layer.
type Host interface {
	// Ringing: an inbound Jami call from an allowed account rings. The host
	// answers it, declines it or routes it (through the leg's methods), and
	// returns where the leg reports what happens to it.
	Ringing(l *Leg) leg.Events
	// Text: the Jami peer sent a text message in the call.
	Text(l *Leg, text string)
}

// Config is the Jami leg kind's settings.
type Config struct {
	// RingTimeout is how long an outbound leg rings before it gives up
	// (no_answer); jamid rings for about 60 s itself.
	RingTimeout time.Duration
	// MediaTimeout bounds media ICE once the call is answered.
	MediaTimeout time.Duration
	// ChannelLinger is how long a SIP channel stays open after its call
	// ended: jamid 13.7.0 crashed when the connection closed right after
	// the 200 to its BYE, so the peer is left to close it first.
	ChannelLinger time.Duration
}

func (c Config) withDefaults() Config {
	if c.RingTimeout == 0 {
		c.RingTimeout = 60 * time.Second
	}
	if c.MediaTimeout == 0 {
		c.MediaTimeout = 30 * time.Second
	}
	if c.ChannelLinger == 0 {
		c.ChannelLinger = 30 * time.Second
	}
	return c
}

// Manager runs the Jami legs: it takes the SIP channels devices open and
// places calls for the conversation layer.
type Manager struct {
	cfg  Config
	net  Network
	host Host
	log  zerolog.Logger
	ctx  context.Context
	wg   sync.WaitGroup

	mu   sync.Mutex
	legs map[leg.ID]*Leg
}

// New makes the manager and takes the channels devices open to the bot.
func New(ctx context.Context, cfg Config, network Network, host Host, log zerolog.Logger) *Manager {
	m := &Manager{
		cfg: cfg.withDefaults(), net: network, host: host, ctx: ctx,
		log:  log.With().Str("component", "jami-calls").Logger(),
		legs: map[leg.ID]*Leg{},
	}
	network.SetChannelHandler(m.onChannel)
	return m
}

// newLegID names a Jami leg.
func newLegID() leg.ID {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return leg.ID("jami-" + hex.EncodeToString(b[:]))
}

// sipConfig is the SIP identity of a channel with dev.
func (m *Manager) sipConfig(dev connect.Device) sip.Config {
	return sip.Config{
		LocalAccount: m.net.AccountID().String(),
		LocalDevice:  m.net.DeviceKeyID().String(),
		PeerAccount:  dev.Account.String(),
		Log:          m.log.With().Stringer("device", dev.ID).Logger(),
	}
}

// onChannel takes a SIP channel a device opened: its INVITEs become
// inbound legs. It must not block.
func (m *Manager) onChannel(p *connect.Peer, ch *mux.Channel) {
	cfg := m.sipConfig(p.Device)
	var conn *sip.Conn
	cfg.OnInvite = func(ic *sip.IncomingCall) { m.onInvite(p.Device, conn, ic) }
	cfg.OnMessage = func(from, contentType string, body []byte) {
		m.log.Info().Str("from", from).Str("content_type", contentType).Int("bytes", len(body)).Msg("A Jami text outside a call (not bridged)")
	}
	conn = sip.NewConn(ch, cfg)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-conn.Done():
		case <-m.ctx.Done():
			_ = conn.Close()
		}
	}()
}

// onInvite: a device calls. An account jami.allow does not let in is
// refused (403); others ring through the host.
func (m *Manager) onInvite(dev connect.Device, conn *sip.Conn, ic *sip.IncomingCall) {
	log := m.log.With().Stringer("account", dev.Account).Stringer("device", dev.ID).Str("sip_call_id", ic.CallID()).Logger()
	if !m.net.Allowed(dev.Account) {
		log.Info().Msg("Refused a Jami call from an account jami.allow does not name")
		go func() { _ = ic.Reject(403, "Forbidden") }()
		return
	}
	if ic.To != "" && ic.To != m.net.AccountID().String() {
		log.Info().Str("to", ic.To).Msg("Refused a Jami call to someone other than the bot (a conference?)")
		go func() { _ = ic.Reject(404, "Not Found") }()
		return
	}
	l := m.newLeg(leg.Inbound, dev.Account.String(), hasVideo(ic.Offer))
	l.dev, l.conn, l.incoming = dev, conn, ic
	l.log = l.log.With().Stringer("device", dev.ID).Logger()
	l.log.Info().Msg("A Jami call rings")
	go func() { _ = ic.Ringing() }()
	// The host runs on the leg's queue, so the events it returns are set
	// before anything it starts (an Answer) reports back.
	l.post(func() { l.events = m.host.Ringing(l) })
	l.watchCancel()
}

// Place makes an outbound leg ringing every device of account, started by
// Start (once the conversation has added it).
func (m *Manager) Place(account string, video bool, events leg.Events) (*Leg, error) {
	acc, err := dht.ParseHash(account)
	if err != nil {
		return nil, err
	}
	l := m.newLeg(leg.Outbound, acc.String(), video)
	l.events = events
	return l, nil
}

func (m *Manager) newLeg(dir leg.Direction, peer string, video bool) *Leg {
	l := newLeg(m, newLegID(), dir, peer, video)
	m.mu.Lock()
	m.legs[l.id] = l
	m.mu.Unlock()
	return l
}

func (m *Manager) forget(l *Leg) {
	m.mu.Lock()
	delete(m.legs, l.id)
	m.mu.Unlock()
}

// Legs are the legs not yet ended.
func (m *Manager) Legs() []*Leg {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Leg, 0, len(m.legs))
	for _, l := range m.legs {
		out = append(out, l)
	}
	return out
}

// Shutdown hangs up every leg and waits for them, up to ctx.
func (m *Manager) Shutdown(ctx context.Context) {
	legs := m.Legs()
	for _, l := range legs {
		l.Hangup(leg.Shutdown, "the bot is shutting down")
	}
	for _, l := range legs {
		select {
		case <-l.Done():
		case <-ctx.Done():
			return
		}
	}
}

// linger closes a channel's SIP connection a while after its call ended
// (see Config.ChannelLinger), or at once when the bot stops.
func (m *Manager) linger(conn *sip.Conn) {
	if conn == nil {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTimer(m.cfg.ChannelLinger)
		defer t.Stop()
		select {
		case <-t.C:
		case <-conn.Done():
		case <-m.ctx.Done():
		}
		_ = conn.Close()
	}()
}

// Wait waits for the manager's goroutines (after its context ended).
func (m *Manager) Wait() { m.wg.Wait() }
