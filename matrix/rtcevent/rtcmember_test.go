package rtcevent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jsSDKSticky is a membership as js-sdk's StickyEventMembershipManager
// makes it (Element Call 0.26.1's bundle), with the key it adds on send.
const jsSDKSticky = `{"application":{"type":"m.call","m.call.intent":"video"},"slot_id":"m.call#ROOM",
 "transports":{"published":[{"type":"livekit","livekit_service_url":"https://lk.example/jwt"}],"can_subscribe":["livekit"]},
 "member":{"device_id":"DEV","user_id":"@a:x","id":"@a:x:DEV"},"versions":[],"msc4354_sticky_key":"@a:x:DEV"}`

func TestParseRTCMemberAsJSSDKSendsIt(t *testing.T) {
	m, err := ParseRTCMember(json.RawMessage(jsSDKSticky), "@a:x")
	require.NoError(t, err)
	assert.Equal(t, RoomSlot, m.SlotID)
	assert.Equal(t, "video", m.Application.Intent)
	assert.Equal(t, RTCMemberID{UserID: "@a:x", DeviceID: "DEV", ID: "@a:x:DEV"}, m.Member)
	assert.Equal(t, "https://lk.example/jwt", m.Transports.Published[0].ServiceURL)
	assert.Equal(t, "@a:x:DEV", m.StickyKey)
}

func TestNewRTCMemberParsesBack(t *testing.T) {
	b, err := json.Marshal(NewRTCMember("@bot:x", "BOT", "http://127.0.0.1:1/jwt", false))
	require.NoError(t, err)
	m, err := ParseRTCMember(b, "@bot:x")
	require.NoError(t, err)
	assert.Equal(t, "audio", m.Application.Intent)
	assert.Equal(t, []string{"livekit"}, m.Transports.CanSubscribe)
	assert.Equal(t, "@bot:x:BOT", m.StickyKey)
	// Every field js-sdk requires is on the wire, empty lists included.
	var raw map[string]any
	require.NoError(t, json.Unmarshal(b, &raw))
	assert.Equal(t, []any{}, raw["versions"])

	leave, err := json.Marshal(RTCLeave("@bot:x", "BOT"))
	require.NoError(t, err)
	assert.JSONEq(t, `{"msc4354_sticky_key":"@bot:x:BOT"}`, string(leave))
	_, err = ParseRTCMember(leave, "@bot:x")
	assert.ErrorIs(t, err, ErrNotMember)
}

func TestParseRTCMemberRefuses(t *testing.T) {
	for name, c := range map[string]struct{ content, sender, want string }{
		"another user":      {jsSDKSticky, "@b:x", "member.user_id is not the sender"},
		"no transports":     {`{"application":{"type":"m.call"},"slot_id":"m.call#ROOM","member":{"user_id":"@a:x","device_id":"D","id":"i"},"versions":[],"msc4354_sticky_key":"i"}`, "@a:x", "transports"},
		"slot of other app": {`{"application":{"type":"m.call"},"slot_id":"x#ROOM","member":{"user_id":"@a:x","device_id":"D","id":"i"},"transports":{"published":[],"can_subscribe":[]},"versions":[],"msc4354_sticky_key":"i"}`, "@a:x", "slot_id"},
		"no sticky key":     {`{"application":{"type":"m.call"},"slot_id":"m.call#ROOM","member":{"user_id":"@a:x","device_id":"D","id":"i"},"transports":{"published":[],"can_subscribe":[]},"versions":[]}`, "@a:x", "no sticky key"},
		"keys differ":       {`{"application":{"type":"m.call"},"slot_id":"m.call#ROOM","member":{"user_id":"@a:x","device_id":"D","id":"i"},"transports":{"published":[],"can_subscribe":[]},"versions":[],"msc4354_sticky_key":"i","sticky_key":"j"}`, "@a:x", "differ"},
		"untyped transport": {`{"application":{"type":"m.call"},"slot_id":"m.call#ROOM","member":{"user_id":"@a:x","device_id":"D","id":"i"},"transports":{"published":[{}],"can_subscribe":[]},"versions":[],"msc4354_sticky_key":"i"}`, "@a:x", "no type"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseRTCMember(json.RawMessage(c.content), c.sender)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	_, err := ParseRTCMember(json.RawMessage(`[1]`), "@a:x")
	assert.Error(t, err)
}

func TestHashedIdentityIsJSSDKs(t *testing.T) {
	// The value node's crypto gives for js-sdk's computeRtcIdentityRaw
	// over the same three strings.
	assert.Equal(t, "F4+VBoXEdJdur7Qb9lqAZZ19ZtGaO//2r8da3USLjXg", HashedIdentity("@bot:localhost", "BOTDEV", "@bot:localhost:BOTDEV"))
}

func TestStickyMembers(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	until := now.Add(time.Hour)
	join := func(sender, device string, ts int64) StickyEvent {
		b, _ := json.Marshal(NewRTCMember(sender, device, "http://jwt", false))
		return StickyEvent{Sender: sender, EventID: "$" + sender + device, OriginServerTS: ts, Until: until, Content: b}
	}
	leave := func(sender, device string, ts int64) StickyEvent {
		b, _ := json.Marshal(RTCLeave(sender, device))
		return StickyEvent{Sender: sender, EventID: "$l" + sender + device, OriginServerTS: ts, Until: until, Content: b}
	}
	expired := join("@c:x", "C", 10)
	expired.Until = now
	members, bad := StickyMembers("!r:x", []StickyEvent{
		join("@b:x", "B", 200), join("@a:x", "A", 100),
		join("@gone:x", "G", 100), leave("@gone:x", "G", 300),
		expired,
		{Sender: "@m:x", EventID: "$m", OriginServerTS: 5, Until: until, Content: json.RawMessage(`{"application":{"type":"m.call"},"msc4354_sticky_key":"k"}`)},
	}, now)
	require.Len(t, bad, 1)
	require.Len(t, members, 2)
	assert.Equal(t, "@a:x", members[0].User)
	assert.Equal(t, HashedIdentity("@a:x", "A", "@a:x:A"), members[0].Identity())
	assert.Equal(t, Focus{Type: "livekit", ServiceURL: "http://jwt", Alias: "!r:x"}, members[0].Transport)

	f, ok := OldestFocus(members)
	require.True(t, ok)
	assert.Equal(t, "!r:x", f.Alias)

	// A device with both kinds is its sticky membership.
	state := []Member{{User: "@a:x", Device: "A", Joined: time.UnixMilli(50)}, {User: "@s:x", Device: "S", Joined: time.UnixMilli(150)}}
	all := Combine(state, members)
	require.Len(t, all, 3)
	assert.Equal(t, []string{members[0].Identity(), "@s:x:S", members[1].Identity()}, []string{all[0].Identity(), all[1].Identity(), all[2].Identity()})
}
