// Package call is the state machine of one Matrix call between the bot and
// one peer party, as the spec (v1.19 + MSC2746) and matrix-js-sdk behave. It
// is pure logic: each input returns the effects to carry out (events to
// send, media operations, timers), and the caller (bridge.callRunner) does
// them in order on the call's own queue. Table tests drive it directly.
package call

import (
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/callevent"
)

// State is where a call is, named as matrix-js-sdk's CallState.
type State string

// The states the bot's calls go through.
const (
	// Outbound: the offer is being made; nothing sent yet.
	StateCreateOffer State = "create_offer"
	// Outbound: the invite is out; waiting for an answer or reject.
	StateInviteSent State = "invite_sent"
	// Inbound: an invite for us, not yet answered.
	StateRinging State = "ringing"
	// Inbound: answering (making the answer SDP).
	StateCreateAnswer State = "create_answer"
	// Answered or answer taken; ICE is connecting.
	StateConnecting State = "connecting"
	// Media flows.
	StateConnected State = "connected"
	// Over (see Machine.Reason, HangupReason, HangupBy).
	StateEnded State = "ended"
)

// Direction says who placed the call.
type Direction string

// The two directions.
const (
	Inbound  Direction = "inbound"
	Outbound Direction = "outbound"
)

// By says which side ended a call.
type By string

// Who ended it.
const (
	ByLocal  By = "local"
	ByRemote By = "remote"
)

// Party is one client in a call: a user and the party ID its client chose.
type Party struct {
	User    id.UserID
	PartyID callevent.PartyID
}

func (p Party) String() string { return fmt.Sprintf("%s/%s", p.User, p.PartyID) }

// Timer names a timeout the machine asks for.
type Timer string

// The machine's timers.
const (
	// TimerInvite: an outbound invite's lifetime; unanswered → invite_timeout.
	TimerInvite Timer = "invite"
	// TimerRinging: an inbound invite's remaining lifetime; unanswered → missed.
	TimerRinging Timer = "ringing"
	// TimerConnect: answered but ICE never connected → ice_failed.
	TimerConnect Timer = "connect"
	// TimerNegotiate: our negotiate offer (an ICE restart) got no answer,
	// or the restarted connection never came up.
	TimerNegotiate Timer = "negotiate"
)

// maxICERestarts is how often a failed connection is restarted before the
// call is hung up (famedly tries 3 times, js-sdk until a 30 s timeout).
const maxICERestarts = 2

// Timeouts the machine uses; zero values take the defaults.
type Timeouts struct {
	// InviteLifetime is the lifetime of our invites (js-sdk and famedly:
	// 60 s, the spec's example).
	InviteLifetime time.Duration
	// Connect is how long ICE may take after an answer before the call
	// fails with ice_failed.
	Connect time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	if t.InviteLifetime <= 0 {
		t.InviteLifetime = 60 * time.Second
	}
	if t.Connect <= 0 {
		t.Connect = 30 * time.Second
	}
	return t
}

// Machine is one call. Its exported fields are what is persisted; change them
// only through its methods.
type Machine struct {
	Room      id.RoomID
	CallID    callevent.CallID
	Us        Party
	Direction Direction
	Version   callevent.Version
	Video     bool
	// Invitee is who an outbound call is for (the invite's invitee).
	Invitee id.UserID
	// Peer is the other party: the caller of an inbound call; the party
	// whose answer (or reject) we took for an outbound one. Its PartyID is
	// "" until then.
	Peer     Party
	Lifetime time.Duration

	State State
	// Reason says, in words, why the call is in its state (mostly: why it
	// ended).
	Reason       string
	HangupReason callevent.HangupReason
	HangupBy     By
	Missed       bool

	CreatedAt, AnsweredAt, ConnectedAt, EndedAt time.Time

	timeouts Timeouts
	now      func() time.Time
	offer    string // inbound: the caller's offer, until we answer
	// peerChosen: an outbound call has taken an answer or reject.
	peerChosen bool
	// pending holds remote candidates per party ID until they can be used:
	// before we answer (inbound), or before an answer is taken (outbound).
	pending       map[callevent.PartyID][]callevent.Candidate
	mediaFlowed   bool
	remoteStreams callevent.Streams
	// makingOffer: our negotiate offer is out, its answer not yet applied;
	// holdOffer: that offer is a hold or resume (not an ICE restart), whose
	// failure leaves the call as it was.
	makingOffer, holdOffer bool
	// LocalHold: we want the peer on hold (a bridged party holds); sentHold
	// is what the peer was last offered.
	LocalHold, sentHold bool
	iceRestarts         int
	// RemoteHold: the peer put us on hold (its media is sendonly or
	// inactive); we send nothing meanwhile.
	RemoteHold bool
	// localStreams is the metadata of what we send, as last described;
	// localMuted* what we tell the peer of it (a bridged party's mute).
	localStreams                     callevent.Streams
	localMutedAudio, localMutedVideo bool
	// mutePending: our mute changed after our invite went out; the peer
	// is told once it answers.
	mutePending bool
}

// Options create a machine.
type Options struct {
	Room     id.RoomID
	CallID   callevent.CallID
	Us       Party
	Video    bool
	Timeouts Timeouts
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func newMachine(o Options, dir Direction) *Machine {
	m := &Machine{
		Room: o.Room, CallID: o.CallID, Us: o.Us, Direction: dir, Video: o.Video,
		Version: callevent.Version1, timeouts: o.Timeouts.withDefaults(), now: o.Now,
		pending: map[callevent.PartyID][]callevent.Candidate{},
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.CreatedAt = m.now()
	return m
}

// Effect is something the machine asks its runner to do.
type Effect interface{ isEffect() }

// Send sends a call event into the call's room.
type Send struct {
	Type    callevent.Type
	Content callevent.Content
}

// AcceptOffer applies the caller's offer and makes an answer; the runner
// reports it with LocalDescription.
type AcceptOffer struct{ SDP string }

// MakeOffer makes an offer; the runner reports it with LocalDescription.
type MakeOffer struct{}

// ApplyAnswer applies the answer we took, or with Negotiation the peer's
// answer to our negotiate offer (if it fails, report NegotiationFailed
// with ours set).
type ApplyAnswer struct {
	SDP         string
	Negotiation bool
	// Hold: the answer to our hold (or resume) offer; one that cannot be
	// applied changes nothing.
	Hold bool
}

// AddCandidates hands remote candidates to the media session.
type AddCandidates struct{ Candidates []callevent.Candidate }

// StartTimer (re)starts a timer; the runner reports it with TimerFired.
type StartTimer struct {
	Timer Timer
	After time.Duration
}

// StopTimer stops a timer.
type StopTimer struct{ Timer Timer }

// CloseMedia ends the media session.
type CloseMedia struct{}

// RestartICE makes a negotiate offer with new ICE credentials; the runner
// reports it with LocalNegotiationOffer.
type RestartICE struct{}

// AcceptNegotiation applies the peer's negotiate offer (first abandoning
// ours if Rollback) and makes an answer; the runner reports it with
// NegotiationApplied (Hold: whether the offer puts us on hold) and
// NegotiationAnswer, or NegotiationFailed.
type AcceptNegotiation struct {
	SDP      string
	Rollback bool
	Hold     bool
}

// HoldOffer makes a negotiate offer that puts the peer on hold (every
// section sendonly, as matrix-js-sdk's setRemoteOnHold) or resumes it; the
// runner reports it with LocalNegotiationOffer, or NegotiationFailed with
// ours set.
type HoldOffer struct{ Hold bool }

// SetSending starts or stops sending media to the peer (hold).
type SetSending struct{ On bool }

// Changed says the machine's persisted fields changed: store them.
type Changed struct{ From State }

func (Send) isEffect()              {}
func (AcceptOffer) isEffect()       {}
func (MakeOffer) isEffect()         {}
func (ApplyAnswer) isEffect()       {}
func (AddCandidates) isEffect()     {}
func (StartTimer) isEffect()        {}
func (StopTimer) isEffect()         {}
func (CloseMedia) isEffect()        {}
func (RestartICE) isEffect()        {}
func (HoldOffer) isEffect()         {}
func (AcceptNegotiation) isEffect() {}
func (SetSending) isEffect()        {}
func (Changed) isEffect()           {}

// Ended says whether the call is over.
func (m *Machine) Ended() bool { return m.State == StateEnded }

// RemoteStreams returns the peer's stream metadata (nil if it sent none).
func (m *Machine) RemoteStreams() callevent.Streams { return m.remoteStreams }

// PeerMuted says whether the peer muted its microphone or camera, by its
// stream metadata (MSC3291): its user-media streams all say so.
func (m *Machine) PeerMuted() (audio, video bool) {
	n := 0
	audio, video = true, true
	for _, s := range m.remoteStreams {
		if s.Purpose != callevent.PurposeUserMedia {
			continue
		}
		n++
		audio = audio && s.AudioMuted
		video = video && s.VideoMuted
	}
	if n == 0 {
		return false, false
	}
	return audio, video
}

func (m *Machine) common() callevent.Common {
	return callevent.Common{CallID: m.CallID, PartyID: m.Us.PartyID, Version: m.Version}
}

func (m *Machine) setState(s State, reason string) []Effect {
	from := m.State
	m.State, m.Reason = s, reason
	switch s {
	case StateConnected:
		if m.ConnectedAt.IsZero() {
			m.ConnectedAt = m.now()
		}
	case StateEnded:
		m.EndedAt = m.now()
	}
	return []Effect{Changed{From: from}}
}

// end finishes the call: timers stopped, media closed, state persisted. A
// non-empty send hangs up on the wire first.
func (m *Machine) end(by By, reason callevent.HangupReason, why string, send ...Effect) []Effect {
	if m.Ended() {
		return nil
	}
	m.HangupBy, m.HangupReason = by, reason
	out := append([]Effect{}, send...)
	out = append(out, StopTimer{TimerInvite}, StopTimer{TimerRinging}, StopTimer{TimerConnect}, StopTimer{TimerNegotiate}, CloseMedia{})
	return append(out, m.setState(StateEnded, why)...)
}

func (m *Machine) hangupEvent(reason callevent.HangupReason) Effect {
	return Send{Type: callevent.TypeHangup, Content: &callevent.Hangup{Common: m.common(), Reason: reason}}
}
