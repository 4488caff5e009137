// Package whip is the WHIP and WHEP leg kinds: media pushed into a room's
// call over HTTP (RFC 9725: what OBS and GStreamer's whipsink speak), and
// a room's call pulled out by a WHEP player. A client POSTs its SDP offer
// with a bearer token a Matrix user made (!voip whip, !voip whep), gets the
// bot's answer and a session URL (Location) to trickle candidates to
// (PATCH) and to end it (DELETE); the media goes through the bot's media
// plane (pion) like every other leg's.
//
// A publisher's session is answered at once (HTTP cannot wait for a
// ringing room); its media reaches the room once someone there answers.
// It never imports bridge.
package whip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/voip"
)

// Why a request is refused. The HTTP layer answers each with its status
// (see statusOf).
var (
	// ErrUnauthorized: no token, or one that opens nothing here (401).
	ErrUnauthorized = errors.New("whip: no valid bearer token")
	// ErrTooMany: too many tries from this address or on this token (429).
	ErrTooMany = errors.New("whip: too many tries")
	// ErrOffer: the offer is not SDP the bot can answer (400).
	ErrOffer = errors.New("whip: unusable offer")
	// ErrBusy: the bot takes no more calls now (503).
	ErrBusy = errors.New("whip: the bot is busy")
	// ErrNoCall: a WHEP token's room has no call to pull (409).
	ErrNoCall = errors.New("whip: no call to pull")
	// ErrNoSession: no such session (404).
	ErrNoSession = errors.New("whip: no such session")
	// ErrRestart: an ICE restart was asked for; only trickle is done (422).
	ErrRestart = errors.New("whip: ICE restarts are not supported")
	// ErrPrecondition: If-Match names another entity tag (412).
	ErrPrecondition = errors.New("whip: the entity tag does not match")
)

// Link is what a token opens, already checked by the host.
type Link struct {
	// ID is the token's public id (for records and logs; never the token).
	ID string
	// Room is the Matrix room whose call the session joins.
	Room string
	// Video: video is forwarded too.
	Video bool
	// Egress: a WHEP token (the client pulls); else WHIP (it pushes).
	Egress bool
}

// Host is what the leg kinds need of the conversation layer.
type Host interface {
	// Admit takes a call slot for leg id of link, or says why not (an
	// error wrapping ErrBusy or ErrNoCall), before any media is set up.
	Admit(id leg.ID, link Link) error
	// Release gives back the slot of a leg that never rang (its offer
	// failed after Admit).
	Release(id leg.ID)
	// Ringing: a session is answered; the host rings, joins or routes the
	// leg (through its methods) and returns where the leg reports.
	Ringing(l *Leg) leg.Events
	// ICEServers are the STUN and TURN servers a new session uses.
	ICEServers() []webrtc.ICEServer
}

// Config is the leg kinds' settings.
type Config struct {
	// PublicURL is the bot's address as clients reach it (the guests'
	// public_url): session URLs are made from it.
	PublicURL string
	// RingTimeout is how long a publisher's media waits for someone in
	// the room to answer before the session ends.
	RingTimeout time.Duration
	// GatherWait bounds how long an answer waits for the bot's candidates:
	// they all go in it (the server cannot trickle to the client).
	GatherWait time.Duration
}

// Manager runs the sessions.
type Manager struct {
	cfg   Config
	media *voip.Engine
	host  Host
	log   zerolog.Logger
	ctx   context.Context

	mu       sync.Mutex
	sessions map[string]*Leg // by resource id
}

// New makes the manager; ctx ends every session.
func New(ctx context.Context, cfg Config, media *voip.Engine, host Host, log zerolog.Logger) *Manager {
	if cfg.RingTimeout == 0 {
		cfg.RingTimeout = 60 * time.Second
	}
	if cfg.GatherWait == 0 {
		cfg.GatherWait = 3 * time.Second
	}
	return &Manager{
		cfg: cfg, media: media, host: host, ctx: ctx,
		log:      log.With().Str("component", "whip").Logger(),
		sessions: map[string]*Leg{},
	}
}

// Answer is what a started session sends back.
type Answer struct {
	SDP string
	// Location is the session's URL.
	Location string
	// ETag is the ICE session's entity tag (If-Match of a PATCH).
	ETag string
	// ICEServers are the servers the client may use (Link headers).
	ICEServers []webrtc.ICEServer
}

// Start answers a client's offer for link: the session's leg is made and
// the host told. Errors wrap the package's Err values.
func (m *Manager) Start(ctx context.Context, link Link, offer string) (Answer, error) {
	info, err := inspectOffer(offer)
	if err != nil {
		return Answer{}, err
	}
	switch {
	case link.Egress && !info.receives:
		return Answer{}, fmt.Errorf("%w: a WHEP offer must receive (recvonly or sendrecv)", ErrOffer)
	case !link.Egress && !info.sends:
		return Answer{}, fmt.Errorf("%w: a WHIP offer must send (sendonly or sendrecv)", ErrOffer)
	}
	l := newLeg(m, link, info)
	if err := m.host.Admit(l.id, link); err != nil {
		return Answer{}, err
	}
	servers := m.host.ICEServers()
	desc, err := l.start(ctx, offer, servers)
	if err != nil {
		m.host.Release(l.id)
		return Answer{}, err
	}
	m.mu.Lock()
	m.sessions[l.resource] = l
	m.mu.Unlock()
	l.post(l.ring)
	l.log.Info().Bool("egress", link.Egress).Bool("video", l.video).Msg("WHIP session started")
	return Answer{SDP: desc.SDP, Location: m.location(l), ETag: l.etag, ICEServers: servers}, nil
}

// location is a session's URL, under the public address (which may have
// a path of its own behind a proxy).
func (m *Manager) location(l *Leg) string {
	kind := "whip"
	if l.link.Egress {
		kind = "whep"
	}
	return strings.TrimRight(m.cfg.PublicURL, "/") + "/" + kind + "/session/" + l.resource
}

func (m *Manager) session(resource string) (*Leg, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.sessions[resource]
	if l == nil {
		return nil, ErrNoSession
	}
	return l, nil
}

func (m *Manager) forget(l *Leg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessions[l.resource] == l {
		delete(m.sessions, l.resource)
	}
}

// Patch applies a PATCH of a session: trickled candidates. ifMatch is the
// request's If-Match ("" if none).
func (m *Manager) Patch(ctx context.Context, resource, ifMatch, body string) error {
	l, err := m.session(resource)
	if err != nil {
		return err
	}
	return l.patch(ctx, ifMatch, body)
}

// Delete ends a session (the client's DELETE).
func (m *Manager) Delete(resource string) error {
	l, err := m.session(resource)
	if err != nil {
		return err
	}
	l.post(func() { l.endWith(leg.End{Reason: leg.Hangup, By: leg.ByPeer, Detail: "the client ended the session"}) })
	return nil
}

// EndLink ends the sessions of a token (it was revoked), and says how
// many.
func (m *Manager) EndLink(linkID string) int {
	m.mu.Lock()
	var legs []*Leg
	for _, l := range m.sessions {
		if l.link.ID == linkID {
			legs = append(legs, l)
		}
	}
	m.mu.Unlock()
	for _, l := range legs {
		l.Hangup(leg.Hangup, "the token was revoked")
	}
	return len(legs)
}

// Shutdown ends every session (reason shutdown) and waits, up to ctx.
func (m *Manager) Shutdown(ctx context.Context) {
	m.mu.Lock()
	legs := make([]*Leg, 0, len(m.sessions))
	for _, l := range m.sessions {
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

// randomHex is n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
