package call

import (
	"fmt"
	"strings"
	"time"

	"github.com/voipbot/voipbot/matrix/callevent"
)

// negotiateLifetime is how long our negotiate offers are valid: the spec's
// example uses 10 s, js-sdk 60 s; an ICE restart should not take longer
// than a connection may take.
func (m *Machine) negotiateLifetime() time.Duration { return m.timeouts.Connect }

// canNegotiate: m.call.negotiate is only for calls whose invite and accepted
// answer were both version 1, once an answer was taken.
func (m *Machine) canNegotiate() bool {
	return m.Version != callevent.Version0 && (m.State == StateConnecting || m.State == StateConnected)
}

// polite is the perfect-negotiation role: the callee yields when both
// sides offer at once (a glare winner that answered the peer's call is the
// callee too).
func (m *Machine) polite() bool { return m.Direction == Inbound }

// remoteNegotiate handles the peer's m.call.negotiate; age is how old it is.
func (m *Machine) remoteNegotiate(from Party, c *callevent.Negotiate, age time.Duration) ([]Effect, error) {
	if !m.isPeer(from) {
		return nil, ignore("negotiate from %s, not the peer", from)
	}
	if !m.canNegotiate() {
		return nil, ignore("negotiate in state %s (version %s)", m.State, m.Version)
	}
	if c.Lifetime > 0 && age > c.Lifetime.Duration() {
		return nil, ignore("negotiate older (%s) than its lifetime (%s)", age, c.Lifetime.Duration())
	}
	if streams := c.Streams(); streams != nil {
		m.remoteStreams = streams
	}
	if c.Description.Type == callevent.SDPAnswer {
		if !m.makingOffer {
			return nil, ignore("negotiate answer without our offer")
		}
		m.makingOffer = false
		out := []Effect{ApplyAnswer{SDP: c.Description.SDP, Negotiation: true, Hold: m.holdOffer}, StopTimer{TimerNegotiate}}
		if m.holdOffer {
			// A hold answer that cannot be applied is logged by the runner
			// and changes nothing; one asked for meanwhile goes out now.
			m.holdOffer = false
			out = append(out, m.offerHold()...)
		}
		return out, nil
	}
	rollback := false
	if m.makingOffer {
		if !m.polite() {
			return nil, ignore("negotiate offer colliding with ours; we are the impolite side")
		}
		rollback, m.makingOffer = true, false
		if m.holdOffer {
			// Ours is abandoned for theirs: offered again once theirs is in.
			m.holdOffer, m.sentHold = false, !m.sentHold
		}
	}
	return []Effect{AcceptNegotiation{SDP: c.Description.SDP, Rollback: rollback, Hold: OnHold(c.Description.SDP)}}, nil
}

// NegotiationApplied: the media session took the peer's negotiate offer
// (AcceptNegotiation); only now does its hold (or resume) count.
func (m *Machine) NegotiationApplied(hold bool) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	if hold == m.RemoteHold {
		return m.offerHold(), nil
	}
	m.RemoteHold = hold
	why := "resumed by the peer"
	if hold {
		why = "put on hold by the peer"
	}
	out := append([]Effect{SetSending{On: !hold}}, m.setState(m.State, why)...)
	return append(out, m.offerHold()...), nil
}

// NegotiationFailed: a negotiate SDP of the peer could not be applied, or
// answered; the media session is back where it was. The call goes on as it
// was — unless ours is set: our own offer (an ICE restart) was abandoned
// for it, so the connection that needed restarting is still down.
func (m *Machine) NegotiationFailed(err error, ours bool) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	if ours && m.holdOffer {
		m.makingOffer, m.holdOffer, m.sentHold = false, false, !m.sentHold
		return nil, fmt.Errorf("our hold offer failed; the call goes on as it was: %w", err)
	}
	if ours {
		m.makingOffer = false
		return m.MediaFailed("the ICE restart failed: " + err.Error())
	}
	return nil, fmt.Errorf("the peer's negotiate offer cannot be used; the call goes on as it was: %w", err)
}

// NegotiationAnswer is our answer to the peer's negotiate offer.
func (m *Machine) NegotiationAnswer(sdp string) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	n := &callevent.Negotiate{
		Common:      m.common(),
		Description: callevent.SessionDescription{Type: callevent.SDPAnswer, SDP: sdp},
		Lifetime:    callevent.LifetimeOf(m.negotiateLifetime()),
	}
	n.SetStreams(m.ourStreams(sdp))
	return []Effect{Send{Type: callevent.TypeNegotiate, Content: n}}, nil
}

// LocalNegotiationOffer is the offer our ICE restart made.
func (m *Machine) LocalNegotiationOffer(sdp string) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	if !m.makingOffer {
		return nil, ignore("a negotiate offer nobody asked for")
	}
	n := &callevent.Negotiate{
		Common:      m.common(),
		Description: callevent.SessionDescription{Type: callevent.SDPOffer, SDP: sdp},
		Lifetime:    callevent.LifetimeOf(m.negotiateLifetime()),
	}
	n.SetStreams(m.ourStreams(sdp))
	return []Effect{Send{Type: callevent.TypeNegotiate, Content: n}, StartTimer{Timer: TimerNegotiate, After: m.negotiateLifetime()}}, nil
}

// restartICE tries to bring a failed connection back with an ICE restart,
// if the call may renegotiate and restarts are left.
func (m *Machine) restartICE(why string) ([]Effect, bool) {
	if !m.canNegotiate() || m.iceRestarts >= maxICERestarts || m.makingOffer {
		return nil, false
	}
	m.iceRestarts++
	m.makingOffer = true
	out := []Effect{RestartICE{}}
	return append(out, m.setState(m.State, why+"; restarting ICE")...), true
}

// OnHold says whether an SDP puts the other side on hold: every audio and
// video section it has is sendonly or inactive (matrix-js-sdk's test).
func OnHold(sdp string) bool {
	sections, held := 0, 0
	inMedia := false
	for line := range strings.SplitSeq(sdp, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "m="):
			inMedia = strings.HasPrefix(line, "m=audio") || strings.HasPrefix(line, "m=video")
			if inMedia {
				sections++
			}
		case inMedia && (line == "a=sendonly" || line == "a=inactive"):
			held++
		}
	}
	return sections > 0 && held == sections
}

// HoldPeer puts the peer on hold, or resumes it: for a bridged call, the
// other party holds. It is a negotiate offer once the call is connected
// and no other offer of ours is out (else as soon as that is so); version
// 0 calls cannot renegotiate and are left as they are.
func (m *Machine) HoldPeer(hold bool) ([]Effect, error) {
	if m.Ended() {
		return nil, ErrEnded
	}
	m.LocalHold = hold
	return m.offerHold(), nil
}

// offerHold makes the hold (or resume) offer the peer is owed, if it may
// be made now.
func (m *Machine) offerHold() []Effect {
	if m.LocalHold == m.sentHold || !m.canNegotiate() || m.State != StateConnected || m.makingOffer {
		return nil
	}
	m.makingOffer, m.holdOffer, m.sentHold = true, true, m.LocalHold
	why := "putting the peer on hold"
	if !m.LocalHold {
		why = "resuming the peer"
	}
	return append([]Effect{HoldOffer{Hold: m.LocalHold}}, m.setState(m.State, why)...)
}
