package call

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/callevent"
)

// ErrEnded is returned for any input to a call that is over.
var ErrEnded = errors.New("the call has ended")

// Ignored is returned for an input the rules say to ignore; it says which
// rule. It is not a failure.
type Ignored struct{ Why string }

func (e *Ignored) Error() string { return "ignored: " + e.Why }

func ignore(format string, args ...any) error { return &Ignored{Why: fmt.Sprintf(format, args...)} }

// NewInbound creates a ringing call from an invite sent by caller; age is
// the invite's age now. The caller checks that the invite is for us and not
// stale before ringing.
func NewInbound(o Options, caller id.UserID, inv *callevent.Invite, age time.Duration) (*Machine, []Effect) {
	m := newMachine(o, Inbound)
	m.Version = inv.Version
	m.Peer = Party{User: caller, PartyID: inv.PartyID}
	m.peerChosen = true
	m.Invitee = inv.Invitee
	m.Lifetime = inv.Lifetime.Duration()
	m.offer = inv.Offer.SDP
	m.Video = HasVideo(inv.Offer.SDP)
	m.remoteStreams = inv.Streams()
	out := m.setState(StateRinging, "invited by "+string(caller))
	return m, append(out, StartTimer{Timer: TimerRinging, After: max(m.Lifetime-age, 0)})
}

// NewOutbound creates a call to invitee and asks for an offer.
func NewOutbound(o Options, invitee id.UserID) (*Machine, []Effect) {
	m := newMachine(o, Outbound)
	m.Invitee = invitee
	m.Peer = Party{User: invitee}
	m.Lifetime = m.timeouts.InviteLifetime
	out := m.setState(StateCreateOffer, "calling "+string(invitee))
	return m, append(out, MakeOffer{})
}

// HasVideo says whether an SDP has a video media section.
func HasVideo(sdp string) bool {
	return strings.HasPrefix(sdp, "m=video") || strings.Contains(sdp, "\nm=video")
}

// Answer answers a ringing call.
func (m *Machine) Answer() ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	if m.State != StateRinging {
		return nil, fmt.Errorf("cannot answer a call in state %s", m.State)
	}
	m.AnsweredAt = m.now()
	out := m.setState(StateCreateAnswer, "answering")
	out = append(out, StopTimer{TimerRinging}, AcceptOffer{SDP: m.offer})
	m.offer = ""
	return append(out, m.flushPending(m.Peer.PartyID)...), nil
}

// Busy declines a ringing call because the bot cannot take another, with
// reason user_busy (what a bridge to a phone network does), recorded as
// missed.
func (m *Machine) Busy(why string) ([]Effect, error) { return m.Decline(callevent.ReasonUserBusy, why) }

// Decline turns down a ringing call for a reason (see decline), recorded as
// missed: every refusal before an answer goes this way, so that the caller
// stops ringing at once.
func (m *Machine) Decline(reason callevent.HangupReason, why string) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	if m.State != StateRinging {
		return nil, fmt.Errorf("cannot decline a call in state %s", m.State)
	}
	m.Missed = true
	return m.end(ByLocal, reason, why, m.decline(reason)), nil
}

// answeredYet says whether the peer may have seen our answer: before that,
// a caller takes only a reject from us (see decline).
func (m *Machine) answeredYet() bool {
	return m.Direction == Outbound || (m.State != StateRinging && m.State != StateCreateAnswer)
}

// decline is how a ringing call is turned down: m.call.reject for a
// version 1 invite — a caller that has taken no answer yet ignores hangups
// from parties it has not chosen (matrix-js-sdk does), but honours a reject
// from anyone — carrying the reason as matrix-js-sdk reads it; a hangup for
// version 0.
func (m *Machine) decline(reason callevent.HangupReason) Effect {
	if m.Version == callevent.Version0 {
		return m.hangupEvent(reason)
	}
	return Send{Type: callevent.TypeReject, Content: &callevent.Reject{Common: m.common(), Reason: reason}}
}

// Hangup ends the call from our side: a ringing version 1 call is rejected,
// anything else is hung up with reason (user_hangup if empty).
func (m *Machine) Hangup(reason callevent.HangupReason, why string) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	if reason == "" {
		reason = callevent.ReasonUserHangup
	}
	switch {
	case m.State == StateCreateOffer:
		// Nothing was sent: nothing to take back.
		return m.end(ByLocal, reason, why), nil
	case !m.answeredYet() && m.Version != callevent.Version0:
		// Ringing, or our answer not sent yet: a plain reject, as a person
		// declining.
		return m.end(ByLocal, "", why, Send{Type: callevent.TypeReject, Content: &callevent.Reject{Common: m.common()}}), nil
	default:
		return m.end(ByLocal, reason, why, m.hangupEvent(reason)), nil
	}
}

// Replaced ends the call because glare resolution kept the other call:
// hung up with "replaced" — silently if our invite was not sent yet.
func (m *Machine) Replaced(by callevent.CallID) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	why := "replaced by the call " + string(by)
	switch m.State {
	case StateCreateOffer:
		return m.end(ByLocal, callevent.ReasonReplaced, why), nil
	case StateRinging:
		return m.end(ByLocal, callevent.ReasonReplaced, why, m.decline(callevent.ReasonReplaced)), nil
	}
	return m.end(ByLocal, callevent.ReasonReplaced, why, m.hangupEvent(callevent.ReasonReplaced)), nil
}

// PeerLeft ends the call because the peer left the room: as the spec says, a
// hangup; nothing is sent (nobody would read it).
func (m *Machine) PeerLeft() []Effect {
	if m.Ended() {
		return nil
	}
	if m.State == StateRinging {
		m.Missed = true
	}
	return m.end(ByRemote, "", string(m.Peer.User)+" left the room")
}

// TimerFired handles a timer the machine asked for.
func (m *Machine) TimerFired(t Timer) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	switch {
	case t == TimerInvite && m.State == StateInviteSent:
		return m.end(ByLocal, callevent.ReasonInviteTimeout, "nobody answered within the invite's lifetime",
			m.hangupEvent(callevent.ReasonInviteTimeout)), nil
	case t == TimerRinging && m.State == StateRinging:
		m.Missed = true
		return m.end(ByRemote, "", "the invite expired before it was answered"), nil
	case t == TimerConnect && m.State == StateConnecting:
		return m.mediaFailed("no media connection within " + m.timeouts.Connect.String())
	case t == TimerNegotiate && m.makingOffer && m.holdOffer:
		// The peer never answered our hold offer: as if never made.
		m.makingOffer, m.holdOffer, m.sentHold = false, false, !m.sentHold
		return nil, ignore("no answer to our hold offer within %s", m.negotiateLifetime())
	case t == TimerNegotiate && m.makingOffer:
		m.makingOffer = false
		return m.mediaFailed("no answer to our ICE restart within " + m.negotiateLifetime().String())
	}
	return nil, ignore("timer %s in state %s", t, m.State)
}

// LocalDescription is the offer or answer the media session made.
func (m *Machine) LocalDescription(sdp string) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	switch m.State {
	case StateCreateOffer:
		inv := &callevent.Invite{
			Common:       m.common(),
			Offer:        callevent.SessionDescription{Type: callevent.SDPOffer, SDP: sdp},
			Lifetime:     callevent.LifetimeOf(m.Lifetime),
			Invitee:      m.Invitee,
			Capabilities: &callevent.Capabilities{},
		}
		inv.SetStreams(m.ourStreams(sdp))
		m.Video = HasVideo(sdp)
		out := []Effect{Send{Type: callevent.TypeInvite, Content: inv}}
		out = append(out, m.setState(StateInviteSent, "invite sent to "+string(m.Invitee))...)
		return append(out, StartTimer{Timer: TimerInvite, After: m.Lifetime}), nil
	case StateCreateAnswer:
		ans := &callevent.Answer{
			Common:       m.common(),
			Answer:       callevent.SessionDescription{Type: callevent.SDPAnswer, SDP: sdp},
			Capabilities: &callevent.Capabilities{},
		}
		if m.Version != callevent.Version0 {
			ans.SetStreams(m.ourStreams(sdp))
		} else {
			ans.PartyID = ""
		}
		out := []Effect{Send{Type: callevent.TypeAnswer, Content: ans}}
		out = append(out, m.setState(StateConnecting, "answered")...)
		return append(out, StartTimer{Timer: TimerConnect, After: m.timeouts.Connect}), nil
	}
	return nil, ignore("local description in state %s", m.State)
}

// LocalCandidates are candidates the media session gathered after its
// description; done means gathering finished (send the end marker).
func (m *Machine) LocalCandidates(cands []callevent.Candidate, done bool) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	if done {
		cands = append(cands, callevent.EndOfCandidates())
	}
	if len(cands) == 0 {
		return nil, nil
	}
	c := m.common()
	if m.Version == callevent.Version0 {
		c.PartyID = ""
	}
	return []Effect{Send{Type: callevent.TypeCandidates, Content: &callevent.Candidates{Common: c, Candidates: cands}}}, nil
}

// MediaConnected: ICE and DTLS are up.
func (m *Machine) MediaConnected() ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	m.mediaFlowed = true
	switch m.State {
	case StateConnecting:
		out := append([]Effect{StopTimer{TimerConnect}}, m.setState(StateConnected, "media connected")...)
		return append(out, m.offerHold()...), nil
	case StateConnected:
		// Back after an ICE restart.
		m.iceRestarts = 0
		return append([]Effect{StopTimer{TimerNegotiate}}, m.setState(StateConnected, "media connected again")...), nil
	}
	return nil, ignore("media connected in state %s", m.State)
}

// MediaFailed: ICE failed (or the connection closed under us).
func (m *Machine) MediaFailed(why string) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	if out, ok := m.restartICE(why); ok {
		return out, nil
	}
	return m.mediaFailed(why)
}

func (m *Machine) mediaFailed(why string) ([]Effect, error) {
	// ice_failed: no media connection was ever made; ice_timeout: it was,
	// and then failed.
	reason := callevent.ReasonICEFailed
	if m.mediaFlowed {
		reason = callevent.ReasonICETimeout
	}
	return m.end(ByLocal, reason, why, m.hangupEvent(reason)), nil
}

// SignallingFailed: an invite or answer (t) could not be sent (the
// homeserver refused it, or was unreachable through every retry). Without
// it the call cannot go on. A caller whose invite we could not answer is
// told with a reject (it never saw our answer); an invite that did not go
// out needs no word.
func (m *Machine) SignallingFailed(t callevent.Type, err error) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	why := fmt.Sprintf("the %s could not be sent: %v", t, err)
	if t == callevent.TypeAnswer && m.Direction == Inbound {
		return m.end(ByLocal, callevent.ReasonUnknownError, why, m.decline(callevent.ReasonUnknownError)), nil
	}
	return m.end(ByLocal, callevent.ReasonUnknownError, why), nil
}

// MediaError: making an offer or answer, or applying the peer's, failed.
// Before our answer is out, the caller is declined (a hangup from a party
// it has not chosen would not stop its ringing); after, hung up.
func (m *Machine) MediaError(err error) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	switch {
	case m.State == StateCreateOffer:
		return m.end(ByLocal, callevent.ReasonUnknownError, "making the offer failed: "+err.Error()), nil
	case !m.answeredYet():
		return m.end(ByLocal, callevent.ReasonUnknownError, "the call could not be answered: "+err.Error(),
			m.decline(callevent.ReasonUnknownError)), nil
	}
	return m.end(ByLocal, callevent.ReasonUnknownError, "media failed: "+err.Error(),
		m.hangupEvent(callevent.ReasonUnknownError)), nil
}

// flushPending hands over the candidates buffered for party.
func (m *Machine) flushPending(party callevent.PartyID) []Effect {
	cands := m.pending[party]
	clear(m.pending)
	if len(cands) == 0 {
		return nil
	}
	return []Effect{AddCandidates{Candidates: cands}}
}

// localStreams is the metadata of what we send: every msid in our SDP is a
// user-media stream (the bot has no screen to share).
func localStreams(sdp string) callevent.Streams {
	streams := callevent.Streams{}
	for line := range strings.SplitSeq(sdp, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "a=msid:"); ok {
			if stream, _, _ := strings.Cut(rest, " "); stream != "" && stream != "-" {
				streams[stream] = callevent.StreamInfo{Purpose: callevent.PurposeUserMedia}
			}
		}
	}
	if len(streams) == 0 {
		return nil // no metadata rather than "no streams"
	}
	return streams
}

// ourStreams is the metadata of what we send in a description: its streams,
// marked muted as we last told the peer. It is kept for later changes.
func (m *Machine) ourStreams(sdp string) callevent.Streams {
	streams := localStreams(sdp)
	for id, info := range streams {
		info.AudioMuted, info.VideoMuted = m.localMutedAudio, m.localMutedVideo
		streams[id] = info
	}
	m.localStreams = streams
	return streams
}

// SetLocalMuted tells the peer that what we send is muted (or not): for a
// bridged call, the other party's microphone or camera. Once our
// description is out this is an m.call.sdp_stream_metadata_changed
// (version 1 only: version 0 has no metadata); before that, the invite or
// answer carries it.
func (m *Machine) SetLocalMuted(audio, video bool) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	if audio == m.localMutedAudio && video == m.localMutedVideo {
		return nil, nil
	}
	m.localMutedAudio, m.localMutedVideo = audio, video
	switch {
	case m.State == StateInviteSent:
		// The invite said otherwise: told once the peer answers.
		m.mutePending = true
		return nil, nil
	case m.State != StateConnecting && m.State != StateConnected:
		return nil, nil // the description to come carries it
	}
	return m.mutedChanged(), nil
}

// mutedChanged is the metadata event that tells the peer our mute state.
func (m *Machine) mutedChanged() []Effect {
	m.mutePending = false
	if m.localStreams == nil || m.Version == callevent.Version0 {
		return nil
	}
	audio, video := m.localMutedAudio, m.localMutedVideo
	streams := callevent.Streams{}
	for id, info := range m.localStreams {
		info.AudioMuted, info.VideoMuted = audio, video
		streams[id] = info
	}
	m.localStreams = streams
	c := &callevent.SDPStreamMetadataChanged{Common: m.common()}
	c.SetStreams(streams)
	return []Effect{Send{Type: callevent.TypeSDPStreamMetadataChanged, Content: c}}
}
