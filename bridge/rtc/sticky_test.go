package rtc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"

	"github.com/voipbot/voipbot/matrix/rtcevent"
)

// rtc.membership: sticky asks for the sticky shape, which a homeserver
// without sticky events cannot carry (the state shape is sent instead).
func TestPickMembership(t *testing.T) {
	for _, c := range []struct {
		cfg            string
		server, sticky bool
	}{{"", true, false}, {MembershipState, true, false}, {MembershipSticky, false, false}, {MembershipSticky, true, true}} {
		mx := &fakeMatrix{sent: make(chan sentKey, 1), sticky: c.server}
		m := New(context.Background(), Config{Membership: c.cfg}, mx, zerolog.Nop())
		l, err := m.Join("!r:hs", JoinOptions{}, nil)
		require.NoError(t, err)
		assert.Equal(t, c.sticky, l.pickMembership(context.Background()).sticky(), "%+v", c)
	}
	assert.ErrorContains(t, Config{Membership: "both"}.Validate(), "rtc.membership")
}

// The sticky membership: the shape js-sdk sends, for MembershipExpiry
// without delayed events (refreshed at half), and a leave with only the
// sticky key.
func TestStickyMembershipSends(t *testing.T) {
	mx := &fakeMatrix{sent: make(chan sentKey, 1), sticky: true}
	m := New(context.Background(), Config{Membership: MembershipSticky}, mx, zerolog.Nop())
	l, err := m.Join("!r:hs", JoinOptions{Video: true}, nil)
	require.NoError(t, err)
	ms := l.pickMembership(context.Background())
	focus := rtcevent.Focus{Type: "livekit", ServiceURL: "http://jwt", Alias: "!r:hs"}
	_, err = ms.send(context.Background(), focus, time.Now(), time.Now())
	require.NoError(t, err)
	require.NoError(t, ms.leave(context.Background()))
	require.Len(t, mx.stickySent, 2)
	assert.Equal(t, Defaults.MembershipExpiry, mx.stickySent[0].duration)
	assert.Equal(t, Defaults.MembershipExpiry/2, ms.refreshEvery())

	b, err := json.Marshal(mx.stickySent[0].content)
	require.NoError(t, err)
	got, err := rtcevent.ParseRTCMember(b, "@bot:hs")
	require.NoError(t, err)
	assert.Equal(t, "video", got.Application.Intent)
	assert.Equal(t, "http://jwt", got.Transports.Published[0].ServiceURL)
	assert.Equal(t, "@bot:hs:BOT", got.StickyKey)
	b, err = json.Marshal(mx.stickySent[1].content)
	require.NoError(t, err)
	assert.JSONEq(t, `{"msc4354_sticky_key":"@bot:hs:BOT"}`, string(b))
}

// /get_token gets what Element Call sends it, and an old service without
// it is named as the reason.
func TestGetToken(t *testing.T) {
	var body map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/get_token" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		_, _ = w.Write([]byte(`{"url":"ws://127.0.0.1:1","jwt":"t"}`))
	}))
	defer srv.Close()
	m := New(context.Background(), Config{}, &fakeMatrix{}, zerolog.Nop())
	oid := &mautrix.RespOpenIDToken{AccessToken: "a", TokenType: "Bearer", MatrixServerName: "hs", ExpiresIn: 3600}
	access, err := m.getToken(context.Background(), srv.URL, "!r:hs", oid, "@bot:hs", "BOT")
	require.NoError(t, err)
	assert.Equal(t, "t", access.JWT)
	assert.Equal(t, map[string]any{
		"room_id": "!r:hs", "slot_id": "m.call#ROOM",
		"openid_token": map[string]any{"access_token": "a", "token_type": "Bearer", "matrix_server_name": "hs", "expires_in": float64(3600)},
		"member":       map[string]any{"id": "@bot:hs:BOT", "claimed_user_id": "@bot:hs", "claimed_device_id": "BOT"},
	}, body)

	old := httptest.NewServer(http.NotFoundHandler())
	defer old.Close()
	_, err = m.getToken(context.Background(), old.URL, "!r:hs", oid, "@bot:hs", "BOT")
	assert.ErrorContains(t, err, "has no /get_token")
}

// A sticky member's key is filed under its hashed LiveKit identity too,
// and the room's sticky memberships are kept until they lapse.
func TestStickyMembersAndKeys(t *testing.T) {
	m := New(context.Background(), Config{}, &fakeMatrix{sent: make(chan sentKey, 8)}, zerolog.Nop())
	l, err := m.Join("!r:hs", JoinOptions{}, nil)
	require.NoError(t, err)
	key := base64.StdEncoding.EncodeToString(make([]byte, 16))
	raw := json.RawMessage(`{"keys":{"index":0,"key":"` + key + `"},"room_id":"!r:hs","member":{"id":"@a:hs:A","claimed_device_id":"A"},"session":{"application":"m.call","call_id":"","scope":"m.room"},"sent_ts":1}`)
	require.NoError(t, m.KeysReceived("@a:hs", "A", true, raw))
	assert.True(t, l.keys.Has("@a:hs:A"))
	assert.True(t, l.keys.Has(rtcevent.HashedIdentity("@a:hs", "A", "@a:hs:A")))
	// Element Call's matrix_2_0 mode names a member by a UUID.
	raw = json.RawMessage(`{"keys":{"index":0,"key":"` + key + `"},"room_id":"!r:hs","member":{"id":"9b1c","claimed_device_id":"B"},"sent_ts":1}`)
	require.NoError(t, m.KeysReceived("@b:hs", "B", true, raw))
	assert.True(t, l.keys.Has(rtcevent.HashedIdentity("@b:hs", "B", "9b1c")))

	content, err := json.Marshal(rtcevent.NewRTCMember("@a:hs", "A", "http://jwt", false))
	require.NoError(t, err)
	now := time.Now()
	m.StickyMembership("!r:hs", rtcevent.StickyEvent{Sender: "@a:hs", EventID: "$1", OriginServerTS: now.UnixMilli(), Until: now.Add(time.Hour), Content: content})
	m.StickyMembership("!r:hs", rtcevent.StickyEvent{Sender: "@a:hs", EventID: "$old", Until: now.Add(-time.Second), Content: content})
	m.StickyMembership("!r:hs", rtcevent.StickyEvent{Sender: "@a:hs", EventID: "$1", OriginServerTS: now.UnixMilli(), Until: now.Add(time.Hour), Content: content})
	require.Len(t, m.stickyEvents("!r:hs"), 1)
	members, err := l.readMembers(context.Background())
	require.NoError(t, err)
	require.Len(t, members, 1)
	assert.Equal(t, rtcevent.HashedIdentity("@a:hs", "A", "@a:hs:A"), members[0].Identity())
	assert.True(t, (*l.members.Load())[members[0].Identity()])
}
