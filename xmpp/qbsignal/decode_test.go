package qbsignal

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func readCapture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// The frames two SDK 2.23.0 clients exchanged through Prosody 0.12.3
// (research/quickblox-stanzas.txt).
func TestDecodeCaptures(t *testing.T) {
	const audio, video = "a38278c6-b4cc-45bf-bb67-ff532bb5ea0b", "3f6143ea-d881-4333-960d-8f00151743c0"
	for _, tc := range []struct {
		file     string
		typ      Type
		session  string
		callType CallType
		userInfo Fields
		sdpLines int // 0: no SDP
		cands    int
	}{
		{"call-sent.xml", TypeCall, audio, CallAudio, Fields{"bandwidth": Text("0")}, 37, 0},
		// Prosody delivers the SDP with LF line ends (its parser reads the
		// raw CRLF as LF): it decodes with CRLF all the same.
		{"call-delivered.xml", TypeCall, audio, CallAudio, Fields{"bandwidth": Text("0")}, 37, 0},
		{"accept.xml", TypeAccept, audio, CallAudio, nil, 36, 0},
		{"icecandidates.xml", TypeICECandidates, audio, CallAudio, nil, 0, 4},
		{"hangup.xml", TypeHangUp, audio, CallAudio, nil, 0, 0},
		{"video-call.xml", TypeCall, video, CallVideo, Fields{"bandwidth": Text("0")}, 160, 0},
		{"video-accept.xml", TypeAccept, video, CallVideo, nil, 157, 0},
		{"call-resent.xml", TypeCall, "29701bcd-2127-432b-a213-b474c0637ed6", CallAudio, Fields{"bandwidth": Text("0")}, 41, 0},
	} {
		t.Run(tc.file, func(t *testing.T) {
			sig, err := DecodeBytes(readCapture(t, tc.file))
			require.NoError(t, err)
			require.Equal(t, tc.typ, sig.Type)
			require.Equal(t, tc.session, sig.SessionID)
			require.Equal(t, tc.callType, sig.CallType)
			require.Equal(t, uint64(1001), sig.CallerID)
			require.Equal(t, []uint64{1002}, sig.OpponentIDs)
			require.Equal(t, "web", sig.Platform)
			require.Equal(t, tc.userInfo, sig.UserInfo)
			require.Nil(t, sig.Custom)
			if tc.sdpLines == 0 {
				require.Empty(t, sig.SDP)
			} else {
				require.True(t, strings.HasPrefix(sig.SDP, "v=0\r\no=- "), "SDP %q", sig.SDP[:20])
				require.True(t, strings.HasSuffix(sig.SDP, "\r\n"))
				require.Equal(t, tc.sdpLines, strings.Count(sig.SDP, "\r\n"))
				require.Equal(t, tc.sdpLines, strings.Count(sig.SDP, "\n"), "every line ends in CRLF")
			}
			require.Len(t, sig.Candidates, tc.cands)
		})
	}
}

func TestDecodeCandidates(t *testing.T) {
	sig, err := DecodeBytes(readCapture(t, "icecandidates.xml"))
	require.NoError(t, err)
	require.Equal(t, Candidate{
		Candidate: "candidate:2333299498 1 udp 2122194687 192.0.2.2 58874 typ host generation 0 ufrag z9LO network-id 1",
		SDPMid:    "0",
	}, sig.Candidates[0])
	require.Equal(t, "candidate:4071546114 1 tcp 1518285567 fd00::2 9 typ host tcptype active generation 0 ufrag z9LO network-id 2", sig.Candidates[3].Candidate)
}

// The stanza as Prosody delivers it (inner xmlns stripped, from and
// xml:lang added) reads as the SDK sent it.
func TestDecodeDeliveredEqualsSent(t *testing.T) {
	sent, err := DecodeBytes(readCapture(t, "call-sent.xml"))
	require.NoError(t, err)
	delivered, err := DecodeBytes(readCapture(t, "call-delivered.xml"))
	require.NoError(t, err)
	require.Equal(t, sent, delivered)
}

// Fields are read by name: any order, any namespace.
func TestDecodeAnyOrder(t *testing.T) {
	const msg = `<message type='headline' xmlns='jabber:client'><extraParams xmlns='urn:other'>
	  <platform>iOS</platform><signalType>hangUp</signalType>
	  <opponentsIDs><opponentID>7</opponentID><opponentID>8</opponentID></opponentsIDs>
	  <moduleIdentifier>WebRTCVideoChat</moduleIdentifier>
	  <callerID>5</callerID><callType>1</callType><sessionID>s-1</sessionID>
	  <userInfo><name>Bob</name></userInfo>
	</extraParams></message>`
	sig, err := DecodeBytes([]byte(msg))
	require.NoError(t, err)
	require.Equal(t, Signal{
		Type: TypeHangUp, SessionID: "s-1", CallType: CallVideo, CallerID: 5, OpponentIDs: []uint64{7, 8},
		Platform: "iOS", UserInfo: Fields{"name": Text("Bob")},
	}, sig)
}

// The SDK's _XMLtoJS: userInfo is an object; an element of more than one
// child is an object, of one its text; values are strings.
func TestDecodeUserInfoRules(t *testing.T) {
	const msg = `<message type="headline"><extraParams>
	<userInfo><name>Alice</name><avatar></avatar><bandwidth>0</bandwidth>
	  <room><id>42</id><title>Ops</title></room><one><inner>only</inner></one><deep><a><b>1</b><c>2</c></a><d>3</d></deep></userInfo>
	<sessionID>s</sessionID><moduleIdentifier>WebRTCVideoChat</moduleIdentifier><signalType>reject</signalType>
	<extra><p>1</p><q>2</q></extra><flag>on</flag></extraParams></message>`
	sig, err := DecodeBytes([]byte(msg))
	require.NoError(t, err)
	require.Equal(t, Fields{
		"name": Text("Alice"), "avatar": Text(""), "bandwidth": Text("0"),
		"room": Object(Fields{"id": Text("42"), "title": Text("Ops")}),
		"one":  Text("only"),
		"deep": Object(Fields{"a": Object(Fields{"b": Text("1"), "c": Text("2")}), "d": Text("3")}),
	}, sig.UserInfo)
	require.Equal(t, Fields{"extra": Object(Fields{"p": Text("1"), "q": Text("2")}), "flag": Text("on")}, sig.Custom)
	require.Equal(t, uint64(0), sig.CallerID, "absent")
	require.Nil(t, sig.OpponentIDs)
}

// An update as the SDK sends it for an ICE restart.
func TestDecodeUpdateReconnect(t *testing.T) {
	const msg = `<message to="1002-77@localhost" type="headline" id="6b11187bea4d843db1000009" xmlns="jabber:client"><extraParams xmlns="jabber:client">` +
		`<reason>reconnect</reason><sessionDescription><offerId>9b2c4a8e-1111-4222-8333-444455556666</offerId>` +
		"<sdp>v=0\r\no=- 1 3 IN IP4 127.0.0.1\r\n</sdp><type>offer</type></sessionDescription>" +
		`<sessionID>abc</sessionID><callType>2</callType><callerID>1001</callerID><opponentsIDs><opponentID>1002</opponentID></opponentsIDs>` +
		`<moduleIdentifier>WebRTCVideoChat</moduleIdentifier><signalType>update</signalType><platform>web</platform></extraParams></message>`
	sig, err := DecodeBytes([]byte(msg))
	require.NoError(t, err)
	require.Equal(t, TypeUpdate, sig.Type)
	require.Equal(t, ReasonReconnect, sig.Reason)
	require.Equal(t, &SessionDescription{OfferID: "9b2c4a8e-1111-4222-8333-444455556666", SDP: "v=0\r\no=- 1 3 IN IP4 127.0.0.1\r\n", Type: "offer"}, sig.SessionDescription)
	require.Nil(t, sig.UserInfo)
	require.Nil(t, sig.Custom)
}

// The SDK drops a message with a <delay> anywhere (querySelector).
func TestDecodeDelayed(t *testing.T) {
	call := string(readCapture(t, "call-delivered.xml"))
	const delay = `<delay xmlns="urn:xmpp:delay" from="localhost" stamp="2026-11-30T10:00:00Z">Offline Storage</delay>`
	for name, msg := range map[string]string{
		"after extraParams":  strings.Replace(call, "</extraParams>", "</extraParams>"+delay, 1),
		"before extraParams": strings.Replace(call, "<extraParams>", delay+"<extraParams>", 1),
		"inside userInfo":    strings.Replace(call, "<bandwidth>", "<delay>5</delay><bandwidth>", 1),
		"legacy jabber:x":    strings.Replace(call, "</extraParams>", `</extraParams><x xmlns="jabber:x:delay"><delay/></x>`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeBytes([]byte(msg))
			require.ErrorIs(t, err, ErrDelayed)
			require.NotErrorIs(t, err, ErrMalformed)
		})
	}
	_, err := DecodeBytes([]byte(call))
	require.NoError(t, err, "the same without delay")
}

func TestDecodeNotSignal(t *testing.T) {
	call := string(readCapture(t, "call-sent.xml"))
	for name, msg := range map[string]string{
		"chat message":   strings.Replace(call, `type="headline"`, `type="chat"`, 1),
		"no type":        strings.Replace(call, ` type="headline"`, ``, 1),
		"other module":   strings.Replace(call, "<moduleIdentifier>WebRTCVideoChat<", "<moduleIdentifier>SystemNotifications<", 1),
		"no module":      strings.Replace(call, "<moduleIdentifier>WebRTCVideoChat</moduleIdentifier>", "", 1),
		"no extraParams": `<message type="headline"><body>hi</body></message>`,
		"not a message":  `<presence/>`,
		// The SDK takes the first moduleIdentifier at any depth.
		"shadowed module": strings.Replace(call, "<bandwidth>", "<moduleIdentifier>x</moduleIdentifier><bandwidth>", 1),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeBytes([]byte(msg))
			require.ErrorIs(t, err, ErrNotSignal)
			require.NotErrorIs(t, err, ErrMalformed)
			require.NotErrorIs(t, err, ErrDelayed)
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	call := string(readCapture(t, "call-sent.xml"))
	hangup := string(readCapture(t, "hangup.xml"))
	cands := string(readCapture(t, "icecandidates.xml"))
	manyCands := strings.Replace(cands, "<iceCandidates>", "<iceCandidates>"+strings.Repeat("<iceCandidate><candidate>c</candidate></iceCandidate>", MaxCandidates), 1)
	manyOpps := strings.Replace(hangup, "<opponentsIDs>", "<opponentsIDs>"+strings.Repeat("<opponentID>1</opponentID>", MaxOpponents), 1)
	deep := strings.Repeat("<a><b>1</b>", MaxDepth) + strings.Repeat("</a>", MaxDepth)
	for _, tc := range []struct {
		name, msg string
		err       error
		field     string
	}{
		{"truncated", call[:len(call)/2], ErrMalformed, ""},
		{"bad XML", strings.Replace(hangup, "</callType>", "</callTyp>", 1), ErrMalformed, ""},
		{"empty", "", ErrMalformed, ""},
		{"directive", `<!DOCTYPE message><message type="headline"/>`, ErrMalformed, ""},
		{"unknown type", strings.Replace(hangup, ">hangUp<", ">hangup<", 1), ErrUnknownType, "signalType"},
		{"no type", strings.Replace(hangup, "<signalType>hangUp</signalType>", "", 1), ErrUnknownType, "signalType"},
		{"no session", strings.Replace(hangup, "<sessionID>a38278c6-b4cc-45bf-bb67-ff532bb5ea0b</sessionID>", "", 1), ErrMissingField, "sessionID"},
		{"empty session", strings.Replace(hangup, "a38278c6-b4cc-45bf-bb67-ff532bb5ea0b", "", 1), ErrMissingField, "sessionID"},
		{"session object", strings.Replace(hangup, "a38278c6-b4cc-45bf-bb67-ff532bb5ea0b", "<a>1</a><b>2</b>", 1), ErrMalformed, "sessionID"},
		{"caller not numeric", strings.Replace(hangup, "<callerID>1001<", "<callerID>1001x<", 1), ErrBadID, "callerID"},
		{"caller negative", strings.Replace(hangup, "<callerID>1001<", "<callerID>-1<", 1), ErrBadID, "callerID"},
		{"caller too big", strings.Replace(hangup, "<callerID>1001<", "<callerID>18446744073709551616<", 1), ErrBadID, "callerID"},
		{"opponent not numeric", strings.Replace(hangup, "<opponentID>1002<", "<opponentID>bob<", 1), ErrBadID, "opponentsIDs"},
		{"opponent empty", strings.Replace(hangup, "<opponentID>1002<", "<opponentID><", 1), ErrBadID, "opponentsIDs"},
		{"call type", strings.Replace(hangup, "<callType>2<", "<callType>audio<", 1), ErrMalformed, "callType"},
		{"call without SDP", callWithout(call, "sdp"), ErrMissingField, "sdp"},
		{"call without opponents", callWithout(call, "opponentsIDs"), ErrMissingField, "opponentsIDs"},
		{"call without caller", callWithout(call, "callerID"), ErrMissingField, "callerID"},
		{"accept without SDP", callWithout(string(readCapture(t, "accept.xml")), "sdp"), ErrMissingField, "sdp"},
		{"no candidates", callWithout(cands, "iceCandidates"), ErrMissingField, "iceCandidates"},
		{"candidate without candidate", strings.Replace(strings.Replace(cands, "<candidate>", "<cand>", 1), "</candidate>", "</cand>", 1), ErrMissingField, "iceCandidates.candidate"},
		{"sdpMLineIndex", strings.Replace(cands, "<sdpMLineIndex>0<", "<sdpMLineIndex>first<", 1), ErrMalformed, "iceCandidates.sdpMLineIndex"},
		{"too many candidates", manyCands, ErrTooLarge, "iceCandidates"},
		{"too many opponents", manyOpps, ErrTooLarge, "opponentsIDs"},
		{"SDP too large", strings.Replace(call, "s=-", "s="+strings.Repeat("x", MaxSDP), 1), ErrTooLarge, "sdp"},
		{"text too large", strings.Replace(hangup, "<platform>web<", "<platform>"+strings.Repeat("w", MaxText+1)+"<", 1), ErrTooLarge, "platform"},
		{"user info too large", strings.Replace(call, "<bandwidth>0<", "<bandwidth>"+strings.Repeat("9", MaxText+1)+"<", 1), ErrTooLarge, "userInfo.bandwidth"},
		{"too deep", strings.Replace(call, "<bandwidth>", deep+"<bandwidth>", 1), ErrTooLarge, "message"},
		{"too many elements", strings.Replace(call, "<bandwidth>", strings.Repeat("<x/>", MaxElements)+"<bandwidth>", 1), ErrTooLarge, "message"},
		{"stanza too large", strings.Replace(call, "<bandwidth>", strings.Repeat(" ", MaxStanza)+"<bandwidth>", 1), ErrTooLarge, "message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeBytes([]byte(tc.msg))
			require.ErrorIs(t, err, tc.err)
			require.ErrorIs(t, err, ErrMalformed, "every refusal of a signal is malformed")
			require.NotErrorIs(t, err, ErrDelayed)
			require.NotErrorIs(t, err, ErrNotSignal)
			if tc.field != "" {
				var fe *FieldError
				require.ErrorAs(t, err, &fe)
				require.Equal(t, tc.field, fe.Field)
			}
		})
	}
}

// callWithout removes the element name (its first) from msg.
func callWithout(msg, name string) string {
	i := strings.Index(msg, "<"+name+">")
	j := strings.Index(msg, "</"+name+">")
	return msg[:i] + msg[j+len(name)+3:]
}

// DecodeElement takes what an XMPP library's handler has: the message's
// start token, then its inside with or without its end token.
func TestDecodeElement(t *testing.T) {
	raw := readCapture(t, "call-delivered.xml")
	want, err := DecodeBytes(raw)
	require.NoError(t, err)
	for name, withEnd := range map[string]bool{"with end": true, "without end": false} {
		t.Run(name, func(t *testing.T) {
			d := xml.NewDecoder(strings.NewReader(string(raw)))
			tok, err := d.Token()
			require.NoError(t, err)
			var inner []xml.Token
			for {
				tok, err := d.Token()
				if err != nil {
					break
				}
				inner = append(inner, xml.CopyToken(tok))
			}
			if !withEnd {
				inner = inner[:len(inner)-1]
			}
			sig, err := DecodeElement(tok.(xml.StartElement), &sliceReader{toks: inner})
			require.NoError(t, err)
			require.Equal(t, want, sig)
		})
	}
	// An element cut inside a child is malformed.
	d := xml.NewDecoder(strings.NewReader(`<message type="headline"><extraParams><sdp>`))
	tok, err := d.Token()
	require.NoError(t, err)
	_, err = DecodeElement(tok.(xml.StartElement), d)
	require.ErrorIs(t, err, ErrMalformed)
}
