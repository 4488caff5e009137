package qbsignal

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// DecodeBytes reads the signal of one whole <message> stanza (as a server
// delivered it, or as a test wrote it).
func DecodeBytes(msg []byte) (Signal, error) {
	if len(msg) > MaxStanza {
		return Signal{}, fieldErr("message", ErrTooLarge, fmt.Sprintf("%d bytes, more than %d", len(msg), MaxStanza))
	}
	return Decode(xml.NewDecoder(bytes.NewReader(msg)))
}

// Decode reads the signal of the <message> element that r gives, from its
// start token (an XML declaration, comments and whitespace before it are
// skipped) to its end.
func Decode(r xml.TokenReader) (Signal, error) {
	for {
		tok, err := r.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Signal{}, fmt.Errorf("%w: reading XML: %w", ErrMalformed, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			return DecodeElement(tok, r)
		case xml.ProcInst, xml.Comment:
		case xml.CharData:
			if len(bytes.TrimSpace(tok)) != 0 {
				return Signal{}, fmt.Errorf("%w: text before the message", ErrMalformed)
			}
		default:
			return Signal{}, fmt.Errorf("%w: %T before the message", ErrMalformed, tok)
		}
	}
}

// DecodeElement is Decode of a message whose start token has been read
// already: r gives what follows it, up to its end token (or io.EOF where
// that would be, as an XMPP library's reader of one element's inside
// may). With mellium.im/xmpp, in a Handler for a message:
//
//	sig, err := qbsignal.DecodeElement(*start, t)
func DecodeElement(start xml.StartElement, r xml.TokenReader) (Signal, error) {
	if start.Name.Local != "message" {
		return Signal{}, fmt.Errorf("%w: a <%s>, not a message", ErrNotSignal, start.Name.Local)
	}
	tr := treeReader{r: r}
	msg, err := tr.readElement(start)
	if err != nil {
		return Signal{}, err
	}
	return fromTree(msg)
}

// fromTree applies the SDK's filter, then its _getExtension.
func fromTree(msg *node) (Signal, error) {
	// The SDK's handler takes headline messages only, then looks for
	// extraParams and its moduleIdentifier anywhere below.
	if typ := msg.attr("type"); typ != "headline" {
		return Signal{}, fmt.Errorf("%w: a message of type %s", ErrNotSignal, quote(typ))
	}
	ep := msg.find("extraParams")
	if ep == nil {
		return Signal{}, fmt.Errorf("%w: no extraParams", ErrNotSignal)
	}
	if mod := ep.find("moduleIdentifier"); mod == nil || mod.textContent() != ModuleID {
		return Signal{}, fmt.Errorf("%w: moduleIdentifier is not %s", ErrNotSignal, ModuleID)
	}
	if msg.find("delay") != nil {
		return Signal{}, ErrDelayed
	}

	var sig Signal
	ext := Fields{}
	var sawCandidates, sawOpponents bool
	for _, c := range ep.children {
		switch {
		case c.isText():
			ext["#text"] = Text(c.text) // the DOM's nodeName of a text
		case c.name == "iceCandidates":
			sawCandidates = true
			for _, cn := range c.children {
				if len(sig.Candidates) == MaxCandidates {
					return Signal{}, fieldErr("iceCandidates", ErrTooLarge, fmt.Sprintf("more than %d", MaxCandidates))
				}
				cand, err := candidate(cn)
				if err != nil {
					return Signal{}, err
				}
				sig.Candidates = append(sig.Candidates, cand)
			}
		case c.name == "opponentsIDs":
			sawOpponents = true
			for _, o := range c.children {
				if len(sig.OpponentIDs) == MaxOpponents {
					return Signal{}, fieldErr("opponentsIDs", ErrTooLarge, fmt.Sprintf("more than %d", MaxOpponents))
				}
				id, err := parseID(o.textContent())
				if err != nil {
					return Signal{}, fieldErr("opponentsIDs", ErrBadID, quote(o.textContent()))
				}
				sig.OpponentIDs = append(sig.OpponentIDs, id)
			}
		case len(c.children) > 1 || c.name == "userInfo":
			ext[c.name] = toObject(c)
		default:
			ext[c.name] = Text(c.textContent())
		}
	}
	if err := checkSizes("", ext); err != nil {
		return Signal{}, err
	}
	if err := sig.take(ext); err != nil {
		return Signal{}, err
	}
	if err := sig.checkRequired(sawCandidates, sawOpponents); err != nil {
		return Signal{}, err
	}
	return sig, nil
}

// toObject is the SDK's _XMLtoJS: an element as an object whose children
// with more than one child node are objects and the others texts.
func toObject(n *node) Value {
	f := Fields{}
	for _, c := range n.children {
		switch {
		case c.isText():
			f["#text"] = Text(c.text)
		case len(c.children) > 1:
			f[c.name] = toObject(c)
		default:
			f[c.name] = Text(c.textContent())
		}
	}
	return Value{Fields: f}
}

// candidate reads an iceCandidate: its children by name.
func candidate(n *node) (Candidate, error) {
	if n.isText() {
		return Candidate{}, fieldErr("iceCandidates", ErrMalformed, "text among the candidates")
	}
	c := Candidate{SDPMLineIndex: -1}
	var haveCandidate bool
	for _, f := range n.children {
		if f.isText() {
			continue
		}
		v := f.textContent()
		if len(v) > MaxText {
			return Candidate{}, fieldErr("iceCandidates."+f.name, ErrTooLarge, fmt.Sprintf("%d bytes", len(v)))
		}
		switch f.name {
		case "candidate":
			c.Candidate, haveCandidate = v, true
		case "sdpMid":
			c.SDPMid = v
		case "sdpMLineIndex":
			// RTCIceCandidate takes an unsigned short.
			i, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return Candidate{}, fieldErr("iceCandidates.sdpMLineIndex", ErrMalformed, quote(v))
			}
			c.SDPMLineIndex = int(i)
		}
	}
	if !haveCandidate {
		return Candidate{}, fieldErr("iceCandidates.candidate", ErrMissingField, "")
	}
	return c, nil
}

// take moves the known fields out of ext into sig; the rest is Custom.
func (sig *Signal) take(ext Fields) error {
	text := func(key string) (string, bool, error) {
		v, ok := ext[key]
		if !ok {
			return "", false, nil
		}
		delete(ext, key)
		if v.IsObject() {
			return "", true, fieldErr(key, ErrMalformed, "an object, not a text")
		}
		return v.Text, true, nil
	}
	// moduleIdentifier was checked; the SDK deletes it, and sessionID and
	// signalType, from what it passes on.
	delete(ext, "moduleIdentifier")

	typ, ok, err := text("signalType")
	if err != nil || !ok || !Type(typ).Valid() {
		return fieldErr("signalType", ErrUnknownType, quote(typ))
	}
	sig.Type = Type(typ)

	if sig.SessionID, ok, err = text("sessionID"); err != nil {
		return err
	} else if !ok || sig.SessionID == "" {
		return fieldErr("sessionID", ErrMissingField, "")
	}
	if v, ok, err := text("callType"); err != nil {
		return err
	} else if ok {
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil {
			return fieldErr("callType", ErrMalformed, quote(v))
		}
		sig.CallType = CallType(n)
	}
	if v, ok, err := text("callerID"); err != nil {
		return fieldErr("callerID", ErrBadID, "an object")
	} else if ok {
		if sig.CallerID, err = parseID(v); err != nil {
			return fieldErr("callerID", ErrBadID, quote(v))
		}
	}
	if v, ok, err := text("sdp"); err != nil {
		return err
	} else if ok {
		sig.SDP = crlf(v)
	}
	if sig.Platform, _, err = text("platform"); err != nil {
		return err
	}
	if v, ok := ext["userInfo"]; ok {
		delete(ext, "userInfo")
		sig.UserInfo = v.Fields
	}
	if v, ok := ext["reason"]; ok && !v.IsObject() {
		delete(ext, "reason")
		sig.Reason = v.Text
	}
	if v, ok := ext["sessionDescription"]; ok && v.IsObject() {
		delete(ext, "sessionDescription")
		sig.SessionDescription = &SessionDescription{
			OfferID: v.Fields.Text("offerId"),
			SDP:     crlf(v.Fields.Text("sdp")),
			Type:    v.Fields.Text("type"),
		}
	}
	if len(ext) > 0 {
		sig.Custom = ext
	}
	return nil
}

// checkRequired refuses what the SDK needs and does not get (it would
// throw, or make a session it cannot answer).
func (sig *Signal) checkRequired(sawCandidates, sawOpponents bool) error {
	switch sig.Type {
	case TypeCall:
		if sig.CallerID == 0 {
			return fieldErr("callerID", ErrMissingField, "a call names its initiator")
		}
		if !sawOpponents || len(sig.OpponentIDs) == 0 {
			return fieldErr("opponentsIDs", ErrMissingField, "a call names its callees")
		}
		if sig.SDP == "" {
			return fieldErr("sdp", ErrMissingField, "a call carries the offer")
		}
	case TypeAccept:
		if sig.SDP == "" {
			return fieldErr("sdp", ErrMissingField, "an accept carries the answer")
		}
	case TypeICECandidates:
		if !sawCandidates || len(sig.Candidates) == 0 {
			return fieldErr("iceCandidates", ErrMissingField, "")
		}
	}
	return nil
}

// checkSizes applies MaxSDP to the fields named sdp and MaxText to every
// other text, at every depth.
func checkSizes(prefix string, f Fields) error {
	for k, v := range f {
		if v.IsObject() {
			if err := checkSizes(prefix+k+".", v.Fields); err != nil {
				return err
			}
			continue
		}
		limit := MaxText
		if k == "sdp" {
			limit = MaxSDP
		}
		if len(v.Text) > limit {
			return fieldErr(prefix+k, ErrTooLarge, fmt.Sprintf("%d bytes, more than %d", len(v.Text), limit))
		}
	}
	return nil
}

// parseID reads a user id: decimal digits only, at most 64 bits. (The
// SDK's parseInt would also take a sign, spaces and trailing junk.)
func parseID(s string) (uint64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: %s", ErrBadID, quote(s))
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", ErrBadID, quote(s))
	}
	return id, nil
}

// crlf gives an SDP its CRLF line ends back: an XML parser reads a raw
// CRLF (what the SDK sends) as LF.
func crlf(s string) string {
	if !strings.Contains(s, "\n") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}
