package guestlink_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/bridge/guestlink"
	"github.com/voipbot/voipbot/store"
)

// The bot hands its *store.Store to NewManager.
var _ guestlink.Store = (*store.Store)(nil)

const (
	roomA = "!a:example.com"
	roomB = "!b:example.com"
	alice = "@alice:example.com"
)

// eachStore runs fn over the in-memory fake and over a real SQLite store,
// so that the fake keeps the store's semantics.
func eachStore(t *testing.T, fn func(t *testing.T, st guestlink.Store)) {
	t.Run("fake", func(t *testing.T) { fn(t, &fakeStore{}) })
	t.Run("sqlite", func(t *testing.T) {
		st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "voipbot.db")}, zerolog.Nop())
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, st.Close()) })
		fn(t, st)
	})
}

// guess is a token of the right shape that nobody made.
func guess(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestCreateAndResolve(t *testing.T) {
	eachStore(t, func(t *testing.T, st guestlink.Store) {
		ctx := context.Background()
		clk := newClock()
		m := guestlink.NewManager(st, clk.Now)

		token, l, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: 2 * time.Hour, Video: true, Echo: false})
		require.NoError(t, err)
		parsed, err := guestlink.ParseToken(token)
		require.NoError(t, err, "a made token has the token shape")
		require.Equal(t, token, parsed)
		require.Len(t, token, guestlink.TokenLen)
		require.Equal(t, guestlink.Link{
			ID: guestlink.IDOf(token), Kind: guestlink.KindCall, Room: roomA, Video: true, CreatedBy: alice,
			CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(2 * time.Hour),
		}, l)

		got, err := m.Resolve(ctx, guestlink.KindCall, token)
		require.NoError(t, err)
		require.Equal(t, l, got)

		token2, l2, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: 0, Video: false, Echo: true})
		require.NoError(t, err)
		require.NotEqual(t, token, token2)
		require.Equal(t, clk.Now().Add(guestlink.DefaultTTL), l2.ExpiresAt, "0 is the default lifetime")
		require.True(t, l2.Echo)
		require.False(t, l2.Video)

		// A token opens only its own kind.
		whip, wl, err := m.Create(ctx, guestlink.Spec{Kind: guestlink.KindWHIP, Room: roomA, CreatedBy: alice, TTL: time.Hour})
		require.NoError(t, err)
		require.Equal(t, guestlink.KindWHIP, wl.Kind)
		got, err = m.Resolve(ctx, guestlink.KindWHIP, whip)
		require.NoError(t, err)
		require.Equal(t, wl, got)
		for kind, tok := range map[guestlink.Kind]string{guestlink.KindCall: whip, guestlink.KindWHEP: whip, guestlink.KindWHIP: token} {
			_, err = m.Resolve(ctx, kind, tok)
			require.ErrorIsf(t, err, guestlink.ErrNotFound, "a token of another kind opens no %s", kind)
		}
		_, _, err = m.Create(ctx, guestlink.Spec{Kind: "sip", Room: roomA, CreatedBy: alice})
		require.Error(t, err)
	})
}

func TestTokenIsNotStored(t *testing.T) {
	st := &fakeStore{}
	token, l, err := guestlink.NewManager(st, newClock().Now).Create(context.Background(), guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: time.Hour})
	require.NoError(t, err)
	recs := st.records()
	require.Len(t, recs, 1)
	require.Equal(t, guestlink.Hash(token), recs[0].TokenHash)
	require.Equal(t, recs[0].TokenHash[:guestlink.IDLen], l.ID)
	require.NotContains(t, strings.Join([]string{recs[0].ID, recs[0].TokenHash, recs[0].Room, recs[0].CreatedBy}, " "), token)
}

func TestCreateRefusesLifetimesOutOfRange(t *testing.T) {
	st := &fakeStore{}
	m := guestlink.NewManager(st, newClock().Now)
	for _, ttl := range []time.Duration{30 * time.Second, -time.Hour, guestlink.MaxTTL + time.Millisecond} {
		_, _, err := m.Create(context.Background(), guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: ttl})
		require.ErrorIs(t, err, guestlink.ErrBadTTL, "%s", ttl)
	}
	for _, ttl := range []time.Duration{guestlink.MinTTL, guestlink.MaxTTL} {
		_, _, err := m.Create(context.Background(), guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: ttl})
		require.NoError(t, err, "%s", ttl)
	}
	_, _, err := m.Create(context.Background(), guestlink.Spec{Room: "", CreatedBy: alice, TTL: time.Hour})
	require.ErrorContains(t, err, "no room")
	require.Len(t, st.records(), 2)
}

func TestCreateWrapsStoreErrors(t *testing.T) {
	st := &fakeStore{}
	boom := errors.New("disk on fire")
	st.setErr(boom)
	_, _, err := guestlink.NewManager(st, newClock().Now).Create(context.Background(), guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: time.Hour})
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "making a call link in "+roomA)
}

func TestCreateDrawsAgainWhenTheIDIsTaken(t *testing.T) {
	st := &fakeStore{refuse: 2}
	m := guestlink.NewManager(st, newClock().Now)
	token, _, err := m.Create(context.Background(), guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: time.Hour})
	require.NoError(t, err)
	_, err = m.Resolve(context.Background(), guestlink.KindCall, token)
	require.NoError(t, err)

	st = &fakeStore{refuse: 3}
	_, _, err = guestlink.NewManager(st, newClock().Now).Create(context.Background(), guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: time.Hour})
	require.ErrorContains(t, err, "id taken")
	require.Empty(t, st.records())
}

func TestResolveErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, st guestlink.Store) {
		ctx := context.Background()
		clk := newClock()
		m := guestlink.NewManager(st, clk.Now)

		_, err := m.Resolve(ctx, guestlink.KindCall, "not-a-token")
		require.ErrorIs(t, err, guestlink.ErrMalformed)
		for range 5 {
			l, err := m.Resolve(ctx, guestlink.KindCall, guess(t))
			require.ErrorIs(t, err, guestlink.ErrNotFound, "a guessed token opens nothing")
			require.Zero(t, l)
		}

		token, made, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: time.Hour, Video: false, Echo: false})
		require.NoError(t, err)
		clk.Advance(time.Hour - time.Millisecond)
		_, err = m.Resolve(ctx, guestlink.KindCall, token)
		require.NoError(t, err, "alive until its expiry")
		clk.Advance(time.Millisecond)
		l, err := m.Resolve(ctx, guestlink.KindCall, token)
		require.ErrorIs(t, err, guestlink.ErrExpired, "expired at its expiry")
		require.Equal(t, made.ID, l.ID, "the expired link is returned for the logs")

		clk.Advance(-time.Minute)
		require.NoError(t, m.Revoke(ctx, roomA, made.ID))
		l, err = m.Resolve(ctx, guestlink.KindCall, token)
		require.ErrorIs(t, err, guestlink.ErrRevoked)
		require.True(t, l.Revoked)
		clk.Advance(time.Hour)
		_, err = m.Resolve(ctx, guestlink.KindCall, token)
		require.ErrorIs(t, err, guestlink.ErrRevoked, "revoked wins over expired")
	})
}

func TestResolveMalformedLooksNothingUp(t *testing.T) {
	st := &fakeStore{}
	m := guestlink.NewManager(st, newClock().Now)
	for _, s := range []string{"", "abc", guess(t) + "A", guess(t)[:42], strings.Repeat("+", 43), "../../etc/passwd"} {
		_, err := m.Resolve(context.Background(), guestlink.KindCall, s)
		require.ErrorIs(t, err, guestlink.ErrMalformed, "%q", s)
	}
	require.Zero(t, st.lookups)
}

func TestResolveWrapsStoreErrors(t *testing.T) {
	st := &fakeStore{}
	m := guestlink.NewManager(st, newClock().Now)
	boom := errors.New("disk on fire")
	st.setErr(boom)
	token := guess(t)
	_, err := m.Resolve(context.Background(), guestlink.KindCall, token)
	require.ErrorIs(t, err, boom)
	require.NotErrorIs(t, err, guestlink.ErrNotFound)
	require.ErrorContains(t, err, guestlink.IDOf(token))
	require.NotContains(t, err.Error(), token, "errors name the id, never the token")
}

func TestList(t *testing.T) {
	eachStore(t, func(t *testing.T, st guestlink.Store) {
		ctx := context.Background()
		clk := newClock()
		m := guestlink.NewManager(st, clk.Now)

		list, err := m.List(ctx, roomA)
		require.NoError(t, err)
		require.Empty(t, list)

		_, short, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: time.Minute, Video: false, Echo: false})
		require.NoError(t, err)
		clk.Advance(time.Second)
		_, revoked, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: time.Hour, Video: false, Echo: false})
		require.NoError(t, err)
		clk.Advance(time.Second)
		_, older, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: time.Hour, Video: true, Echo: false})
		require.NoError(t, err)
		clk.Advance(time.Second)
		_, newer, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: "@bob:example.com", TTL: 2 * time.Hour, Video: false, Echo: true})
		require.NoError(t, err)
		_, _, err = m.Create(ctx, guestlink.Spec{Room: roomB, CreatedBy: alice, TTL: time.Hour, Video: false, Echo: false})
		require.NoError(t, err)
		require.NoError(t, m.Revoke(ctx, roomA, revoked.ID))

		list, err = m.List(ctx, roomA)
		require.NoError(t, err)
		require.Equal(t, []guestlink.Link{newer, older, short}, list, "newest first")

		clk.Advance(time.Minute)
		list, err = m.List(ctx, roomA)
		require.NoError(t, err)
		require.Equal(t, []guestlink.Link{newer, older}, list, "expired and revoked links are not listed")
	})
}

func TestListWrapsStoreErrors(t *testing.T) {
	st := &fakeStore{}
	boom := errors.New("disk on fire")
	st.setErr(boom)
	_, err := guestlink.NewManager(st, newClock().Now).List(context.Background(), roomA)
	require.ErrorIs(t, err, boom)
}

func TestRevoke(t *testing.T) {
	eachStore(t, func(t *testing.T, st guestlink.Store) {
		ctx := context.Background()
		m := guestlink.NewManager(st, newClock().Now)
		token, l, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: time.Hour, Video: false, Echo: false})
		require.NoError(t, err)

		require.ErrorIs(t, m.Revoke(ctx, roomB, l.ID), guestlink.ErrNotFound, "a link of another room is not revoked from here")
		_, err = m.Resolve(ctx, guestlink.KindCall, token)
		require.NoError(t, err, "and still opens")

		require.ErrorIs(t, m.Revoke(ctx, roomA, guestlink.IDOf(guess(t))), guestlink.ErrNotFound)
		for _, bad := range []string{"", "xyz", strings.ToUpper(l.ID), l.ID + "0", "' OR 1=1 --"} {
			require.ErrorIs(t, m.Revoke(ctx, roomA, bad), guestlink.ErrNotFound, "%q", bad)
		}

		require.NoError(t, m.Revoke(ctx, roomA, l.ID))
		_, err = m.Resolve(ctx, guestlink.KindCall, token)
		require.ErrorIs(t, err, guestlink.ErrRevoked)
		require.NoError(t, m.Revoke(ctx, roomA, l.ID), "revoking again is no error")
	})
}

func TestRevokeWrapsStoreErrors(t *testing.T) {
	st := &fakeStore{}
	boom := errors.New("disk on fire")
	st.setErr(boom)
	m := guestlink.NewManager(st, newClock().Now)
	err := m.Revoke(context.Background(), roomA, "0123456789")
	require.ErrorIs(t, err, boom)
	require.NotErrorIs(t, err, guestlink.ErrNotFound)
	err = m.CountJoin(context.Background(), "0123456789")
	require.ErrorIs(t, err, boom)
	_, err = m.Prune(context.Background(), 0)
	require.ErrorIs(t, err, boom)
}

func TestCountJoin(t *testing.T) {
	eachStore(t, func(t *testing.T, st guestlink.Store) {
		ctx := context.Background()
		m := guestlink.NewManager(st, newClock().Now)
		token, l, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: time.Hour, Video: false, Echo: false})
		require.NoError(t, err)
		require.NoError(t, m.CountJoin(ctx, l.ID))
		require.NoError(t, m.CountJoin(ctx, l.ID))
		got, err := m.Resolve(ctx, guestlink.KindCall, token)
		require.NoError(t, err)
		require.Equal(t, 2, got.Joins)
		require.ErrorIs(t, m.CountJoin(ctx, guestlink.IDOf(guess(t))), guestlink.ErrNotFound)
		require.ErrorIs(t, m.CountJoin(ctx, "nope"), guestlink.ErrNotFound)
	})
}

func TestPrune(t *testing.T) {
	eachStore(t, func(t *testing.T, st guestlink.Store) {
		ctx := context.Background()
		clk := newClock()
		m := guestlink.NewManager(st, clk.Now)
		expired, _, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: time.Hour, Video: false, Echo: false})
		require.NoError(t, err)
		revoked, rl, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: guestlink.MaxTTL, Video: false, Echo: false})
		require.NoError(t, err)
		live, _, err := m.Create(ctx, guestlink.Spec{Room: roomA, CreatedBy: alice, TTL: guestlink.MaxTTL, Video: false, Echo: false})
		require.NoError(t, err)
		clk.Advance(2 * time.Hour)
		require.NoError(t, m.Revoke(ctx, roomA, rl.ID))

		clk.Advance(guestlink.PruneAfter - time.Hour)
		n, err := m.Prune(ctx, 0)
		require.NoError(t, err)
		require.Zero(t, n, "kept for PruneAfter after the end")
		_, err = m.Resolve(ctx, guestlink.KindCall, expired)
		require.ErrorIs(t, err, guestlink.ErrExpired)

		clk.Advance(time.Millisecond)
		n, err = m.Prune(ctx, 0)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		_, err = m.Resolve(ctx, guestlink.KindCall, expired)
		require.ErrorIs(t, err, guestlink.ErrNotFound)

		clk.Advance(time.Hour)
		n, err = m.Prune(ctx, 0)
		require.NoError(t, err)
		require.Equal(t, 1, n, "revoked more than PruneAfter ago")
		_, err = m.Resolve(ctx, guestlink.KindCall, revoked)
		require.ErrorIs(t, err, guestlink.ErrNotFound)
		_, err = m.Resolve(ctx, guestlink.KindCall, live)
		require.ErrorIs(t, err, guestlink.ErrExpired, "expired, not yet pruned")

		n, err = m.Prune(ctx, time.Nanosecond)
		require.NoError(t, err)
		require.Equal(t, 1, n, "a keep of its own")
	})
}
