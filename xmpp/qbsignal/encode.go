package qbsignal

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Encode writes sig as the SDK's signalling provider does: an
// <extraParams xmlns="jabber:client"> with the fields of its type in the
// SDK's order (userInfo, sessionID, callType, callerID, opponentsIDs, sdp
// or iceCandidates, an update's fields, then moduleIdentifier, signalType
// and platform).
func Encode(sig Signal) ([]byte, error) {
	toks, err := tokens(sig)
	if err != nil {
		return nil, err
	}
	return encodeTokens(toks)
}

// EncodeTokens is Encode as XML tokens, for an XMPP library that writes
// tokens (with mellium.im/xmpp: stanza.Message{…}.Wrap(r)).
func EncodeTokens(sig Signal) (xml.TokenReader, error) {
	toks, err := tokens(sig)
	if err != nil {
		return nil, err
	}
	return &sliceReader{toks: toks}, nil
}

// Message writes the whole stanza the SDK sends: a headline message to
// the peer's bare JID (UserJID) with sig, whose id is a new MessageID when
// id is empty.
func Message(to, id string, sig Signal) ([]byte, error) {
	toks, err := tokens(sig)
	if err != nil {
		return nil, err
	}
	if id == "" {
		id = NewMessageID()
	}
	start := xml.StartElement{
		Name: xml.Name{Space: NSClient, Local: "message"},
		Attr: []xml.Attr{ // in Strophe's order
			{Name: xml.Name{Local: "id"}, Value: id},
			{Name: xml.Name{Local: "to"}, Value: to},
			{Name: xml.Name{Local: "type"}, Value: "headline"},
		},
	}
	all := append(append([]xml.Token{start}, toks...), start.End())
	return encodeTokens(all)
}

func encodeTokens(toks []xml.Token) ([]byte, error) {
	var b bytes.Buffer
	e := xml.NewEncoder(&b)
	for _, t := range toks {
		if err := e.EncodeToken(t); err != nil {
			return nil, fmt.Errorf("qbsignal: encoding: %w", err)
		}
	}
	if err := e.Flush(); err != nil {
		return nil, fmt.Errorf("qbsignal: encoding: %w", err)
	}
	return b.Bytes(), nil
}

// Fields the SDK reads itself: a UserInfo or Custom key of these names
// would be taken for them (the SDK's querySelector looks at every depth
// for moduleIdentifier and delay).
var reserved = map[string]bool{
	"moduleIdentifier": true, "signalType": true, "sessionID": true, "callType": true,
	"callerID": true, "opponentsIDs": true, "sdp": true, "platform": true, "userInfo": true,
	"iceCandidates": true, "reason": true, "sessionDescription": true, "delay": true, "extraParams": true,
}

// tokens checks sig and lays out its extraParams.
func tokens(sig Signal) ([]xml.Token, error) {
	if err := sig.check(); err != nil {
		return nil, err
	}
	w := &tokenWriter{}
	root := xml.StartElement{Name: xml.Name{Space: NSClient, Local: "extraParams"}}
	w.add(root)

	userInfo := sig.UserInfo
	if sig.Type == TypeCall {
		// The SDK's processCall sets userInfo.bandwidth on every call.
		userInfo = maps(userInfo)
		if _, ok := userInfo["bandwidth"]; !ok {
			userInfo["bandwidth"] = Text("0")
		}
	}
	if len(userInfo) > 0 {
		w.object("userInfo", userInfo)
	}
	w.text("sessionID", sig.SessionID)
	w.text("callType", strconv.Itoa(int(sig.CallType)))
	w.text("callerID", strconv.FormatUint(sig.CallerID, 10))
	w.open("opponentsIDs")
	for _, id := range sig.OpponentIDs {
		w.text("opponentID", strconv.FormatUint(id, 10))
	}
	w.close("opponentsIDs")
	if sig.SDP != "" {
		w.text("sdp", sig.SDP)
	}
	if len(sig.Candidates) > 0 {
		w.open("iceCandidates")
		for _, c := range sig.Candidates {
			w.open("iceCandidate")
			w.text("candidate", c.Candidate)
			w.text("sdpMid", c.SDPMid)
			if c.SDPMLineIndex >= 0 {
				w.text("sdpMLineIndex", strconv.Itoa(c.SDPMLineIndex))
			}
			w.close("iceCandidate")
		}
		w.close("iceCandidates")
	}
	if sig.Reason != "" {
		w.text("reason", sig.Reason)
	}
	if d := sig.SessionDescription; d != nil {
		w.open("sessionDescription")
		w.text("offerId", d.OfferID)
		w.text("sdp", d.SDP)
		w.text("type", d.Type)
		w.close("sessionDescription")
	}
	for _, k := range sortedKeys(sig.Custom) {
		w.value(k, sig.Custom[k])
	}
	w.text("moduleIdentifier", ModuleID)
	w.text("signalType", string(sig.Type))
	platform := sig.Platform
	if platform == "" {
		platform = "web"
	}
	w.text("platform", platform)
	w.add(root.End())
	return w.toks, nil
}

// check refuses what the SDK could not read back as sig.
func (sig *Signal) check() error {
	if !sig.Type.Valid() {
		return fieldErr("signalType", ErrUnknownType, quote(string(sig.Type)))
	}
	if sig.SessionID == "" {
		return fieldErr("sessionID", ErrMissingField, "")
	}
	if len(sig.OpponentIDs) > MaxOpponents {
		return fieldErr("opponentsIDs", ErrTooLarge, fmt.Sprintf("%d, more than %d", len(sig.OpponentIDs), MaxOpponents))
	}
	if len(sig.Candidates) > MaxCandidates {
		return fieldErr("iceCandidates", ErrTooLarge, fmt.Sprintf("%d, more than %d", len(sig.Candidates), MaxCandidates))
	}
	if sig.CallType < 0 || sig.CallType > 255 {
		return fieldErr("callType", ErrMalformed, strconv.Itoa(int(sig.CallType)))
	}
	texts := []limited{
		{"sessionID", sig.SessionID, MaxText}, {"sdp", sig.SDP, MaxSDP}, {"platform", sig.Platform, MaxText},
		{"reason", sig.Reason, MaxText},
	}
	if d := sig.SessionDescription; d != nil {
		texts = append(texts, limited{"sessionDescription.sdp", d.SDP, MaxSDP},
			limited{"sessionDescription.offerId", d.OfferID, MaxText}, limited{"sessionDescription.type", d.Type, MaxText})
	}
	for _, c := range sig.Candidates {
		if c.Candidate == "" {
			return fieldErr("iceCandidates.candidate", ErrMissingField, "")
		}
		if c.SDPMLineIndex > 65535 {
			return fieldErr("iceCandidates.sdpMLineIndex", ErrMalformed, strconv.Itoa(c.SDPMLineIndex))
		}
		texts = append(texts, limited{"iceCandidates.candidate", c.Candidate, MaxText},
			limited{"iceCandidates.sdpMid", c.SDPMid, MaxText})
	}
	for _, t := range texts {
		if err := checkText(t.field, t.v, t.limit); err != nil {
			return err
		}
	}
	switch sig.Type {
	case TypeCall:
		if sig.CallerID == 0 || len(sig.OpponentIDs) == 0 || sig.SDP == "" {
			return fieldErr("call", ErrMissingField, "a call needs callerID, opponentIDs and the offer's sdp")
		}
	case TypeAccept:
		if sig.SDP == "" {
			return fieldErr("sdp", ErrMissingField, "an accept carries the answer")
		}
	case TypeICECandidates:
		if len(sig.Candidates) == 0 {
			return fieldErr("iceCandidates", ErrMissingField, "")
		}
	}
	if err := checkFields("userInfo.", sig.UserInfo, 3); err != nil {
		return err
	}
	for k := range sig.Custom {
		if reserved[k] {
			return fieldErr(k, ErrMalformed, "a custom field of a name the SDK reads itself")
		}
	}
	return checkFields("", sig.Custom, 2)
}

// limited is a text field and its limit.
type limited struct {
	field, v string
	limit    int
}

// checkFields refuses keys that are no XML names or that the SDK would
// take for its own, texts over MaxText and nesting over MaxDepth (depth is
// that of the object's element in the message).
func checkFields(prefix string, f Fields, depth int) error {
	if len(f) > 0 && depth+1 > MaxDepth {
		return fieldErr(prefix, ErrTooLarge, fmt.Sprintf("nested more than %d deep", MaxDepth))
	}
	for k, v := range f {
		if !isName(k) {
			return fieldErr(prefix+k, ErrMalformed, "not an XML element name")
		}
		if k == "moduleIdentifier" || k == "delay" {
			return fieldErr(prefix+k, ErrMalformed, "the SDK would read this key as its own field")
		}
		if v.IsObject() {
			if err := checkFields(prefix+k+".", v.Fields, depth+1); err != nil {
				return err
			}
			continue
		}
		if err := checkText(prefix+k, v.Text, MaxText); err != nil {
			return err
		}
	}
	return nil
}

func checkText(field, v string, limit int) error {
	if len(v) > limit {
		return fieldErr(field, ErrTooLarge, fmt.Sprintf("%d bytes, more than %d", len(v), limit))
	}
	if !utf8.ValidString(v) {
		return fieldErr(field, ErrMalformed, "not UTF-8")
	}
	for _, r := range v {
		if !isXMLChar(r) {
			return fieldErr(field, ErrMalformed, fmt.Sprintf("character %U is not allowed in XML", r))
		}
	}
	return nil
}

// isXMLChar is XML 1.0's Char production.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

// isName reports whether s is an XML name without a colon (a DOM
// nodeName the SDK can read back as a key).
func isName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || unicode.IsLetter(r):
		case i > 0 && (r == '-' || r == '.' || unicode.IsDigit(r)):
		default:
			return false
		}
	}
	// Names starting with "xml" are reserved.
	return len(s) < 3 || !strings.EqualFold(s[:3], "xml")
}

// maps copies f (so that adding bandwidth leaves the caller's map alone).
func maps(f Fields) Fields {
	c := make(Fields, len(f)+1)
	for k, v := range f {
		c[k] = v
	}
	return c
}

// userInfoOrder is the order of the keys of the sample apps' userInfo
// (name, avatar) and the SDK's own (bandwidth, last); others are sorted
// between them.
func userInfoOrder(f Fields) []string {
	keys := sortedKeys(f)
	rank := func(k string) int {
		switch k {
		case "name":
			return 0
		case "avatar":
			return 1
		case "bandwidth":
			return 3
		}
		return 2
	}
	slices.SortStableFunc(keys, func(a, b string) int { return rank(a) - rank(b) })
	return keys
}

func sortedKeys(f Fields) []string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// tokenWriter lays out elements of the default namespace (no xmlns: they
// inherit extraParams').
type tokenWriter struct{ toks []xml.Token }

func (w *tokenWriter) add(t xml.Token) { w.toks = append(w.toks, t) }

func (w *tokenWriter) open(name string) {
	w.add(xml.StartElement{Name: xml.Name{Local: name}})
}

func (w *tokenWriter) close(name string) { w.add(xml.EndElement{Name: xml.Name{Local: name}}) }

func (w *tokenWriter) text(name, v string) {
	w.open(name)
	if v != "" {
		w.add(xml.CharData(v))
	}
	w.close(name)
}

func (w *tokenWriter) value(name string, v Value) {
	if v.IsObject() {
		w.object(name, v.Fields)
		return
	}
	w.text(name, v.Text)
}

func (w *tokenWriter) object(name string, f Fields) {
	w.open(name)
	order := sortedKeys(f)
	if name == "userInfo" {
		order = userInfoOrder(f)
	}
	for _, k := range order {
		w.value(k, f[k])
	}
	w.close(name)
}

// sliceReader gives tokens from a slice.
type sliceReader struct {
	toks []xml.Token
	i    int
}

func (r *sliceReader) Token() (xml.Token, error) {
	if r.i == len(r.toks) {
		return nil, io.EOF
	}
	t := r.toks[r.i]
	r.i++
	return t, nil
}
