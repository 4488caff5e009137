package qbclient

import (
	"context"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ModuleIdentifier is the moduleIdentifier of every WebRTC signal.
const ModuleIdentifier = "WebRTCVideoChat"

// Stanza is one element the SDK's Strophe sent (Out) or received (In) on
// its WebSocket (its xmlOutput and xmlInput), serialized by the page: the
// stanzas, and RFC 7395's <open/> and <close/>. Elements received carry
// what the server added (from with the resource, xml:lang).
type Stanza struct {
	Dir Direction
	XML string
	// At is the browser's time of the send or receipt.
	At time.Time
}

// Stanzas are every element sent and received so far, in order.
func (c *Client) Stanzas() []Stanza {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.stanzas)
}

// WaitStanza returns the first stanza (since login, so one already there
// counts) that match accepts, waiting for one. match runs without the
// client's lock: it may call the client's methods.
func (c *Client) WaitStanza(ctx context.Context, match func(Stanza) bool) (Stanza, error) {
	next := 0
	for {
		c.mu.Lock()
		fresh := slices.Clone(c.stanzas[next:])
		next = len(c.stanzas)
		changed := c.changed
		c.mu.Unlock()
		for _, st := range fresh {
			if match(st) {
				return st, nil
			}
		}
		select {
		case <-changed:
		case <-c.gone:
			return Stanza{}, fmt.Errorf("qbclient: %s waiting for a stanza: %w", c.name, c.goneError())
		case <-ctx.Done():
			return Stanza{}, fmt.Errorf("qbclient: %s waiting for a stanza: %w", c.name, ctx.Err())
		}
	}
}

// WaitSignal returns the first WebRTC signal of signalType (call, accept,
// reject, hangUp, iceCandidates, update) sent (Out) or received (In), and
// for sessionID if not "", waiting for one.
func (c *Client) WaitSignal(ctx context.Context, dir Direction, signalType, sessionID string) (*Signal, error) {
	var sig *Signal
	_, err := c.WaitStanza(ctx, func(st Stanza) bool {
		if st.Dir != dir {
			return false
		}
		s, ok := st.Signal()
		if ok && s.SignalType == signalType && (sessionID == "" || s.SessionID == sessionID) {
			sig = s
			return true
		}
		return false
	})
	return sig, err
}

// Signals are the WebRTC signals sent (Out) or received (In) so far.
func (c *Client) Signals(dir Direction) []*Signal {
	var out []*Signal
	for _, st := range c.Stanzas() {
		if st.Dir != dir {
			continue
		}
		if s, ok := st.Signal(); ok {
			out = append(out, s)
		}
	}
	return out
}

// Signal is a WebRTC signal (a message with an extraParams whose
// moduleIdentifier is WebRTCVideoChat) as its stanza has it. Children are
// read by name, not by position (the SDK's order is not the documented
// one, and the server drops the inner xmlns).
type Signal struct {
	// The message's attributes.
	ID, From, To, Type string
	// The common fields.
	SignalType, SessionID, CallType, CallerID, Platform, ModuleIdentifier string
	// OpponentIDs are opponentsIDs' opponentID texts.
	OpponentIDs []string
	// SDP is the sdp element's text (call, accept).
	SDP string
	// UserInfo is userInfo's children (nested ones as "outer.inner"); nil
	// without a userInfo element.
	UserInfo map[string]string
	// Fields is every child of extraParams without element children, by
	// name (the common fields, sdp, and an update's custom fields).
	Fields map[string]string
	// Children names extraParams' children in order.
	Children []string
	// Candidates are an iceCandidates signal's.
	Candidates []Candidate
	// Delay says a <delay> element is in the stanza (the SDK ignores such
	// a signal: it takes it for an offline replay).
	Delay bool
	// XML is the whole stanza.
	XML string
}

// Candidate is one iceCandidate of an iceCandidates signal.
type Candidate struct {
	Candidate, SDPMid, SDPMLineIndex string
}

// node is a generic XML element.
type node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []node     `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (n *node) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (n *node) child(name string) *node {
	for i := range n.Nodes {
		if n.Nodes[i].XMLName.Local == name {
			return &n.Nodes[i]
		}
	}
	return nil
}

func (n *node) hasDescendant(name string) bool {
	for i := range n.Nodes {
		if n.Nodes[i].XMLName.Local == name || n.Nodes[i].hasDescendant(name) {
			return true
		}
	}
	return false
}

// flatten puts n's children into m: text by name, nested ones prefixed.
func flatten(m map[string]string, prefix string, n *node) {
	for i := range n.Nodes {
		c := &n.Nodes[i]
		if len(c.Nodes) == 0 {
			m[prefix+c.XMLName.Local] = c.Text
		} else {
			flatten(m, prefix+c.XMLName.Local+".", c)
		}
	}
}

// Signal parses the stanza as a WebRTC signal; false if it is none.
func (st Stanza) Signal() (*Signal, bool) {
	return ParseSignal(st.XML)
}

// ParseSignal parses a stanza's XML as a WebRTC signal; false if it is
// none.
func ParseSignal(stanza string) (*Signal, bool) {
	var msg node
	if err := xml.Unmarshal([]byte(stanza), &msg); err != nil || msg.XMLName.Local != "message" {
		return nil, false
	}
	ep := msg.child("extraParams")
	if ep == nil {
		return nil, false
	}
	s := &Signal{
		ID: msg.attr("id"), From: msg.attr("from"), To: msg.attr("to"), Type: msg.attr("type"),
		Fields: make(map[string]string), Delay: msg.hasDescendant("delay"), XML: stanza,
	}
	for i := range ep.Nodes {
		c := &ep.Nodes[i]
		name := c.XMLName.Local
		s.Children = append(s.Children, name)
		switch name {
		case "userInfo":
			s.UserInfo = make(map[string]string)
			flatten(s.UserInfo, "", c)
		case "opponentsIDs":
			for _, o := range c.Nodes {
				s.OpponentIDs = append(s.OpponentIDs, strings.TrimSpace(o.Text))
			}
		case "iceCandidates":
			for _, ic := range c.Nodes {
				var cand Candidate
				if n := ic.child("candidate"); n != nil {
					cand.Candidate = n.Text
				}
				if n := ic.child("sdpMid"); n != nil {
					cand.SDPMid = n.Text
				}
				if n := ic.child("sdpMLineIndex"); n != nil {
					cand.SDPMLineIndex = n.Text
				}
				s.Candidates = append(s.Candidates, cand)
			}
		default:
			if len(c.Nodes) == 0 {
				s.Fields[name] = c.Text
			}
		}
	}
	s.SignalType, s.SessionID, s.CallType = s.Fields["signalType"], s.Fields["sessionID"], s.Fields["callType"]
	s.CallerID, s.Platform, s.ModuleIdentifier = s.Fields["callerID"], s.Fields["platform"], s.Fields["moduleIdentifier"]
	s.SDP = s.Fields["sdp"]
	if s.ModuleIdentifier != ModuleIdentifier {
		return nil, false
	}
	return s, true
}
