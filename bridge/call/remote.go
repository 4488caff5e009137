package call

import (
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/callevent"
)

// Remote handles a call event of this call that someone sent into the room.
// The party rules decide who may do what; anything else is Ignored.
func (m *Machine) Remote(sender id.UserID, c callevent.Content) ([]Effect, error) {
	return m.RemoteAged(sender, c, 0)
}

// RemoteAged is Remote for an event of a known age (negotiate offers expire).
func (m *Machine) RemoteAged(sender id.UserID, c callevent.Content, age time.Duration) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	from := Party{User: sender, PartyID: c.CallInfo().PartyID}
	// Our own events come back to us. They are recognised by party ID, not
	// by user: a user may call themselves (and the bot's user may answer
	// on another device).
	if from == m.Us {
		return nil, ignore("our own %T", c)
	}
	switch c := c.(type) {
	case *callevent.Invite:
		return nil, ignore("a second invite for the call")
	case *callevent.Answer:
		return m.remoteAnswer(from, c)
	case *callevent.Reject:
		return m.remoteReject(from, c.Reason)
	case *callevent.SelectAnswer:
		return m.remoteSelectAnswer(from, c)
	case *callevent.Hangup:
		return m.remoteHangup(from, c)
	case *callevent.Candidates:
		return m.remoteCandidates(from, c)
	case *callevent.SDPStreamMetadataChanged:
		if !m.isPeer(from) {
			return nil, ignore("stream metadata from %s, not the peer", from)
		}
		m.remoteStreams = c.Streams()
		return []Effect{Changed{From: m.State}}, nil
	case *callevent.Negotiate:
		return m.remoteNegotiate(from, c, age)
	}
	return nil, ignore("unexpected %T", c)
}

// isPeer says whether from is the chosen peer party. A version 0 peer has no
// party ID, so its user is enough.
func (m *Machine) isPeer(from Party) bool {
	if !m.peerChosen {
		return false
	}
	if m.Version == callevent.Version0 {
		return from.User == m.Peer.User
	}
	return from == m.Peer
}

// mayAnswer says whether from may answer or reject our outbound call: the
// invitee, on any of its devices.
// mayAnswer says whether from may answer (or reject) our call: the invitee,
// or, for a call that rings a whole room (no invitee), any member but our
// own user.
func (m *Machine) mayAnswer(from Party) bool {
	if m.Direction != Outbound {
		return false
	}
	if m.Invitee == "" {
		return from.User != m.Us.User
	}
	return from.User == m.Invitee
}

func (m *Machine) remoteAnswer(from Party, c *callevent.Answer) ([]Effect, error) {
	if m.Direction == Inbound {
		// Another device of our own user answered the call we are ringing
		// for: it was answered elsewhere.
		if from.User == m.Us.User && m.State == StateRinging {
			return m.end(ByRemote, "", "answered elsewhere by "+from.String()), nil
		}
		return nil, ignore("an answer from %s to a call we did not place", from)
	}
	if !m.mayAnswer(from) {
		return nil, ignore("an answer from %s, who was not invited", from)
	}
	if m.peerChosen {
		return nil, ignore("an answer from %s after we took %s's", from, m.Peer)
	}
	if m.State != StateInviteSent {
		return nil, ignore("an answer in state %s", m.State)
	}
	m.choose(from, c.Version)
	m.remoteStreams = c.Streams()
	m.AnsweredAt = m.now()
	out := []Effect{StopTimer{TimerInvite}}
	if m.Version != callevent.Version0 {
		out = append(out, m.selectAnswer())
	}
	out = append(out, ApplyAnswer{SDP: c.Answer.SDP})
	out = append(out, m.flushPending(from.PartyID)...)
	out = append(out, m.setState(StateConnecting, "answered by "+from.String())...)
	if m.mutePending {
		out = append(out, m.mutedChanged()...)
	}
	return append(out, StartTimer{Timer: TimerConnect, After: m.timeouts.Connect}), nil
}

// remoteReject ends an outbound call the invitee turned down; the reason
// it gave (matrix-js-sdk sends user_busy from a busy client) is kept, so
// that a bridged caller hears why.
func (m *Machine) remoteReject(from Party, reason callevent.HangupReason) ([]Effect, error) {
	if !m.mayAnswer(from) {
		return nil, ignore("a reject from %s, who was not invited (or not by us)", from)
	}
	// An answer seen before a reject wins over it.
	if m.peerChosen {
		return nil, ignore("a reject from %s after we took %s's answer", from, m.Peer)
	}
	m.choose(from, callevent.Version1)
	return m.end(ByRemote, reason, "rejected by "+from.String(), m.selectAnswer()), nil
}

func (m *Machine) remoteSelectAnswer(from Party, c *callevent.SelectAnswer) ([]Effect, error) {
	if m.Direction != Inbound || !m.isPeer(from) {
		return nil, ignore("select_answer from %s, not the caller", from)
	}
	if c.SelectedPartyID == m.Us.PartyID {
		return nil, nil
	}
	// The caller took another party's answer (or reject): our leg ends, and
	// we send nothing.
	return m.end(ByRemote, "", "the caller selected party "+string(c.SelectedPartyID)), nil
}

func (m *Machine) remoteHangup(from Party, c *callevent.Hangup) ([]Effect, error) {
	switch {
	case m.isPeer(from):
	case m.Direction == Outbound && !m.peerChosen && m.mayAnswer(from):
		// Before any answer was taken, the invitee's hangup (how version 0
		// clients decline) ends the call.
	default:
		return nil, ignore("a hangup from %s, not the peer", from)
	}
	if m.State == StateRinging {
		m.Missed = true
	}
	return m.end(ByRemote, c.EffectiveReason(), "hung up by "+from.String()+": "+string(c.EffectiveReason())), nil
}

func (m *Machine) remoteCandidates(from Party, c *callevent.Candidates) ([]Effect, error) {
	switch {
	case m.isPeer(from) && m.State != StateRinging:
		return []Effect{AddCandidates{Candidates: c.Candidates}}, nil
	case m.isPeer(from) || (!m.peerChosen && m.mayAnswer(from)):
		// Before we answer, or before we took an answer: keep them for
		// the party until then.
		m.pending[from.PartyID] = append(m.pending[from.PartyID], c.Candidates...)
		return nil, nil
	}
	return nil, ignore("candidates from %s, not the peer", from)
}

func (m *Machine) choose(p Party, v callevent.Version) {
	m.Peer, m.peerChosen = p, true
	if v == callevent.Version0 {
		m.Version = callevent.Version0
	}
}

func (m *Machine) selectAnswer() Effect {
	return Send{Type: callevent.TypeSelectAnswer, Content: &callevent.SelectAnswer{Common: m.common(), SelectedPartyID: m.Peer.PartyID}}
}
