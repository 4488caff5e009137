// Package guest is the browser guest leg kind: someone with no account
// who opened a call link, in the bot's call page, signalling over a
// WebSocket (the guest call protocol, QuickBlox's signal types in JSON)
// with WebRTC media through the bot's media plane.
//
// A guest's `call` rings the link's room (through Host); the bot answers
// it when someone there answers. It never imports bridge.
package guest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/voip"
)

// Host is what the leg kind needs of the conversation layer.
type Host interface {
	// Ringing: a guest called through a link. The host answers, declines
	// or routes the leg (through its methods) and returns where the leg
	// reports what happens to it.
	Ringing(l *Leg) leg.Events
	// ICEServers are the STUN and TURN servers a new call's media uses.
	ICEServers() []webrtc.ICEServer
}

// Link is what a guest's socket was opened with: an already checked call
// link.
type Link struct {
	// ID is the link's public id (for records and logs; never the token).
	ID string
	// Room is the Matrix room whose call the link joins.
	Room string
	// Video: the link allows the camera.
	Video bool
	// Echo: the bot's own source answers instead of the room.
	Echo bool
	// Title is what the page shows as the call's name.
	Title string
}

// Config is the leg kind's settings.
type Config struct {
	// RingTimeout is how long a guest's call rings before it gives up.
	RingTimeout time.Duration
}

// Manager runs the guests' sockets and legs.
type Manager struct {
	cfg   Config
	media *voip.Engine
	host  Host
	log   zerolog.Logger
	ctx   context.Context

	mu   sync.Mutex
	legs map[leg.ID]*Leg
}

// New makes the manager.
func New(ctx context.Context, cfg Config, media *voip.Engine, host Host, log zerolog.Logger) *Manager {
	if cfg.RingTimeout == 0 {
		cfg.RingTimeout = 60 * time.Second
	}
	return &Manager{
		cfg: cfg, media: media, host: host, ctx: ctx,
		log:  log.With().Str("component", "guests").Logger(),
		legs: map[leg.ID]*Leg{},
	}
}

// Serve runs one guest's socket until it ends (the guest leaves, hangs
// up, or the call ends); the HTTP handler that accepted it calls it.
func (m *Manager) Serve(ctx context.Context, conn *websocket.Conn, link Link, remote string) {
	conn.SetReadLimit(MaxMessage)
	l := newLeg(m, newLegID(), link, conn, m.log.With().Str("link", link.ID).Str("remote", remote).Logger())
	m.mu.Lock()
	m.legs[l.id] = l
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.legs, l.id)
		m.mu.Unlock()
	}()
	l.run(ctx)
}

// EndLink hangs up the guests who came through a link (it was revoked),
// and says how many.
func (m *Manager) EndLink(linkID string) int {
	m.mu.Lock()
	var legs []*Leg
	for _, l := range m.legs {
		if l.link.ID == linkID {
			legs = append(legs, l)
		}
	}
	m.mu.Unlock()
	for _, l := range legs {
		l.Hangup(leg.Hangup, "the call link was revoked")
	}
	return len(legs)
}

// Shutdown hangs up every guest (reason shutdown) and waits, up to ctx.
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
}

func newLegID() leg.ID {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return leg.ID("guest-" + hex.EncodeToString(b[:]))
}
