package bridge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/bridge/leg"
)

func TestParseTarget(t *testing.T) {
	good := map[string]Target{
		"echo":                 {Kind: leg.KindEcho},
		"Tone":                 {Kind: leg.KindTone},
		"silence":              {Kind: leg.KindSilence},
		"file":                 {Kind: leg.KindFile},
		"matrix:@bob:hs.org":   {Kind: leg.KindMatrix, User: "@bob:hs.org"},
		"matrix:!abc:hs.org":   {Kind: leg.KindMatrix, Room: "!abc:hs.org"},
		"matrix:#room:hs.org":  {Kind: leg.KindMatrix, Alias: "#room:hs.org"},
		" matrix:@bob:hs.org ": {Kind: leg.KindMatrix, User: "@bob:hs.org"},
		"jami:0123456789ABCDEF0123456789abcdef01234567": {Kind: leg.KindJami, Jami: "0123456789abcdef0123456789abcdef01234567"},
		"xmpp:1002":        {Kind: leg.KindXMPP, XMPP: 1002},
		"rtc":              {Kind: leg.KindRTC},
		"RTC":              {Kind: leg.KindRTC},
		"rtc:!abc:hs.org":  {Kind: leg.KindRTC, Room: "!abc:hs.org"},
		"rtc:#room:hs.org": {Kind: leg.KindRTC, Alias: "#room:hs.org"},
		"rtc:@bob:hs.org":  {Kind: leg.KindRTC, User: "@bob:hs.org"},
	}
	for in, want := range good {
		got, err := ParseTarget(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
		again, err := ParseTarget(got.String())
		require.NoError(t, err)
		assert.Equal(t, got, again, "String is what ParseTarget reads")
	}
	bad := map[string]string{
		"":                    "is not a target",
		"music":               "is not a target",
		"@bob:hs.org":         "write a Matrix address as matrix:@bob:hs.org",
		"echo:x":              "takes no address",
		"jami:abc":            "not a Jami ID",
		"xmpp:abc":            "write a QuickBlox user id",
		"xmpp:0":              "write a QuickBlox user id",
		"xmpp:a-77@localhost": "write a QuickBlox user id",
		"sip:abc":             "not a kind of target",
		"matrix:bob":          "must be a user",
		"matrix:@bob":         "not a Matrix user ID",
		"matrix:@:hs":         "not a Matrix user ID",
		"matrix:!abc":         "not a room ID",
		"matrix:#r":           "not a room alias",
		"matrix:#r:hs x":      "not a room alias",
		"matrix:@b b:hs.org":  "not a Matrix user ID",
		"rtc:bob":             "write rtc for this room's Element Call",
		"rtc:!abc":            "write rtc for this room's Element Call",
	}
	for in, want := range bad {
		_, err := ParseTarget(in)
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), want, in)
	}
}

func TestAdmission(t *testing.T) {
	a := newAdmission(3, 2)
	assert.Empty(t, a.admit("a", "!r1", ""))
	assert.Empty(t, a.admit("a", "!r1", ""), "a leg's second admit is its slot")
	assert.Empty(t, a.admit("b", "!r1", ""))
	assert.Contains(t, a.admit("c", "!r1", ""), "in this room")
	assert.Empty(t, a.admit("c", "!r1", "b"), "the slot of the leg it replaces does not count")
	assert.Contains(t, a.admit("d", "!r2", ""), "3 calls in progress")
	a.release("a")
	a.release("never")
	assert.Empty(t, a.admit("d", "!r2", ""))
	assert.Equal(t, 3, a.held())
}

// Calls placed by command: a burst, then no more for a while, per user.
func TestCallLimiter(t *testing.T) {
	var l callLimiter
	for i := range commandCallBurst {
		assert.True(t, l.allow("@a:hs"), "call %d of the burst", i)
	}
	assert.False(t, l.allow("@a:hs"), "beyond the burst")
	assert.True(t, l.allow("@b:hs"), "another user has a limit of their own")
}
