package rtc

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/rtcevent"
	"github.com/voipbot/voipbot/voip/livekit"
)

// fakeMatrix records the media keys sent.
type fakeMatrix struct {
	sent chan sentKey
	// sticky: the homeserver has sticky events; stickySent is what was
	// sent as one.
	sticky     bool
	stickySent []stickySend
}

type stickySend struct {
	content  any
	duration time.Duration
}

type sentKey struct {
	to    map[id.UserID][]id.DeviceID
	index int
	key   string
}

func (f *fakeMatrix) UserID() id.UserID     { return "@bot:hs" }
func (f *fakeMatrix) DeviceID() id.DeviceID { return "BOT" }
func (f *fakeMatrix) CallMemberships(context.Context, id.RoomID) ([]rtcevent.StateEvent, error) {
	return nil, nil
}
func (f *fakeMatrix) SetCallMembership(context.Context, id.RoomID, any) (id.EventID, error) {
	return "$m", nil
}
func (f *fakeMatrix) MaySendState(context.Context, id.RoomID, id.UserID, string) (bool, error) {
	return true, nil
}
func (f *fakeMatrix) OpenIDToken(context.Context) (*mautrix.RespOpenIDToken, error) {
	return &mautrix.RespOpenIDToken{}, nil
}
func (f *fakeMatrix) SendRoomEvent(context.Context, id.RoomID, string, any) (id.EventID, error) {
	return "$e", nil
}
func (f *fakeMatrix) RoomEncrypted(context.Context, id.RoomID) (bool, error) { return true, nil }
func (f *fakeMatrix) CanEncrypt() bool                                       { return true }
func (f *fakeMatrix) SendEncryptedToDevice(_ context.Context, t string, content any, to map[id.UserID][]id.DeviceID) error {
	k := content.(rtcevent.EncryptionKeys)
	f.sent <- sentKey{to: to, index: k.Keys.Index, key: k.Keys.Key}
	return nil
}

func (f *fakeMatrix) DelayedEvents(context.Context) bool { return false }
func (f *fakeMatrix) WellKnownFoci(context.Context) ([]rtcevent.Focus, error) {
	return nil, nil
}
func (f *fakeMatrix) ScheduleCallLeave(context.Context, id.RoomID, time.Duration) (string, error) {
	return "", nil
}
func (f *fakeMatrix) UpdateDelayedEvent(context.Context, string, event.DelayAction) error { return nil }
func (f *fakeMatrix) StickyEvents(context.Context) bool                                   { return f.sticky }
func (f *fakeMatrix) SendStickyMembership(_ context.Context, _ id.RoomID, content any, d time.Duration) (id.EventID, error) {
	f.stickySent = append(f.stickySent, stickySend{content: content, duration: d})
	return "$s", nil
}
func (f *fakeMatrix) ScheduleStickyLeave(context.Context, id.RoomID, time.Duration, time.Duration) (string, error) {
	return "", nil
}

func member(user, dev string) rtcevent.Member { return rtcevent.Member{User: user, Device: dev} }

// The key schedule of an encrypted call: the first key to everyone; a
// newcomer soon after gets the same key; a newcomer later, or anyone
// leaving, makes a new key (the next index) for everyone.
func TestKeySchedule(t *testing.T) {
	mx := &fakeMatrix{sent: make(chan sentKey, 8)}
	m := New(context.Background(), Config{}, mx, zerolog.Nop())
	l, err := m.Join("!r:hs", JoinOptions{}, nil)
	require.NoError(t, err)
	l.encrypted = true
	next := func() sentKey {
		t.Helper()
		select {
		case k := <-mx.sent:
			return k
		case <-time.After(5 * time.Second):
			t.Fatal("no key was sent")
			return sentKey{}
		}
	}
	none := func() {
		t.Helper()
		select {
		case k := <-mx.sent:
			t.Fatalf("a key was sent: %+v", k)
		default:
		}
	}

	alice, bob, carol := member("@a:hs", "A"), member("@b:hs", "B"), member("@c:hs", "C")
	l.keysFor([]rtcevent.Member{alice})
	first := next()
	require.Equal(t, 0, first.index)
	require.Equal(t, map[id.UserID][]id.DeviceID{"@a:hs": {"A"}}, first.to)

	l.keysFor([]rtcevent.Member{alice, bob})
	k := next()
	require.Equal(t, first.key, k.key, "a newcomer within 10 s gets the current key")
	require.Equal(t, map[id.UserID][]id.DeviceID{"@b:hs": {"B"}}, k.to, "only the newcomer")
	l.keysFor([]rtcevent.Member{alice, bob})
	none()

	l.keysFor([]rtcevent.Member{alice})
	k = next()
	require.Equal(t, 1, k.index, "bob left: a new key")
	require.NotEqual(t, first.key, k.key)
	require.Equal(t, map[id.UserID][]id.DeviceID{"@a:hs": {"A"}}, k.to)

	l.key.made = time.Now().Add(-keyReuseAge)
	l.keysFor([]rtcevent.Member{alice, carol})
	k = next()
	require.Equal(t, 2, k.index, "a newcomer after 10 s: a new key")
	require.Len(t, k.to, 2, "to everyone")
	require.Len(t, l.keyTimers, 2, "each new key is used only after a delay")
	l.stopKeyTimers()
	m.Close()
}

// Keys received: only over Olm, from the device they claim, for a call
// the bot is in.
func TestKeysReceived(t *testing.T) {
	mx := &fakeMatrix{sent: make(chan sentKey, 8)}
	m := New(context.Background(), Config{}, mx, zerolog.Nop())
	l, err := m.Join("!r:hs", JoinOptions{}, nil)
	require.NoError(t, err)
	raw, err := json.Marshal(rtcevent.NewEncryptionKeys("!r:hs", "@a:hs", "A", 3, []byte("0123456789abcdef"), time.Now()))
	require.NoError(t, err)

	require.ErrorContains(t, m.KeysReceived("@a:hs", "A", false, raw), "in the clear")
	require.ErrorContains(t, m.KeysReceived("@a:hs", "OTHER", true, raw), "another device")
	other, err := json.Marshal(rtcevent.NewEncryptionKeys("!elsewhere:hs", "@a:hs", "A", 3, []byte("0123456789abcdef"), time.Now()))
	require.NoError(t, err)
	require.ErrorContains(t, m.KeysReceived("@a:hs", "A", true, other), "not in")
	require.False(t, l.keys.Has("@a:hs:A"))

	require.NoError(t, m.KeysReceived("@a:hs", "A", true, raw))
	require.True(t, l.keys.Has("@a:hs:A"))
	var enc livekit.Encryptor
	require.NoError(t, enc.SetKey(3, []byte("0123456789abcdef")))
	frame, err := enc.EncryptOpus(nil, []byte{1, 2, 3, 4})
	require.NoError(t, err)
	plain, err := l.keys.DecryptOpus(nil, frame, "@a:hs:A")
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2, 3, 4}, plain)
}
