package rtcevent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ecMembership is what Element Call 0.26.1 sends when alice joins (its
// compatibility mode), with the focus of the test bed.
const ecMembership = `{"application":"m.call","call_id":"","scope":"m.room","device_id":"ALICEDEV",
 "membershipID":"@alice:localhost:ALICEDEV","expires":14400000,"m.call.intent":"audio",
 "focus_active":{"type":"livekit","focus_selection":"oldest_membership"},
 "foci_preferred":[{"type":"livekit","livekit_service_url":"http://127.0.0.1:8089","livekit_alias":"!room:localhost"}]}`

func TestParseMembership(t *testing.T) {
	m, err := ParseMembership(json.RawMessage(ecMembership))
	require.NoError(t, err)
	require.True(t, m.RoomCall())
	require.Equal(t, "ALICEDEV", m.DeviceID)
	require.Equal(t, SelectionOldest, m.FocusActive.Selection)
	require.True(t, m.FociPreferred[0].Usable())
	require.Equal(t, time.UnixMilli(1000+14400000), m.ExpiresAt(1000))

	_, err = ParseMembership(json.RawMessage(`{}`))
	require.ErrorIs(t, err, ErrNotMember)

	for raw, why := range map[string]string{
		`{"application":"m.call","call_id":"","device_id":"D","foci_preferred":[]}`:                                                    "focus_active has no type",
		`{"application":"m.call","device_id":"D","focus_active":{"type":"livekit"},"foci_preferred":[]}`:                               "call_id is not a string",
		`{"application":"m.call","call_id":"","device_id":"D","focus_active":{"type":"livekit"},"foci_preferred":[{}]}`:                "a focus in foci_preferred has no type",
		`{"application":"m.call","call_id":"","device_id":"D","focus_active":{"type":"livekit"},"foci_preferred":[],"expires":"soon"}`: "expires is not a number",
		`[1]`: "cannot unmarshal",
	} {
		_, err := ParseMembership(json.RawMessage(raw))
		require.ErrorContains(t, err, why, raw)
	}
}

func TestStateKeyAndIdentity(t *testing.T) {
	require.Equal(t, "_@bot:localhost_BOTDEV_m.call", StateKey("@bot:localhost", "BOTDEV"))
	require.Equal(t, "@bot:localhost:BOTDEV", Identity("@bot:localhost", "BOTDEV"))
}

// MSC4195's test vector.
func TestRoomAlias(t *testing.T) {
	require.Equal(t, "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc", RoomAlias("!roomid:example.com", "slot1234"))
}

func TestMembersAndFocus(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	bobFocus := `{"type":"livekit","livekit_service_url":"http://bob.example","livekit_alias":"!room:localhost"}`
	member := func(dev string, created int64, focus string) json.RawMessage {
		return json.RawMessage(`{"application":"m.call","call_id":"","device_id":"` + dev + `","created_ts":` +
			jsonInt(created) + `,"expires":3600000,"focus_active":{"type":"livekit"},"foci_preferred":[` + focus + `]}`)
	}
	events := []StateEvent{
		{Sender: "@alice:localhost", StateKey: StateKey("@alice:localhost", "A"), Content: member("A", 9_000_000, `{"type":"livekit"}`)},
		{Sender: "@bob:localhost", StateKey: StateKey("@bob:localhost", "B"), Content: member("B", 8_000_000, bobFocus)},
		// Left, expired, not of this device, malformed.
		{Sender: "@carol:localhost", StateKey: StateKey("@carol:localhost", "C"), Content: json.RawMessage(`{}`)},
		{Sender: "@dave:localhost", StateKey: StateKey("@dave:localhost", "D"), Content: member("D", 1_000, bobFocus)},
		{Sender: "@eve:localhost", StateKey: StateKey("@bob:localhost", "B"), Content: member("B", 9_500_000, bobFocus)},
		{Sender: "@frank:localhost", StateKey: StateKey("@frank:localhost", "F"), Content: json.RawMessage(`{"application":"m.call"}`)},
	}
	members, bad := Members(events, now)
	require.Len(t, members, 2)
	require.Equal(t, "@bob:localhost:B", members[0].Identity(), "oldest first")
	require.Equal(t, "@alice:localhost:A", members[1].Identity())
	require.Len(t, bad, 2)
	f, ok := OldestFocus(members)
	require.True(t, ok)
	require.Equal(t, "http://bob.example", f.ServiceURL)
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestEncryptionKeys(t *testing.T) {
	key := []byte("0123456789abcdef")
	sent := NewEncryptionKeys("!room:localhost", "@bot:localhost", "BOTDEV", 3, key, time.UnixMilli(5))
	raw, err := json.Marshal(sent)
	require.NoError(t, err)
	require.JSONEq(t, `{"keys":{"index":3,"key":"MDEyMzQ1Njc4OWFiY2RlZg=="},"room_id":"!room:localhost",
		"member":{"id":"@bot:localhost:BOTDEV","claimed_device_id":"BOTDEV"},
		"session":{"application":"m.call","call_id":"","scope":"m.room"},"sent_ts":5}`, string(raw))

	got, err := ParseEncryptionKeys(raw, "@bot:localhost", "!room:localhost")
	require.NoError(t, err)
	require.Equal(t, ReceivedKey{Identity: "@bot:localhost:BOTDEV", MemberID: "@bot:localhost:BOTDEV", Index: 3, Key: key, Sent: time.UnixMilli(5)}, got)

	_, err = ParseEncryptionKeys(raw, "@bot:localhost", "!other:localhost")
	require.ErrorContains(t, err, "for room")
	for raw, why := range map[string]string{
		`{"keys":{"index":0,"key":""},"room_id":"!r","member":{"claimed_device_id":"D"}}`:       "no key",
		`{"keys":{"key":"AAAA"},"room_id":"!r","member":{"claimed_device_id":"D"}}`:             "index",
		`{"keys":{"index":256,"key":"AAAA"},"room_id":"!r","member":{"claimed_device_id":"D"}}`: "index",
		`{"keys":{"index":1,"key":"AAAA"},"room_id":"!r","member":{}}`:                          "claimed_device_id",
		`{"keys":{"index":1,"key":"!!"},"room_id":"!r","member":{"claimed_device_id":"D"}}`:     "base64",
	} {
		_, err := ParseEncryptionKeys(json.RawMessage(raw), "@u:l", "!r")
		require.ErrorContains(t, err, why, raw)
	}
}

func TestNewRing(t *testing.T) {
	raw, err := json.Marshal(NewRing("$member", []string{"@bob:localhost"}, 5*time.Minute, false, time.UnixMilli(7)))
	require.NoError(t, err)
	require.JSONEq(t, `{"m.mentions":{"user_ids":["@bob:localhost"]},"notification_type":"ring",
		"m.relates_to":{"rel_type":"m.reference","event_id":"$member"},"sender_ts":7,"lifetime":90000,"m.call.intent":"audio"}`, string(raw))
}
