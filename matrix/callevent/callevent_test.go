package callevent

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func ptr[T any](v T) *T { return &v }

// What other clients really send, and what we must make of it.
func TestParse(t *testing.T) {
	tests := []struct {
		name string
		typ  Type
		raw  string
		want Content
	}{{
		name: "js-sdk invite",
		typ:  TypeInvite,
		raw: `{"call_id":"1732150000000abcdefghijklmnop","party_id":"JSDEVICE","version":"1","lifetime":60000,
			"offer":{"type":"offer","sdp":"v=0\r\n"},"invitee":"@bot:localhost",
			"capabilities":{"m.call.transferee":false,"m.call.dtmf":false},
			"sdp_stream_metadata":{"stream1":{"purpose":"m.usermedia","audio_muted":false,"video_muted":true}}}`,
		want: &Invite{
			Common:       Common{CallID: "1732150000000abcdefghijklmnop", PartyID: "JSDEVICE", Version: Version1},
			Offer:        SessionDescription{Type: SDPOffer, SDP: "v=0\r\n"},
			Lifetime:     60000,
			Invitee:      "@bot:localhost",
			Capabilities: &Capabilities{},
			StreamMetadata: StreamMetadata{Metadata: Streams{
				"stream1": {Purpose: PurposeUserMedia, VideoMuted: true},
			}},
		},
	}, {
		name: "legacy version 0 invite without party_id",
		typ:  TypeInvite,
		raw:  `{"call_id":"c0","version":0,"lifetime":30000,"offer":{"type":"offer","sdp":"v=0"}}`,
		want: &Invite{Common: Common{CallID: "c0", Version: Version0}, Offer: SessionDescription{Type: SDPOffer, SDP: "v=0"}, Lifetime: 30000},
	}, {
		name: "numeric version 1 is version 1",
		typ:  TypeAnswer,
		raw:  `{"call_id":"c1","party_id":"p","version":1,"answer":{"type":"answer","sdp":"v=0"}}`,
		want: &Answer{Common: Common{CallID: "c1", PartyID: "p", Version: Version1}, Answer: SessionDescription{Type: SDPAnswer, SDP: "v=0"}},
	}, {
		name: "unknown version is version 1",
		typ:  TypeReject,
		raw:  `{"call_id":"c1","party_id":"p","version":"2"}`,
		want: &Reject{Common: Common{CallID: "c1", PartyID: "p", Version: Version1}},
	}, {
		name: "famedly party id (base64) and camelCase hangup reason",
		typ:  TypeHangup,
		raw:  `{"call_id":"c2","party_id":"q+/Z0aB=","version":"1","reason":"userHangup"}`,
		want: &Hangup{Common: Common{CallID: "c2", PartyID: "q+/Z0aB=", Version: Version1}, Reason: "userHangup"},
	}, {
		name: "hangup without reason",
		typ:  TypeHangup,
		raw:  `{"call_id":"c2","party_id":"p","version":"1"}`,
		want: &Hangup{Common: Common{CallID: "c2", PartyID: "p", Version: Version1}},
	}, {
		name: "candidates with end marker",
		typ:  TypeCandidates,
		raw: `{"call_id":"c3","party_id":"p","version":"1","candidates":[
			{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0},
			{"candidate":"candidate:2 1 udp 2122260223 127.0.0.1 5002 typ host","sdpMLineIndex":1},
			{"candidate":""}]}`,
		want: &Candidates{Common: Common{CallID: "c3", PartyID: "p", Version: Version1}, Candidates: []Candidate{
			{Candidate: "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host", SDPMid: ptr("0"), SDPMLineIndex: ptr[uint16](0)},
			{Candidate: "candidate:2 1 udp 2122260223 127.0.0.1 5002 typ host", SDPMLineIndex: ptr[uint16](1)},
			{},
		}},
	}, {
		name: "mautrix-style end marker with empty sdpMid",
		typ:  TypeCandidates,
		raw:  `{"call_id":"c3","party_id":"p","version":"1","candidates":[{"candidate":"","sdpMid":"","sdpMLineIndex":0}]}`,
		want: &Candidates{Common: Common{CallID: "c3", PartyID: "p", Version: Version1}, Candidates: []Candidate{
			{SDPMid: ptr(""), SDPMLineIndex: ptr[uint16](0)},
		}},
	}, {
		name: "select_answer",
		typ:  TypeSelectAnswer,
		raw:  `{"call_id":"c4","party_id":"p","version":"1","selected_party_id":"other"}`,
		want: &SelectAnswer{Common: Common{CallID: "c4", PartyID: "p", Version: Version1}, SelectedPartyID: "other"},
	}, {
		name: "negotiate offer with unstable metadata key",
		typ:  TypeNegotiate,
		raw: `{"call_id":"c5","party_id":"p","version":"1","lifetime":10000,"description":{"type":"offer","sdp":"v=0"},
			"org.matrix.msc3077.sdp_stream_metadata":{"s":{"purpose":"m.screenshare"}}}`,
		want: &Negotiate{
			Common: Common{CallID: "c5", PartyID: "p", Version: Version1}, Lifetime: 10000,
			Description:    SessionDescription{Type: SDPOffer, SDP: "v=0"},
			StreamMetadata: StreamMetadata{UnstableMetadata: Streams{"s": {Purpose: PurposeScreenshare}}},
		},
	}, {
		name: "metadata changed with the spec example's typo",
		typ:  TypeSDPStreamMetadataChangedUnstable,
		raw:  `{"call_id":"c6","party_id":"p","version":"1","sdp_stream_metadata":{"s":{"purpose":"m.usermedia","audio_muted:":true,"video_muted":true}}}`,
		want: &SDPStreamMetadataChanged{
			Common:         Common{CallID: "c6", PartyID: "p", Version: Version1},
			StreamMetadata: StreamMetadata{Metadata: Streams{"s": {Purpose: PurposeUserMedia, AudioMuted: true, VideoMuted: true}}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.typ, json.RawMessage(tt.raw))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		typ  Type
		raw  string
		want string
	}{
		{TypeInvite, `{"party_id":"p","version":"1","lifetime":1,"offer":{"type":"offer","sdp":"v=0"}}`, "invalid m.call.invite: call_id is missing"},
		{TypeInvite, `{"call_id":"c","version":"1","lifetime":60000,"offer":{"type":"answer","sdp":"v=0"}}`, `invalid m.call.invite: offer.type is "answer", want ["offer"]`},
		{TypeInvite, `{"call_id":"c","version":"1","lifetime":60000,"offer":{"type":"offer"}}`, "invalid m.call.invite: offer.sdp is missing"},
		{TypeInvite, `{"call_id":"c","version":"1","offer":{"type":"offer","sdp":"v=0"}}`, "invalid m.call.invite: lifetime is 0 (must be a positive number of milliseconds)"},
		{TypeInvite, `{"call_id":"c","version":"1","lifetime":"soon","offer":{"type":"offer","sdp":"v=0"}}`, `parsing m.call.invite content: lifetime: "soon" is not a number of milliseconds`},
		{TypeAnswer, `{"call_id":"c","version":"1"}`, "invalid m.call.answer: answer.sdp is missing"},
		{TypeCandidates, `{"call_id":"c","version":"1"}`, "invalid m.call.candidates: candidates is missing"},
		{TypeCandidates, `{"call_id":"c","version":"1","candidates":[{"candidate":"candidate:1 1 udp 1 127.0.0.1 1 typ host"}]}`, "invalid m.call.candidates: candidates[0] has neither sdpMid nor sdpMLineIndex"},
		{TypeSelectAnswer, `{"call_id":"c","version":"1"}`, "invalid m.call.select_answer: selected_party_id is missing"},
		{TypeNegotiate, `{"call_id":"c","version":"1","description":{"type":"pranswer","sdp":"v=0"}}`, `invalid m.call.negotiate: description.type is "pranswer", want ["offer" "answer"]`},
		{TypeSDPStreamMetadataChanged, `{"call_id":"c","version":"1"}`, "invalid m.call.sdp_stream_metadata_changed: sdp_stream_metadata is missing"},
		{TypeHangup, `[]`, "parsing m.call.hangup content: json: cannot unmarshal array into Go value of type callevent.Hangup"},
		{"m.room.message", `{}`, "m.room.message is not a call event type"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.typ, json.RawMessage(tt.raw))
		assert.EqualError(t, err, tt.want, "%s %s", tt.typ, tt.raw)
	}
}

// What we send, byte for byte (go test -update rewrites the files).
func TestGolden(t *testing.T) {
	common := Common{CallID: "1732150000000AbCdEfGhIjKlMnOp", PartyID: "VOIPBOT1", Version: Version1}
	streams := Streams{"voipbot": {Purpose: PurposeUserMedia}}
	withStreams := StreamMetadata{}
	withStreams.SetStreams(streams)
	tests := map[string]Content{
		"invite": &Invite{Common: common, Offer: SessionDescription{Type: SDPOffer, SDP: "v=0\r\n"}, Lifetime: 60000,
			Invitee: "@alice:localhost", Capabilities: &Capabilities{}, StreamMetadata: withStreams},
		"answer":      &Answer{Common: common, Answer: SessionDescription{Type: SDPAnswer, SDP: "v=0\r\n"}, Capabilities: &Capabilities{}, StreamMetadata: withStreams},
		"answer-v0":   &Answer{Common: Common{CallID: "legacy", Version: Version0}, Answer: SessionDescription{Type: SDPAnswer, SDP: "v=0\r\n"}},
		"candidates":  &Candidates{Common: common, Candidates: []Candidate{{Candidate: "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host", SDPMid: ptr("0"), SDPMLineIndex: ptr[uint16](0)}, EndOfCandidates()}},
		"select":      &SelectAnswer{Common: common, SelectedPartyID: "JSDEVICE"},
		"reject":      &Reject{Common: common},
		"reject-busy": &Reject{Common: common, Reason: ReasonUserBusy},
		"negotiate":   &Negotiate{Common: common, Description: SessionDescription{Type: SDPAnswer, SDP: "v=0\r\n"}, Lifetime: 10000, StreamMetadata: withStreams},
		"hangup":      &Hangup{Common: common, Reason: ReasonUserBusy},
		"metadata":    &SDPStreamMetadataChanged{Common: common, StreamMetadata: withStreams},
	}
	for name, c := range tests {
		t.Run(name, func(t *testing.T) {
			raw, err := Marshal(c)
			require.NoError(t, err)
			var indented json.RawMessage
			require.NoError(t, json.Unmarshal(raw, &indented))
			pretty, err := json.MarshalIndent(indented, "", "  ")
			require.NoError(t, err)
			path := filepath.Join("testdata", name+".json")
			if *update {
				require.NoError(t, os.WriteFile(path, append(pretty, '\n'), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.JSONEq(t, string(want), string(raw))
			assert.Equal(t, string(want), string(pretty)+"\n", "key order or layout changed")
		})
	}
}

// Every content we send parses back to itself.
func TestRoundTrip(t *testing.T) {
	in := &Invite{Common: Common{CallID: "c", PartyID: "p", Version: Version1}, Offer: SessionDescription{Type: SDPOffer, SDP: "v=0"}, Lifetime: 60000}
	in.SetStreams(Streams{"s": {Purpose: PurposeUserMedia, VideoMuted: true}})
	raw, err := Marshal(in)
	require.NoError(t, err)
	out, err := Parse(TypeInvite, raw)
	require.NoError(t, err)
	assert.Equal(t, in, out)
	assert.True(t, IsCallType("org.matrix.call.sdp_stream_metadata_changed"))
	assert.False(t, IsCallType("m.call"))
}
