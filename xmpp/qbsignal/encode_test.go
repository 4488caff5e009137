package qbsignal

import (
	"bytes"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testSDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n"

// One signal of each type, with the fields the SDK gives it.
func everyType() map[Type]Signal {
	base := func(t Type) Signal {
		return Signal{Type: t, SessionID: "a09ab99a-66af-4a09-80e3-fab77d1fe74d", CallType: CallVideo, CallerID: 1001, OpponentIDs: []uint64{1002, 1003}, Platform: "web"}
	}
	call := base(TypeCall)
	call.SDP = testSDP
	call.UserInfo = Fields{"name": Text("Alice"), "avatar": Text(""), "bandwidth": Text("256")}
	accept := base(TypeAccept)
	accept.SDP = strings.ReplaceAll(testSDP, "4611731400430051336", "1")
	reject := base(TypeReject)
	reject.UserInfo = Fields{"reason": Text("busy"), "meta": Object(Fields{"a": Text("1"), "b": Text("")})}
	hangUp := base(TypeHangUp)
	cands := base(TypeICECandidates)
	cands.Candidates = []Candidate{
		{Candidate: "candidate:1 1 udp 2122194687 127.0.0.1 50000 typ host", SDPMid: "0", SDPMLineIndex: 0},
		{Candidate: "candidate:2 1 udp 2122194687 127.0.0.1 50002 typ host", SDPMid: "1", SDPMLineIndex: 1},
		{Candidate: "candidate:3 1 tcp 1518214911 127.0.0.1 9 typ host tcptype active", SDPMid: "0", SDPMLineIndex: -1},
	}
	update := base(TypeUpdate)
	update.Reason = ReasonReconnect
	update.SessionDescription = &SessionDescription{OfferID: "2f1e6c1a-3b9d-4c55-8e0f-0c1d2e3f4a5b", SDP: testSDP, Type: "offer"}
	update.Custom = Fields{"muted": Text("audio"), "screen": Object(Fields{"on": Text("1"), "w": Text("1280")})}
	return map[Type]Signal{TypeCall: call, TypeAccept: accept, TypeReject: reject, TypeHangUp: hangUp, TypeICECandidates: cands, TypeUpdate: update}
}

func TestRoundTrip(t *testing.T) {
	for typ, sig := range everyType() {
		t.Run(string(typ), func(t *testing.T) {
			raw, err := Message(UserJID(1002, 77, "localhost"), "", sig)
			require.NoError(t, err)
			got, err := DecodeBytes(raw)
			require.NoError(t, err, "%s", raw)
			require.Equal(t, sig, got)

			// The bare extraParams and its tokens are the same XML.
			ep, err := Encode(sig)
			require.NoError(t, err)
			require.Contains(t, string(raw), string(ep))
			r, err := EncodeTokens(sig)
			require.NoError(t, err)
			var b bytes.Buffer
			e := xml.NewEncoder(&b)
			for {
				tok, err := r.Token()
				if errors.Is(err, io.EOF) {
					break
				}
				require.NoError(t, err)
				require.NoError(t, e.EncodeToken(tok))
			}
			require.NoError(t, e.Flush())
			require.Equal(t, string(ep), b.String())
		})
	}
}

// A call always carries userInfo.bandwidth (the SDK's processCall), and
// the callee reads its bandwidth from it.
func TestEncodeCallBandwidth(t *testing.T) {
	sig := everyType()[TypeCall]
	sig.UserInfo = nil
	ep, err := Encode(sig)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(ep, []byte(`<extraParams xmlns="jabber:client"><userInfo><bandwidth>0</bandwidth></userInfo><sessionID>`)), "%s", ep)
	require.Nil(t, sig.UserInfo, "the caller's signal is left alone")

	sig.UserInfo = Fields{"bandwidth": Text("512"), "zeta": Text("z"), "name": Text("Bot"), "avatar": Text("https://example.org/a.png")}
	ep, err = Encode(sig)
	require.NoError(t, err)
	require.Contains(t, string(ep), `<userInfo><name>Bot</name><avatar>https://example.org/a.png</avatar><zeta>z</zeta><bandwidth>512</bandwidth></userInfo>`)

	// An empty userInfo of another signal is left out, as the SDK does.
	ep, err = Encode(Signal{Type: TypeHangUp, SessionID: "s", UserInfo: Fields{}})
	require.NoError(t, err)
	require.NotContains(t, string(ep), "userInfo")
}

// The children of extraParams come in the SDK's order, as captured.
func TestEncodeOrderAsCaptured(t *testing.T) {
	for _, file := range []string{"call-sent.xml", "accept.xml", "icecandidates.xml", "hangup.xml"} {
		t.Run(file, func(t *testing.T) {
			raw := readCapture(t, file)
			sig, err := DecodeBytes(raw)
			require.NoError(t, err)
			ours, err := Message(UserJID(sig.OpponentIDs[0], 4242, "localhost"), "6b11186fea4d843db1000000", sig)
			require.NoError(t, err)
			require.Equal(t, elementNames(t, raw), elementNames(t, ours))
		})
	}
}

// elementNames lists the elements of an XML document in order, with
// their attributes' names.
func elementNames(t *testing.T, doc []byte) []string {
	var names []string
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return names
		}
		require.NoError(t, err)
		if s, ok := tok.(xml.StartElement); ok {
			n := s.Name.Space + " " + s.Name.Local
			for _, a := range s.Attr {
				if a.Name.Local != "xmlns" {
					n += " @" + a.Name.Local
				}
			}
			names = append(names, n)
		}
	}
}

func TestMessage(t *testing.T) {
	sig := everyType()[TypeHangUp]
	raw, err := Message("1002-77@localhost", "6b1118aac222be12ba000000", sig)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(raw, []byte(`<message xmlns="jabber:client" id="6b1118aac222be12ba000000" to="1002-77@localhost" type="headline"><extraParams xmlns="jabber:client"><sessionID>`)), "%s", raw)
	require.True(t, bytes.HasSuffix(raw, []byte(`<moduleIdentifier>WebRTCVideoChat</moduleIdentifier><signalType>hangUp</signalType><platform>web</platform></extraParams></message>`)), "%s", raw)

	raw, err = Message("1002-77@localhost", "", sig)
	require.NoError(t, err)
	require.Regexp(t, ` id="[0-9a-f]{24}"`, string(raw), "a new id")
}

func TestNewMessageID(t *testing.T) {
	a, b := NewMessageID(), NewMessageID()
	require.NotEqual(t, a, b)
	raw, err := hex.DecodeString(a)
	require.NoError(t, err)
	require.Len(t, raw, 12)
	stamp := time.Unix(int64(uint32(raw[0])<<24|uint32(raw[1])<<16|uint32(raw[2])<<8|uint32(raw[3])), 0)
	require.WithinDuration(t, time.Now(), stamp, time.Minute, "an ObjectId starts with the time")
}

// The SDP's CRLF survive the XML (CR as a character reference), and an SDP
// given with LF line ends reads back with CRLF.
func TestEncodeSDPLineEnds(t *testing.T) {
	sig := everyType()[TypeAccept]
	ep, err := Encode(sig)
	require.NoError(t, err)
	require.Contains(t, string(ep), "v=0&#xD;\no=-")
	sig.SDP = strings.ReplaceAll(sig.SDP, "\r\n", "\n")
	raw, err := Message("1001-77@localhost", "", sig)
	require.NoError(t, err)
	got, err := DecodeBytes(raw)
	require.NoError(t, err)
	require.Equal(t, everyType()[TypeAccept].SDP, got.SDP)
}

func TestEncodeRefuses(t *testing.T) {
	ok := everyType()[TypeReject]
	for _, tc := range []struct {
		name  string
		edit  func(*Signal)
		err   error
		field string
	}{
		{"type", func(s *Signal) { s.Type = "ring" }, ErrUnknownType, "signalType"},
		{"session", func(s *Signal) { s.SessionID = "" }, ErrMissingField, "sessionID"},
		{"call without offer", func(s *Signal) { s.Type = TypeCall }, ErrMissingField, "call"},
		{"accept without answer", func(s *Signal) { s.Type = TypeAccept }, ErrMissingField, "sdp"},
		{"no candidates", func(s *Signal) { s.Type = TypeICECandidates }, ErrMissingField, "iceCandidates"},
		{"empty candidate", func(s *Signal) { s.Candidates = []Candidate{{SDPMid: "0"}} }, ErrMissingField, "iceCandidates.candidate"},
		{"too many candidates", func(s *Signal) {
			s.Candidates = make([]Candidate, MaxCandidates+1)
		}, ErrTooLarge, "iceCandidates"},
		{"too many opponents", func(s *Signal) { s.OpponentIDs = make([]uint64, MaxOpponents+1) }, ErrTooLarge, "opponentsIDs"},
		{"SDP too large", func(s *Signal) { s.SDP = strings.Repeat("a", MaxSDP+1) }, ErrTooLarge, "sdp"},
		{"bad key", func(s *Signal) { s.UserInfo = Fields{"first name": Text("A")} }, ErrMalformed, "userInfo.first name"},
		{"key with a colon", func(s *Signal) { s.UserInfo = Fields{"x:y": Text("A")} }, ErrMalformed, "userInfo.x:y"},
		{"xml key", func(s *Signal) { s.UserInfo = Fields{"xmlThing": Text("A")} }, ErrMalformed, "userInfo.xmlThing"},
		{"delay key", func(s *Signal) { s.UserInfo = Fields{"m": Object(Fields{"delay": Text("5"), "x": Text("")})} }, ErrMalformed, "userInfo.m.delay"},
		{"module key", func(s *Signal) { s.UserInfo = Fields{"moduleIdentifier": Text("x")} }, ErrMalformed, "userInfo.moduleIdentifier"},
		{"reserved custom", func(s *Signal) { s.Custom = Fields{"sessionID": Text("x")} }, ErrMalformed, "sessionID"},
		{"control character", func(s *Signal) { s.UserInfo = Fields{"name": Text("a\x00b")} }, ErrMalformed, "userInfo.name"},
		{"not UTF-8", func(s *Signal) { s.Platform = "\xff" }, ErrMalformed, "platform"},
		{"value too large", func(s *Signal) { s.UserInfo = Fields{"name": Text(strings.Repeat("n", MaxText+1))} }, ErrTooLarge, "userInfo.name"},
		{"too deep", func(s *Signal) {
			f := Fields{"leaf": Text("x")}
			for range MaxDepth {
				f = Fields{"n": Object(f), "m": Text("")}
			}
			s.UserInfo = f
		}, ErrTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig := ok
			tc.edit(&sig)
			_, err := Encode(sig)
			require.ErrorIs(t, err, tc.err)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			if tc.field != "" {
				require.Equal(t, tc.field, fe.Field)
			}
			_, err = Message("1001-77@localhost", "", sig)
			require.ErrorIs(t, err, tc.err)
			_, err = EncodeTokens(sig)
			require.ErrorIs(t, err, tc.err)
		})
	}
}
