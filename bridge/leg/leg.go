// Package leg is the contract between the conversation layer (package
// bridge) and the kinds of leg (bridge/matrixcall, and later Jami, Element
// Call, XMPP and browser guests). A leg is one party of a conversation; a
// kind implements Leg and reports what happens to it through Events, which
// the bridge implements. A kind never imports package bridge: this package
// is all the two share, as mautrix's networkid is for bridgev2's connectors.
package leg

import (
	"time"

	"github.com/voipbot/voipbot/voip"
)

// ID names a leg for as long as the bot keeps records: unique across kinds
// (each kind prefixes its own identifiers).
type ID string

// BridgeID names one conversation.
type BridgeID string

// Kind is what a leg is: a network (matrix, …) or one of the bot's own
// sources and sinks (echo, tone, silence, file).
type Kind string

// The kinds of leg.
const (
	KindMatrix Kind = "matrix"
	KindJami   Kind = "jami"
	// KindRTC is the bot in a room's Element Call (MatrixRTC).
	KindRTC Kind = "rtc"
	// KindXMPP is a QuickBlox video chat over XMPP.
	KindXMPP Kind = "xmpp"
	// KindGuest is a browser guest who came through a call link.
	KindGuest Kind = "guest"
	// KindWHIP is a client pushing media in over WHIP (RFC 9725).
	KindWHIP Kind = "whip"
	// KindWHEP is a client pulling a call out over WHEP.
	KindWHEP    Kind = "whep"
	KindEcho    Kind = "echo"
	KindTone    Kind = "tone"
	KindSilence Kind = "silence"
	KindFile    Kind = "file"
)

// Network says whether a leg of this kind is a call with someone (and so
// takes a call slot), rather than the bot's own media.
func (k Kind) Network() bool {
	switch k {
	case KindEcho, KindTone, KindSilence, KindFile:
		return false
	}
	return true
}

// Direction says who started a leg.
type Direction string

// The two directions.
const (
	// Inbound: the peer called the bot.
	Inbound Direction = "inbound"
	// Outbound: the bot called the peer.
	Outbound Direction = "outbound"
)

// Reason is why a leg ended, in terms every kind maps to and from its own
// protocol's reasons (Matrix hangup reasons, SIP status codes, …).
type Reason string

// The reasons.
const (
	// Hangup: a party hung up (or the bot did, by command), normally.
	Hangup Reason = "hangup"
	// Declined: the called party turned the call down.
	Declined Reason = "declined"
	// Busy: the called party (or the bot) could take no other call.
	Busy Reason = "busy"
	// NoAnswer: nobody answered in time.
	NoAnswer Reason = "no_answer"
	// Failed: media or signalling failed.
	Failed Reason = "failed"
	// Shutdown: the bot is stopping.
	Shutdown Reason = "shutdown"
)

// By says which side ended a leg.
type By string

// The sides.
const (
	ByPeer By = "peer"
	ByBot  By = "bot"
)

// End is how a leg ended.
type End struct {
	Reason Reason
	By     By
	// Detail says it in words, for logs and records.
	Detail string
}

// Leg is one party of a conversation. Its methods never block: each is
// queued on the leg's own operation queue.
type Leg interface {
	// ID names the leg.
	ID() ID
	// Kind says what the leg is.
	Kind() Kind
	// Direction says who started it.
	Direction() Direction
	// Peer says who the leg is with (a Matrix user ID, a Jami account…).
	Peer() string
	// Video says whether the leg carries video.
	Video() bool
	// Answer answers an inbound leg that rings; nothing otherwise.
	Answer()
	// Hangup ends the leg for a reason (a ringing inbound leg is declined
	// with it).
	Hangup(r Reason, detail string)
	// Hold puts the peer on hold, or resumes it (it mirrors the other
	// party's hold).
	Hold(on bool)
	// SetMuted tells the peer that what the bot sends it is muted, or not
	// (it mirrors the other party's microphone and camera).
	SetMuted(audio, video bool)
	// Done is closed once the leg has ended and let go of its media.
	Done() <-chan struct{}
}

// Events is what a leg tells its conversation. Every method returns at
// once (the bridge queues the work), and they arrive in the order the leg
// saw them.
type Events interface {
	// Answered: the peer answered an outbound leg, or the bot answered an
	// inbound one.
	Answered(l Leg)
	// MediaReady: the leg's media endpoint exists, with an outbound track
	// of each kind it negotiated (or offers): it may be forwarded to.
	MediaReady(l Leg, m voip.Leg)
	// Preferred: of the peer's tracks of its kind, t is the one the leg's
	// signalling says is the call's media (user media, not a screen share).
	Preferred(l Leg, t *voip.InboundTrack)
	// Connected: media is flowing (again).
	Connected(l Leg)
	// Receiving: whether the peer takes media now (false while it holds
	// the call).
	Receiving(l Leg, on bool)
	// PeerMuted: the peer muted or unmuted its microphone or camera.
	PeerMuted(l Leg, audio, video bool)
	// DTMF: the peer pressed a key that its signalling carried (jamid's
	// SIP INFO); the other parties get it as RFC 4733 events. Events in
	// the media itself are forwarded with it and never come here.
	DTMF(l Leg, digit rune, d time.Duration)
	// Ended: the leg is over.
	Ended(l Leg, e End)
}
