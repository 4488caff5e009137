package store

import (
	"bufio"
	"context"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/store/upgrades"
)

func guestLink(id, room string, created time.Time, ttl time.Duration) GuestLink {
	return GuestLink{
		ID: id, TokenHash: id + "-hash", Room: room, CreatedBy: "@alice:example.com",
		CreatedAt: created, ExpiresAt: created.Add(ttl), Kind: "call",
	}
}

func TestGuestLinkRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	at := time.UnixMilli(1_800_000_000_123)

	got, err := st.LinkByTokenHash(ctx, "nothing")
	require.NoError(t, err)
	require.Nil(t, got)

	l := guestLink("0123456789", "!a:example.com", at, time.Hour)
	l.Video, l.Echo, l.Joins = true, true, 3
	ok, err := st.CreateLink(ctx, l)
	require.NoError(t, err)
	require.True(t, ok)
	got, err = st.LinkByTokenHash(ctx, l.TokenHash)
	require.NoError(t, err)
	require.Equal(t, &l, got, "times to the millisecond, RevokedAt zero")

	w := guestLink("abcdefabcd", "!a:example.com", at, time.Hour)
	w.Kind = "whep"
	ok, err = st.CreateLink(ctx, w)
	require.NoError(t, err)
	require.True(t, ok)
	got, err = st.LinkByTokenHash(ctx, w.TokenHash)
	require.NoError(t, err)
	require.Equal(t, "whep", got.Kind, "the kind is kept")
	w = guestLink("abcdefabce", "!a:example.com", at, time.Hour)
	w.Kind = "sip"
	_, err = st.CreateLink(ctx, w)
	require.Error(t, err, "a kind the schema does not know")

	same := guestLink(l.ID, "!b:example.com", at, time.Hour)
	same.TokenHash = "other-hash"
	ok, err = st.CreateLink(ctx, same)
	require.NoError(t, err)
	require.False(t, ok, "the id is taken")
	sameHash := guestLink("abcdefabcd", "!b:example.com", at, time.Hour)
	sameHash.TokenHash = l.TokenHash
	ok, err = st.CreateLink(ctx, sameHash)
	require.NoError(t, err)
	require.False(t, ok, "the token hash is taken")
	got, err = st.LinkByTokenHash(ctx, l.TokenHash)
	require.NoError(t, err)
	require.Equal(t, &l, got, "the first link is untouched")
}

func TestGuestLinkRevokeJoinsAndLive(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	at := time.UnixMilli(1_800_000_000_000)
	const room = "!a:example.com"
	old := guestLink("aaaaaaaaaa", room, at, time.Hour)
	mid := guestLink("bbbbbbbbbb", room, at.Add(time.Second), time.Minute)
	tie := guestLink("cccccccccc", room, at.Add(time.Second), time.Hour)
	elsewhere := guestLink("dddddddddd", "!b:example.com", at.Add(2*time.Second), time.Hour)
	for _, l := range []GuestLink{old, mid, tie, elsewhere} {
		ok, err := st.CreateLink(ctx, l)
		require.NoError(t, err)
		require.True(t, ok)
	}

	live, err := st.LiveLinks(ctx, room, at.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, []GuestLink{mid, tie, old}, live, "newest first, then by id")
	live, err = st.LiveLinks(ctx, room, mid.ExpiresAt)
	require.NoError(t, err)
	require.Equal(t, []GuestLink{tie, old}, live, "a link is not live at its expiry")

	ok, err := st.RevokeLink(ctx, "!b:example.com", old.ID, at)
	require.NoError(t, err)
	require.False(t, ok, "not a link of that room")
	ok, err = st.RevokeLink(ctx, room, "eeeeeeeeee", at)
	require.NoError(t, err)
	require.False(t, ok)
	ok, err = st.RevokeLink(ctx, room, old.ID, at.Add(time.Minute))
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = st.RevokeLink(ctx, room, old.ID, at.Add(2*time.Minute))
	require.NoError(t, err)
	require.True(t, ok, "revoking again finds the link")
	got, err := st.LinkByTokenHash(ctx, old.TokenHash)
	require.NoError(t, err)
	require.Equal(t, at.Add(time.Minute), got.RevokedAt, "the first revocation is kept")
	live, err = st.LiveLinks(ctx, room, at.Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, []GuestLink{mid, tie}, live, "a revoked link is not live")

	for range 2 {
		ok, err = st.CountLinkJoin(ctx, tie.ID)
		require.NoError(t, err)
		require.True(t, ok)
	}
	ok, err = st.CountLinkJoin(ctx, "eeeeeeeeee")
	require.NoError(t, err)
	require.False(t, ok)
	got, err = st.LinkByTokenHash(ctx, tie.TokenHash)
	require.NoError(t, err)
	require.Equal(t, 2, got.Joins)
}

func TestPruneLinks(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	at := time.UnixMilli(1_800_000_000_000)
	expired := guestLink("aaaaaaaaaa", "!a:x", at, time.Hour)
	revoked := guestLink("bbbbbbbbbb", "!a:x", at, 30*24*time.Hour)
	live := guestLink("cccccccccc", "!a:x", at, 30*24*time.Hour)
	for _, l := range []GuestLink{expired, revoked, live} {
		ok, err := st.CreateLink(ctx, l)
		require.NoError(t, err)
		require.True(t, ok)
	}
	_, err := st.RevokeLink(ctx, "!a:x", revoked.ID, at.Add(2*time.Hour))
	require.NoError(t, err)

	n, err := st.PruneLinks(ctx, expired.ExpiresAt)
	require.NoError(t, err)
	require.Zero(t, n, "expired at before, not before it")
	n, err = st.PruneLinks(ctx, at.Add(2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	got, err := st.LinkByTokenHash(ctx, expired.TokenHash)
	require.NoError(t, err)
	require.Nil(t, got)
	n, err = st.PruneLinks(ctx, at.Add(2*time.Hour+time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, 1, n, "revoked before before")
	got, err = st.LinkByTokenHash(ctx, revoked.TokenHash)
	require.NoError(t, err)
	require.Nil(t, got)
	got, err = st.LinkByTokenHash(ctx, live.TokenHash)
	require.NoError(t, err)
	require.NotNil(t, got, "neither expired nor revoked")
}

func TestGuestLinkTableSchema(t *testing.T) {
	tables := schema(t, openTest(t).db)
	require.Contains(t, tables, "table guest_link")
	require.Contains(t, tables, "index guest_link_room_idx")
	require.Contains(t, tables, "table jami_contact")
	require.NotContains(t, tables["table guest_link"], "token TEXT", "only the token's hash is kept")
}

// TestLatestRevisionIsTheNewest checks that 00-latest.sql brings a fresh
// database to the newest version in one step. (If it lags, fresh databases
// still end right by running the numbered files after it, and the
// upgrade-path test cannot tell: this one can.)
func TestLatestRevisionIsTheNewest(t *testing.T) {
	f, err := os.Open("upgrades/00-latest.sql")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	require.True(t, sc.Scan())
	m := regexp.MustCompile(`^-- v0 -> v(\d+)[ :]`).FindStringSubmatch(sc.Text())
	require.NotNil(t, m, "header %q", sc.Text())
	to, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.Equal(t, len(upgrades.Table), to, "update 00-latest.sql with each new numbered file")
}
