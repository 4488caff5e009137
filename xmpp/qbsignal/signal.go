// Package qbsignal is the QuickBlox WebRTCVideoChat signalling (v1.0) as
// the QuickBlox JS SDK 2.23.0 sends and parses it: one <message
// type="headline"> per signal, to the peer's bare JID, whose <extraParams>
// children carry the call. It is a codec only (no network): Decode reads a
// received message, Encode and Message write one.
//
// The reading rules are the SDK's (qbChat.js _onSystemMessageListener,
// qbWebRTCSignalingProcessor.js _getExtension and _XMLtoJS), so that what
// the SDK would act on decodes and what it would drop does not:
//
//   - the message must be a headline; its first extraParams element (at any
//     depth) is the signal; the first moduleIdentifier inside it (at any
//     depth, in document order) must read WebRTCVideoChat;
//   - a <delay> element anywhere in the message (a replayed, offline
//     message) makes the SDK ignore it: ErrDelayed;
//   - extraParams' children are read by name, in any order (Prosody
//     reorders nothing but strips the inner xmlns; other servers may);
//     iceCandidates and opponentsIDs are lists; userInfo is always an
//     object; any other element with more than one child node is an object
//     and one with at most one is read as its text (so a nested object of
//     one key reads as that key's text: the SDK's rule, kept);
//   - a later element of the same name replaces an earlier one (a JS
//     object's key), except the two lists, which add up.
//
// Where this reader is stricter than the SDK it says so: ids must be
// decimal digits (the SDK's parseInt reads "12x" as 12), and every field
// has a size limit (Max*). Whitespace-only text between elements is
// dropped (the SDK would count it as a child node; no SDK and no server
// sends any), and text and CDATA next to each other read as one text.
package qbsignal

// ModuleID is the moduleIdentifier of every video chat signal.
const ModuleID = "WebRTCVideoChat"

// NSClient is the namespace the SDK gives extraParams (and the stream's).
const NSClient = "jabber:client"

// Type is a signal's signalType.
type Type string

// The signal types of the SDK's SignalingType (qbWebRTCSignalingConstants).
const (
	TypeCall          Type = "call"
	TypeAccept        Type = "accept"
	TypeReject        Type = "reject"
	TypeHangUp        Type = "hangUp"
	TypeICECandidates Type = "iceCandidates"
	TypeUpdate        Type = "update"
)

// Valid reports whether t is one of the six signal types (case matters, as
// in the SDK's switch).
func (t Type) Valid() bool {
	switch t {
	case TypeCall, TypeAccept, TypeReject, TypeHangUp, TypeICECandidates, TypeUpdate:
		return true
	}
	return false
}

// CallType is a session's callType.
type CallType int

// The SDK's CallType values.
const (
	CallVideo CallType = 1
	CallAudio CallType = 2
)

// ReasonReconnect is the update reason of an ICE-restart renegotiation:
// its SessionDescription is the new offer, or the answer to one.
const ReasonReconnect = "reconnect"

// Signal is one signal: the content of a message's extraParams.
type Signal struct {
	Type      Type
	SessionID string // the call id: the SDK makes a UUID, any string goes
	CallType  CallType
	// CallerID is the session's initiator (a user id); the SDK answers to
	// <CallerID>-<appId>@<its chat domain>, not to the message's from.
	CallerID uint64
	// OpponentIDs are the callees (opponentsIDs/opponentID).
	OpponentIDs []uint64
	// SDP is the offer of a call, the answer of an accept, with CRLF line
	// ends (XML reading turns a raw CRLF into LF; Decode puts CR back).
	SDP string
	// Platform is "web" from the JS SDK; Encode sends "web" when empty.
	Platform string
	// UserInfo is the application's map given to call, accept, reject and
	// stop. The SDK adds "bandwidth" (kbit/s, "0": no limit) to a call's;
	// sample apps put "name" and "avatar" in it. Every value the SDK reads
	// is a string or an object.
	UserInfo Fields
	// Candidates of an iceCandidates signal (one batch, no end marker).
	Candidates []Candidate
	// Reason and SessionDescription are an update's top-level fields:
	// reason=reconnect with the ICE-restart offer or answer.
	Reason             string
	SessionDescription *SessionDescription
	// Custom holds every other top-level field (an update's application
	// fields, and whatever else a peer adds), read by the same rules.
	Custom Fields
}

// Candidate is one iceCandidate.
type Candidate struct {
	Candidate string // "candidate:…" as RTCIceCandidate.candidate
	SDPMid    string
	// SDPMLineIndex is -1 when the peer sent none (Encode leaves it out).
	SDPMLineIndex int
}

// SessionDescription is an update's sessionDescription.
type SessionDescription struct {
	// OfferID pairs an answer with the offer it answers (the SDK ignores
	// an answer whose offerId is not its last offer's).
	OfferID string
	SDP     string
	Type    string // "offer" or "answer"
}

// Value is a field of UserInfo or Custom: a text, or an object when Fields
// is not nil.
type Value struct {
	Text   string
	Fields Fields
}

// Text is a text value.
func Text(s string) Value { return Value{Text: s} }

// Object is an object value (nil f is an empty object).
func Object(f Fields) Value {
	if f == nil {
		f = Fields{}
	}
	return Value{Fields: f}
}

// IsObject reports whether v is an object.
func (v Value) IsObject() bool { return v.Fields != nil }

// Fields is an object of the SDK's _XMLtoJS: element names to values.
type Fields map[string]Value

// Text is the text of key, "" when it is missing or an object.
func (f Fields) Text(key string) string { return f[key].Text }
