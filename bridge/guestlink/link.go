// Package guestlink makes and checks call links: a Matrix user asks for one
// in a room (!voip link), the bot answers with <public base>/call/<token>,
// and a browser guest who opens it joins that room's call.
//
// A token is 256 random bits, sent once and never stored: the store keeps
// only Hash(token), and a link is named in commands and logs by its public
// ID, the first IDLen hex digits of that hash. Resolve tells the web layer
// why a token opens nothing (ErrMalformed, ErrNotFound, ErrExpired,
// ErrRevoked); Limiter slows down whoever guesses tokens or floods a link.
//
// The package knows neither the bridge, Matrix nor the database: it
// persists through Store, which *store.Store satisfies.
package guestlink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Why a token opens no call (see Manager.Resolve), and why a link cannot be
// made. The web layer answers ErrMalformed and ErrNotFound with 404,
// ErrExpired and ErrRevoked with 410, ErrRateLimited with 429.
var (
	// ErrMalformed: the text does not have the shape of a token.
	ErrMalformed = errors.New("guestlink: malformed token")
	// ErrNotFound: no such link (or, for Revoke, none of that room).
	ErrNotFound = errors.New("guestlink: no such link")
	// ErrExpired: the link's lifetime is over.
	ErrExpired = errors.New("guestlink: the link has expired")
	// ErrRevoked: the link was revoked.
	ErrRevoked = errors.New("guestlink: the link was revoked")
	// ErrBadTTL: a lifetime out of range or not understood (ParseTTL,
	// Create).
	ErrBadTTL = errors.New("bad link lifetime")
	// ErrRateLimited: too many tries (Limiter).
	ErrRateLimited = errors.New("guestlink: too many tries")
)

// Kind is what a link's token opens.
type Kind string

// The kinds of link. A token opens only its own kind: a call link's token
// is no WHIP token (Resolve says ErrNotFound).
const (
	// KindCall: a guest's call page, <public base>/call/<token>.
	KindCall Kind = "call"
	// KindWHIP: media pushed into the room's call (RFC 9725 ingest).
	KindWHIP Kind = "whip"
	// KindWHEP: the room's call pulled out (WHEP egress).
	KindWHEP Kind = "whep"
)

func (k Kind) valid() bool { return k == KindCall || k == KindWHIP || k == KindWHEP }

// Link is a call link as the bot shows it. The token is not part of it: it
// exists only in the URL given out when the link was made.
type Link struct {
	// ID is the public id (IDOf the token): what !voip links shows and
	// !voip revoke takes.
	ID string
	// Kind is what the token opens.
	Kind Kind
	// Room is the Matrix room whose call the link joins.
	Room string
	// Video: the link allows the camera.
	Video bool
	// Echo: the bot's own echo answers the guest instead of the room
	// ringing (for testing).
	Echo bool
	// CreatedBy is the Matrix user who made the link.
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
	Revoked   bool
	// Joins counts the guests who joined through the link (CountJoin).
	Joins int
}

// Record is a link as the store keeps it. It is an alias of an unnamed
// struct type, and package store declares store.GuestLink as an alias of
// the same struct type: identical types in Go, so *store.Store has exactly
// the method signatures of Store without either package importing the
// other. Keep the field lists the same in both places (if they drift, the
// bot, which hands its *store.Store to NewManager, no longer compiles).
//
// Times are kept to the millisecond; RevokedAt is zero until the link is
// revoked.
type Record = struct {
	ID        string
	TokenHash string
	Room      string
	Video     bool
	Echo      bool
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt time.Time
	Joins     int
	Kind      string
}

// Store is what the Manager keeps in the database; *store.Store satisfies
// it (see Record).
type Store interface {
	// CreateLink adds a link. It returns false, and adds nothing, if a link
	// with the same ID or TokenHash exists.
	CreateLink(ctx context.Context, l Record) (bool, error)
	// LinkByTokenHash returns the link of a token hash, or nil if none.
	LinkByTokenHash(ctx context.Context, tokenHash string) (*Record, error)
	// LiveLinks lists the links of a room that expire after now and are
	// not revoked, newest first.
	LiveLinks(ctx context.Context, room string, now time.Time) ([]Record, error)
	// RevokeLink marks the link id of room revoked at at (a link revoked
	// before keeps its first time). It returns false if room has no link
	// id.
	RevokeLink(ctx context.Context, room, id string, at time.Time) (bool, error)
	// CountLinkJoin adds one to the link's joins; false if there is no
	// link id.
	CountLinkJoin(ctx context.Context, id string) (bool, error)
	// PruneLinks deletes the links that expired or were revoked before
	// before, and returns how many.
	PruneLinks(ctx context.Context, before time.Time) (int, error)
}

// PruneAfter is how long a link that expired or was revoked is kept (so
// that it answers "expired" or "revoked" rather than "does not exist")
// before Prune deletes it.
const PruneAfter = 30 * 24 * time.Hour

// createAttempts bounds the draws of a fresh token when a link id is taken
// (two tokens whose hashes share 40 bits: rare, not impossible).
const createAttempts = 3

// Manager makes, resolves and revokes call links. It is safe for
// concurrent use (as far as its Store is).
type Manager struct {
	store Store
	now   func() time.Time
	rand  io.Reader
}

// NewManager returns a Manager over s. now is the clock (nil: time.Now).
func NewManager(s Store, now func() time.Time) *Manager {
	if now == nil {
		now = time.Now
	}
	return &Manager{store: s, now: now, rand: defaultRand}
}

// clock is the time now, to the millisecond the store keeps.
func (m *Manager) clock() time.Time {
	return time.UnixMilli(m.now().UnixMilli())
}

func fromRecord(r Record) Link {
	return Link{
		ID: r.ID, Kind: Kind(r.Kind), Room: r.Room, Video: r.Video, Echo: r.Echo, CreatedBy: r.CreatedBy,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, Revoked: !r.RevokedAt.IsZero(), Joins: r.Joins,
	}
}

// Spec is what a link is made for.
type Spec struct {
	// Kind is what the token will open ("": KindCall).
	Kind Kind
	// Room is the Matrix room whose call the link joins.
	Room string
	// CreatedBy is the Matrix user who asked for it.
	CreatedBy string
	// TTL is its lifetime: 0 is DefaultTTL; otherwise from MinTTL to
	// MaxTTL, or ErrBadTTL.
	TTL time.Duration
	// Video allows the camera (KindCall) or video (WHIP, WHEP).
	Video bool
	// Echo: the bot's own source answers instead of the room (KindCall).
	Echo bool
}

// Create makes a link as spec says. It returns the token, to be given out
// once in the link's URL.
func (m *Manager) Create(ctx context.Context, spec Spec) (string, Link, error) {
	room, createdBy, ttl, video, echo := spec.Room, spec.CreatedBy, spec.TTL, spec.Video, spec.Echo
	kind := spec.Kind
	if kind == "" {
		kind = KindCall
	}
	if !kind.valid() {
		return "", Link{}, fmt.Errorf("making a call link: unknown kind %q", kind)
	}
	if room == "" {
		return "", Link{}, errors.New("making a call link: no room")
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if err := checkTTL(ttl); err != nil {
		return "", Link{}, fmt.Errorf("making a call link: %w %s: %s", ErrBadTTL, ttl, err.Error())
	}
	now := m.clock()
	for range createAttempts {
		token, err := newToken(m.rand)
		if err != nil {
			return "", Link{}, fmt.Errorf("making a call link: %w", err)
		}
		hash := Hash(token)
		r := Record{
			ID: hash[:IDLen], TokenHash: hash, Room: room, Video: video, Echo: echo,
			CreatedBy: createdBy, CreatedAt: now, ExpiresAt: now.Add(ttl), Kind: string(kind),
		}
		ok, err := m.store.CreateLink(ctx, r)
		if err != nil {
			return "", Link{}, fmt.Errorf("making a call link in %s: %w", room, err)
		}
		if ok {
			return token, fromRecord(r), nil
		}
	}
	return "", Link{}, fmt.Errorf("making a call link in %s: %d tokens drawn, each one's id taken", room, createAttempts)
}

// Resolve returns the link of kind a token opens. A token of the wrong
// shape is ErrMalformed (nothing is looked up), an unknown one, or one of
// another kind, ErrNotFound. A link
// that was revoked (ErrRevoked) or is past its expiry (ErrExpired) is
// returned with that error, for the logs; revoked wins over expired.
func (m *Manager) Resolve(ctx context.Context, kind Kind, token string) (Link, error) {
	token, err := ParseToken(token)
	if err != nil {
		return Link{}, err
	}
	r, err := m.store.LinkByTokenHash(ctx, Hash(token))
	if err != nil {
		return Link{}, fmt.Errorf("resolving call link %s: %w", IDOf(token), err)
	}
	if r == nil || Kind(r.Kind) != kind {
		return Link{}, ErrNotFound
	}
	l := fromRecord(*r)
	switch {
	case l.Revoked:
		return l, ErrRevoked
	case !m.now().Before(l.ExpiresAt):
		return l, ErrExpired
	}
	return l, nil
}

// List returns the live links of room (neither expired nor revoked),
// newest first.
func (m *Manager) List(ctx context.Context, room string) ([]Link, error) {
	rs, err := m.store.LiveLinks(ctx, room, m.clock())
	if err != nil {
		return nil, fmt.Errorf("listing the call links of %s: %w", room, err)
	}
	out := make([]Link, len(rs))
	for i, r := range rs {
		out[i] = fromRecord(r)
	}
	return out, nil
}

// Revoke revokes the link id of room: from now on its token opens nothing
// (ErrRevoked). A link of another room, or no link, is ErrNotFound.
// Revoking a revoked link again changes nothing and is no error.
func (m *Manager) Revoke(ctx context.Context, room, id string) error {
	if !validID(id) {
		return ErrNotFound
	}
	ok, err := m.store.RevokeLink(ctx, room, id, m.clock())
	if err != nil {
		return fmt.Errorf("revoking call link %s of %s: %w", id, room, err)
	}
	if !ok {
		return ErrNotFound
	}
	return nil
}

// CountJoin counts a guest who joined through link id (ErrNotFound if
// there is no such link).
func (m *Manager) CountJoin(ctx context.Context, id string) error {
	if !validID(id) {
		return ErrNotFound
	}
	ok, err := m.store.CountLinkJoin(ctx, id)
	if err != nil {
		return fmt.Errorf("counting a join of call link %s: %w", id, err)
	}
	if !ok {
		return ErrNotFound
	}
	return nil
}

// Prune deletes the links that expired or were revoked more than keep ago
// (0: PruneAfter), and returns how many.
func (m *Manager) Prune(ctx context.Context, keep time.Duration) (int, error) {
	if keep <= 0 {
		keep = PruneAfter
	}
	n, err := m.store.PruneLinks(ctx, m.clock().Add(-keep))
	if err != nil {
		return 0, fmt.Errorf("pruning old call links: %w", err)
	}
	return n, nil
}
