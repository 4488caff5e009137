package callevent

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLifetimeClamped: no lifetime wraps around as a duration; beyond
// MaxLifetime it is MaxLifetime, and fractions are truncated.
func TestLifetimeClamped(t *testing.T) {
	for raw, want := range map[string]time.Duration{
		"60000":               time.Minute,
		"60000.9":             time.Minute,
		"600000":              MaxLifetime,
		"10000000000000":      MaxLifetime, // 1e13 ms wrapped to a negative duration
		"9007199254740991":    MaxLifetime, // 2^53−1 wrapped to a positive one
		"1e20":                MaxLifetime, // beyond int64
		"9223372036854775807": MaxLifetime,
	} {
		var l Lifetime
		require.NoError(t, json.Unmarshal([]byte(raw), &l), raw)
		require.Equal(t, want, l.Duration(), raw)
		require.Equal(t, want == MaxLifetime && raw != "600000", l.Clamped(), raw)
	}
	var l Lifetime
	require.NoError(t, json.Unmarshal([]byte("-1e300"), &l))
	require.Equal(t, Lifetime(math.MinInt64), l)
	_, err := Parse(TypeInvite, json.RawMessage(`{"call_id":"c","version":"1","lifetime":-1e300,"offer":{"type":"offer","sdp":"v=0"}}`))
	require.ErrorContains(t, err, "must be a positive number")
}

// parseSeeds are contents of every type, valid and broken, for the fuzzer.
var parseSeeds = []struct {
	typ Type
	raw string
}{
	{TypeInvite, `{"call_id":"1732150000000abcdefghijklmnop","party_id":"JSDEVICE","version":"1","lifetime":60000,"invitee":"@bot:hs","offer":{"type":"offer","sdp":"v=0\r\n"},"capabilities":{"m.call.transferee":false,"m.call.dtmf":false},"org.matrix.msc3077.sdp_stream_metadata":{"s":{"purpose":"m.usermedia"}}}`},
	{TypeInvite, `{"call_id":"c0","version":0,"lifetime":1e13,"offer":{"type":"offer","sdp":"v=0"}}`},
	{TypeCandidates, `{"call_id":"c","party_id":"p","version":"1","candidates":[{"candidate":"candidate:1 1 udp 1 127.0.0.1 1 typ host","sdpMid":"0","sdpMLineIndex":0},{"candidate":""}]}`},
	{TypeAnswer, `{"call_id":"c","party_id":"p","version":1,"answer":{"type":"answer","sdp":"v=0"}}`},
	{TypeSelectAnswer, `{"call_id":"c","party_id":"p","version":"1","selected_party_id":"q"}`},
	{TypeReject, `{"call_id":"c","party_id":"p","version":"1","reason":"user_busy"}`},
	{TypeNegotiate, `{"call_id":"c","party_id":"p","version":"1","lifetime":10000,"description":{"type":"offer","sdp":"v=0"}}`},
	{TypeHangup, `{"call_id":"c","version":0,"reason":"ice_failed"}`},
	{TypeSDPStreamMetadataChanged, `{"call_id":"c","party_id":"p","version":"1","sdp_stream_metadata":{"s":{"purpose":"m.screenshare","audio_muted":true}}}`},
	{TypeSDPStreamMetadataChangedUnstable, `{"call_id":"c","party_id":"p","version":"1","org.matrix.msc3077.sdp_stream_metadata":{}}`},
	{TypeHangup, `[]`},
	{TypeCandidates, `{"call_id":"c","version":"1","candidates":[{"candidate":"x"}]}`},
}

// FuzzParse: no content of any call type makes Parse panic; what it accepts
// has a call ID, durations that are not negative, and survives being sent
// and read back.
func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds {
		for i, t := range Types {
			if t == s.typ {
				f.Add(uint8(i), s.raw)
			}
		}
	}
	f.Fuzz(func(t *testing.T, typeIndex uint8, raw string) {
		typ := Types[int(typeIndex)%len(Types)]
		c, err := Parse(typ, json.RawMessage(raw))
		if err != nil {
			return
		}
		require.NotEmpty(t, c.CallInfo().CallID)
		switch c := c.(type) {
		case *Invite:
			require.Positive(t, c.Lifetime.Duration())
			require.LessOrEqual(t, c.Lifetime.Duration(), MaxLifetime)
		case *Negotiate:
			require.LessOrEqual(t, c.Lifetime.Duration(), MaxLifetime)
		}
		out, err := Marshal(c)
		require.NoError(t, err)
		again, err := Parse(typ, out)
		require.NoError(t, err, "what we parsed, re-encoded, parses: %s", out)
		require.Equal(t, c.CallInfo().CallID, again.CallInfo().CallID)
	})
}
