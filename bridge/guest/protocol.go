package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/pion/webrtc/v4"
)

// The guest call protocol (v1; README "Web API"): JSON objects in text
// frames, signal types and fields as QuickBlox's video chat has them.

// MaxMessage is the largest message a guest may send; a larger one closes
// the socket (1009).
const MaxMessage = 64 << 10

// Message types.
const (
	typeHello         = "hello"
	typeCall          = "call"
	typeAccept        = "accept"
	typeReject        = "reject"
	typeHangUp        = "hangUp"
	typeICECandidates = "iceCandidates"
	typeUpdate        = "update"
	typeError         = "error"
)

// QuickBlox's call types.
const (
	callVideo = 1
	callAudio = 2
)

// Limits on what a guest sends.
const (
	maxName       = 64
	maxSessionID  = 64
	maxCandidates = 64
)

// message is every message of the protocol, both ways.
type message struct {
	Type          string            `json:"type"`
	SessionID     string            `json:"sessionID,omitempty"`
	CallType      int               `json:"callType,omitempty"`
	SDP           string            `json:"sdp,omitempty"`
	UserInfo      map[string]string `json:"userInfo,omitempty"`
	ICECandidates []candidate       `json:"iceCandidates,omitempty"`
	Error         string            `json:"error,omitempty"`
}

// hello is the bot's first message.
type hello struct {
	Type       string      `json:"type"`
	Video      bool        `json:"video"`
	Title      string      `json:"title"`
	ICEServers []iceServer `json:"iceServers,omitempty"`
}

type iceServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

type candidate struct {
	Candidate     string `json:"candidate"`
	SDPMid        string `json:"sdpMid,omitempty"`
	SDPMLineIndex *int   `json:"sdpMLineIndex,omitempty"`
}

// errProtocol is a message the protocol does not allow: the socket is
// closed with a policy violation.
var errProtocol = errors.New("protocol violation")

// decode reads one guest message and checks it.
func decode(data []byte) (message, error) {
	var m message
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return message{}, fmt.Errorf("%w: not a message: %w", errProtocol, err)
	}
	if dec.More() {
		return message{}, fmt.Errorf("%w: more than one JSON value", errProtocol)
	}
	switch m.Type {
	case typeCall:
		if m.CallType != callVideo && m.CallType != callAudio {
			return message{}, fmt.Errorf("%w: callType must be 1 (video) or 2 (audio)", errProtocol)
		}
		if m.SDP == "" {
			return message{}, fmt.Errorf("%w: a call needs an sdp offer", errProtocol)
		}
		if name := m.UserInfo["name"]; utf8.RuneCountInString(name) > maxName {
			return message{}, fmt.Errorf("%w: the name is longer than %d characters", errProtocol, maxName)
		}
	case typeICECandidates:
		if len(m.ICECandidates) > maxCandidates {
			return message{}, fmt.Errorf("%w: more than %d candidates", errProtocol, maxCandidates)
		}
	case typeUpdate, typeHangUp:
	default:
		return message{}, fmt.Errorf("%w: a guest may not send %q", errProtocol, m.Type)
	}
	if m.SessionID == "" || len(m.SessionID) > maxSessionID {
		return message{}, fmt.Errorf("%w: sessionID must be 1 to %d characters", errProtocol, maxSessionID)
	}
	if len(m.UserInfo) > 16 {
		return message{}, fmt.Errorf("%w: userInfo has more than 16 fields", errProtocol)
	}
	return m, nil
}

func (c candidate) init() webrtc.ICECandidateInit {
	ci := webrtc.ICECandidateInit{Candidate: c.Candidate}
	if c.SDPMid != "" {
		mid := c.SDPMid
		ci.SDPMid = &mid
	}
	if c.SDPMLineIndex != nil && *c.SDPMLineIndex >= 0 && *c.SDPMLineIndex < 1<<16 {
		idx := uint16(*c.SDPMLineIndex)
		ci.SDPMLineIndex = &idx
	}
	return ci
}

func candidateOf(ci webrtc.ICECandidateInit) candidate {
	c := candidate{Candidate: ci.Candidate}
	if ci.SDPMid != nil {
		c.SDPMid = *ci.SDPMid
	}
	if ci.SDPMLineIndex != nil {
		idx := int(*ci.SDPMLineIndex)
		c.SDPMLineIndex = &idx
	}
	return c
}
