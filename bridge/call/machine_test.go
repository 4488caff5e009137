package call

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/callevent"
)

const (
	bot   id.UserID = "@bot:hs"
	alice id.UserID = "@alice:hs"
	eve   id.UserID = "@eve:hs"
)

var (
	us      = Party{User: bot, PartyID: "BOTPARTY"}
	aliceA  = Party{User: alice, PartyID: "ALICE_A"}
	aliceB  = Party{User: alice, PartyID: "ALICE_B"}
	botElse = Party{User: bot, PartyID: "OTHERDEV"}
	evePty  = Party{User: eve, PartyID: "EVE"}
	t0      = time.Unix(1_700_000_000, 0)
)

const offerSDP = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:stream1 track1\r\n"
const videoOfferSDP = offerSDP + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"

func opts() Options {
	return Options{Room: "!room:hs", CallID: "1700000000000abcdefghijklmnop", Us: us, Now: func() time.Time { return t0 }}
}

func common(p Party, v callevent.Version) callevent.Common {
	return callevent.Common{CallID: "1700000000000abcdefghijklmnop", PartyID: p.PartyID, Version: v}
}

func invite(p Party, v callevent.Version) *callevent.Invite {
	return &callevent.Invite{Common: common(p, v), Offer: callevent.SessionDescription{Type: callevent.SDPOffer, SDP: offerSDP}, Lifetime: 60000, Invitee: bot}
}

func answer(p Party) *callevent.Answer {
	return &callevent.Answer{Common: common(p, callevent.Version1), Answer: callevent.SessionDescription{Type: callevent.SDPAnswer, SDP: "v=0 answer " + string(p.PartyID)}}
}

func candidates(p Party, cands ...string) *callevent.Candidates {
	c := &callevent.Candidates{Common: common(p, callevent.Version1)}
	mid := "0"
	for _, s := range cands {
		c.Candidates = append(c.Candidates, callevent.Candidate{Candidate: s, SDPMid: &mid})
	}
	return c
}

// describe renders effects compactly, so that each table row reads as the
// protocol does.
func describe(effects []Effect) []string {
	var out []string
	for _, e := range effects {
		switch e := e.(type) {
		case Send:
			s := "send " + string(e.Type)
			switch c := e.Content.(type) {
			case *callevent.Hangup:
				s += "(" + string(c.Reason) + ")"
			case *callevent.Reject:
				if c.Reason != "" {
					s += "(" + string(c.Reason) + ")"
				}
			case *callevent.SelectAnswer:
				s += "(" + string(c.SelectedPartyID) + ")"
			case *callevent.Candidates:
				var cs []string
				for _, cand := range c.Candidates {
					if cand.IsEnd() {
						cs = append(cs, "end")
					} else {
						cs = append(cs, cand.Candidate)
					}
				}
				s += "(" + strings.Join(cs, ",") + ")"
			}
			out = append(out, s)
		case AcceptOffer:
			out = append(out, "accept offer")
		case MakeOffer:
			out = append(out, "make offer")
		case ApplyAnswer:
			out = append(out, "apply "+e.SDP)
		case AddCandidates:
			var cs []string
			for _, c := range e.Candidates {
				cs = append(cs, c.Candidate)
			}
			out = append(out, "add candidates "+strings.Join(cs, ","))
		case StartTimer:
			out = append(out, fmt.Sprintf("start %s %s", e.Timer, e.After))
		case StopTimer:
			out = append(out, "stop "+string(e.Timer))
		case CloseMedia:
			out = append(out, "close media")
		case RestartICE:
			out = append(out, "restart ICE")
		case AcceptNegotiation:
			out = append(out, fmt.Sprintf("accept negotiation (rollback %v)", e.Rollback))
			if e.Hold {
				out[len(out)-1] += " (hold)"
			}
		case SetSending:
			out = append(out, fmt.Sprintf("sending %v", e.On))
		case Changed:
			out = append(out, "changed from "+string(e.From))
		default:
			out = append(out, fmt.Sprintf("%T", e))
		}
	}
	return out
}

// step is one input to a machine.
type step func(m *Machine) ([]Effect, error)

func remote(from Party, c callevent.Content) step {
	return func(m *Machine) ([]Effect, error) {
		c.CallInfo().PartyID = from.PartyID
		return m.Remote(from.User, c)
	}
}

func doAnswer(m *Machine) ([]Effect, error) { return m.Answer() }
func local(sdp string) step {
	return func(m *Machine) ([]Effect, error) { return m.LocalDescription(sdp) }
}
func fire(t Timer) step                       { return func(m *Machine) ([]Effect, error) { return m.TimerFired(t) } }
func connected(m *Machine) ([]Effect, error)  { return m.MediaConnected() }
func failed(m *Machine) ([]Effect, error)     { return m.MediaFailed("ICE failed") }
func localOffer(m *Machine) ([]Effect, error) { return m.LocalNegotiationOffer("v=0 restart") }
func applied(hold bool) step {
	return func(m *Machine) ([]Effect, error) { return m.NegotiationApplied(hold) }
}

func negotiateOffer(direction string) *callevent.Negotiate {
	return &callevent.Negotiate{Common: common(aliceA, callevent.Version1), Lifetime: 10000,
		Description: callevent.SessionDescription{Type: callevent.SDPOffer, SDP: "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + direction + "\r\n"}}
}

func negotiateAnswer() *callevent.Negotiate {
	return &callevent.Negotiate{Common: common(aliceA, callevent.Version1), Description: callevent.SessionDescription{Type: callevent.SDPAnswer, SDP: "v=0 negotiated"}}
}

func hangup(r callevent.HangupReason) step {
	return func(m *Machine) ([]Effect, error) { return m.Hangup(r, "test") }
}

// ringing is an inbound call from alice's first device.
func ringing(t *testing.T) *Machine {
	m, eff := NewInbound(opts(), alice, invite(aliceA, callevent.Version1), 2*time.Second)
	require.Equal(t, []string{"changed from ", "start ringing 58s"}, describe(eff))
	return m
}

func answered(t *testing.T) *Machine {
	m := ringing(t)
	run(t, m, doAnswer, local("v=0 ours"))
	return m
}

func calling(t *testing.T) *Machine {
	m, eff := NewOutbound(opts(), alice)
	require.Equal(t, []string{"changed from ", "make offer"}, describe(eff))
	run(t, m, local(offerSDP))
	return m
}

func run(t *testing.T, m *Machine, steps ...step) {
	for i, s := range steps {
		_, err := s(m)
		require.NoError(t, err, "setup step %d", i)
	}
}

func TestMachine(t *testing.T) {
	tests := []struct {
		name string
		// start makes the machine; steps lead up to the step under test.
		start func(t *testing.T) *Machine
		steps []step
		step  step
		want  []string
		// ignored: the step must be Ignored (want is then empty); err: it
		// must fail with this in its message.
		ignored bool
		err     string
		state   State
		check   func(t *testing.T, m *Machine)
	}{
		// Inbound.
		{
			name: "answer: accept the offer, then send the answer and wait for ICE", start: ringing,
			step: doAnswer, want: []string{"changed from ringing", "stop ringing", "accept offer"}, state: StateCreateAnswer,
		}, {
			name: "answer sent with our party and metadata", start: ringing, steps: []step{doAnswer},
			step:  local("v=0\r\na=msid:botstream bottrack\r\n"),
			want:  []string{"send m.call.answer", "changed from create_answer", "start connect 30s"},
			state: StateConnecting,
		}, {
			name: "candidates before we answer are kept and handed over on answer", start: ringing,
			steps: []step{remote(aliceA, candidates(aliceA, "c1")), remote(aliceA, candidates(aliceA, "c2"))},
			step:  doAnswer,
			want:  []string{"changed from ringing", "stop ringing", "accept offer", "add candidates c1,c2"},
			state: StateCreateAnswer,
		}, {
			name: "candidates after the answer go straight to media", start: answered,
			step: remote(aliceA, candidates(aliceA, "c3")), want: []string{"add candidates c3"}, state: StateConnecting,
		}, {
			name: "candidates from another device of the caller are ignored", start: answered,
			step: remote(aliceB, candidates(aliceB, "x")), ignored: true, state: StateConnecting,
		}, {
			name: "our own echo is ignored by party id", start: answered,
			step: remote(us, &callevent.Hangup{Reason: "user_hangup"}), ignored: true, state: StateConnecting,
		}, {
			name: "media connected", start: answered,
			step: connected, want: []string{"stop connect", "changed from connecting"}, state: StateConnected,
		}, {
			name: "select_answer naming us changes nothing", start: answered,
			step: remote(aliceA, &callevent.SelectAnswer{SelectedPartyID: us.PartyID}), state: StateConnecting,
		}, {
			name: "select_answer naming another party ends our leg silently", start: answered,
			step:  remote(aliceA, &callevent.SelectAnswer{SelectedPartyID: botElse.PartyID}),
			want:  []string{"stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from connecting"},
			state: StateEnded,
		}, {
			name: "select_answer from someone else than the caller is ignored", start: answered,
			step: remote(aliceB, &callevent.SelectAnswer{SelectedPartyID: botElse.PartyID}), ignored: true, state: StateConnecting,
		}, {
			name: "another device of the bot answered while ringing: answered elsewhere", start: ringing,
			step:  remote(botElse, answer(botElse)),
			want:  []string{"stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from ringing"},
			state: StateEnded,
		}, {
			name: "caller hangs up while ringing: missed", start: ringing,
			step:  remote(aliceA, &callevent.Hangup{Reason: "user_hangup"}),
			want:  []string{"stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from ringing"},
			state: StateEnded,
			check: func(t *testing.T, m *Machine) {
				assert.True(t, m.Missed)
				assert.Equal(t, ByRemote, m.HangupBy)
			},
		}, {
			name: "unknown hangup reasons end the call", start: answered,
			step:  remote(aliceA, &callevent.Hangup{Reason: "userHangup"}),
			want:  []string{"stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from connecting"},
			state: StateEnded,
			check: func(t *testing.T, m *Machine) {
				assert.Equal(t, callevent.HangupReason("userHangup"), m.HangupReason)
				assert.False(t, m.Missed)
			},
		}, {
			name: "hangup from another party is ignored", start: answered,
			step: remote(aliceB, &callevent.Hangup{}), ignored: true, state: StateConnecting,
		}, {
			name: "the invite expires while ringing: missed, nothing sent", start: ringing,
			step:  fire(TimerRinging),
			want:  []string{"stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from ringing"},
			state: StateEnded, check: func(t *testing.T, m *Machine) { assert.True(t, m.Missed) },
		}, {
			name: "we decline a ringing v1 call with reject", start: ringing,
			step:  hangup(""),
			want:  []string{"send m.call.reject", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from ringing"},
			state: StateEnded,
		}, {
			name: "we decline a ringing v0 call with hangup",
			start: func(t *testing.T) *Machine {
				m, _ := NewInbound(opts(), alice, invite(Party{User: alice}, callevent.Version0), 0)
				return m
			},
			step:  hangup(""),
			want:  []string{"send m.call.hangup(user_hangup)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from ringing"},
			state: StateEnded,
		}, {
			name: "busy v0 call: hangup user_busy",
			start: func(t *testing.T) *Machine {
				m, _ := NewInbound(opts(), alice, invite(Party{User: alice}, callevent.Version0), 0)
				return m
			},
			step:  func(m *Machine) ([]Effect, error) { return m.Busy("at capacity") },
			want:  []string{"send m.call.hangup(user_busy)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from ringing"},
			state: StateEnded,
		}, {
			name: "v0 caller without party id: its candidates and hangup are honoured",
			start: func(t *testing.T) *Machine {
				m, _ := NewInbound(opts(), alice, invite(Party{User: alice}, callevent.Version0), 0)
				run(t, m, doAnswer, local("v=0"), remote(Party{User: alice}, candidates(Party{User: alice}, "v0c")))
				return m
			},
			step:  remote(Party{User: alice}, &callevent.Hangup{}),
			want:  []string{"stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from connecting"},
			state: StateEnded,
			check: func(t *testing.T, m *Machine) { assert.Equal(t, callevent.ReasonUserHangup, m.HangupReason) },
		}, {
			name: "busy: reject with reason user_busy, missed", start: ringing,
			step:  func(m *Machine) ([]Effect, error) { return m.Busy("at capacity") },
			want:  []string{"send m.call.reject(user_busy)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from ringing"},
			state: StateEnded, check: func(t *testing.T, m *Machine) { assert.True(t, m.Missed) },
		}, {
			name: "ICE fails: restart it with a negotiate offer", start: answered,
			step: failed, want: []string{"restart ICE", "changed from connecting"}, state: StateConnecting,
		}, {
			name: "the ICE restart offer goes out as negotiate", start: answered, steps: []step{failed},
			step: localOffer, want: []string{"send m.call.negotiate", "start negotiate 30s"}, state: StateConnecting,
		}, {
			name: "restarts exhausted before any media: ice_failed", start: answered,
			steps: []step{failed, localOffer, remote(aliceA, negotiateAnswer()), failed, localOffer, remote(aliceA, negotiateAnswer())},
			step:  failed,
			want:  []string{"send m.call.hangup(ice_failed)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from connecting"},
			state: StateEnded,
		}, {
			name: "restarts exhausted after media flowed: ice_timeout", start: answered,
			steps: []step{connected, failed, localOffer, remote(aliceA, negotiateAnswer()), failed, localOffer, remote(aliceA, negotiateAnswer())},
			step:  failed,
			want:  []string{"send m.call.hangup(ice_timeout)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from connected"},
			state: StateEnded,
		}, {
			name: "a restart that is answered and reconnects", start: answered,
			steps: []step{connected, failed, localOffer},
			step:  remote(aliceA, negotiateAnswer()),
			want:  []string{"apply v=0 negotiated", "stop negotiate"},
			state: StateConnected,
			check: func(t *testing.T, m *Machine) {
				eff, err := m.MediaConnected()
				require.NoError(t, err)
				assert.Equal(t, []string{"stop negotiate", "changed from connected"}, describe(eff))
			},
		}, {
			name: "no answer to our ICE restart: hang up", start: answered, steps: []step{connected, failed, localOffer},
			step:  fire(TimerNegotiate),
			want:  []string{"send m.call.hangup(ice_timeout)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from connected"},
			state: StateEnded,
		}, {
			name: "a version 0 call cannot renegotiate: ICE failure hangs up",
			start: func(t *testing.T) *Machine {
				m, _ := NewInbound(opts(), alice, invite(Party{User: alice}, callevent.Version0), 0)
				run(t, m, doAnswer, local("v=0"))
				return m
			},
			step:  failed,
			want:  []string{"send m.call.hangup(ice_failed)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from connecting"},
			state: StateEnded,
		}, {
			name: "the peer renegotiates: accept and answer", start: answered, steps: []step{connected},
			step: remote(aliceA, negotiateOffer("a=sendrecv")), want: []string{"accept negotiation (rollback false)"}, state: StateConnected,
		}, {
			name: "the peer holds (sendonly): once applied, we stop sending", start: answered, steps: []step{connected, remote(aliceA, negotiateOffer("a=sendonly"))},
			step:  applied(true),
			want:  []string{"sending false", "changed from connected"},
			state: StateConnected, check: func(t *testing.T, m *Machine) { assert.True(t, m.RemoteHold) },
		}, {
			name: "the peer resumes: we send again", start: answered, steps: []step{connected, remote(aliceA, negotiateOffer("a=inactive")), applied(true), remote(aliceA, negotiateOffer("a=sendrecv"))},
			step:  applied(false),
			want:  []string{"sending true", "changed from connected"},
			state: StateConnected, check: func(t *testing.T, m *Machine) { assert.False(t, m.RemoteHold) },
		}, {
			name: "our answer to their negotiate", start: answered, steps: []step{connected, remote(aliceA, negotiateOffer("a=sendrecv"))},
			step:  func(m *Machine) ([]Effect, error) { return m.NegotiationAnswer("v=0 ours") },
			want:  []string{"send m.call.negotiate"},
			state: StateConnected,
		}, {
			name: "colliding offers: the callee is polite and rolls back", start: answered, steps: []step{connected, failed, localOffer},
			step:  remote(aliceA, negotiateOffer("a=sendrecv")),
			want:  []string{"accept negotiation (rollback true)"},
			state: StateConnected,
		}, {
			name: "colliding offers: the caller is impolite and ignores theirs", start: calling,
			steps: []step{remote(aliceA, answer(aliceA)), connected, failed, localOffer},
			step:  remote(aliceA, negotiateOffer("a=sendrecv")), ignored: true, state: StateConnected,
		}, {
			name: "negotiate from another party is ignored", start: answered, steps: []step{connected},
			step: remote(aliceB, negotiateOffer("a=sendrecv")), ignored: true, state: StateConnected,
		}, {
			name: "an answer without our offer is ignored", start: answered, steps: []step{connected},
			step: remote(aliceA, negotiateAnswer()), ignored: true, state: StateConnected,
		}, {
			name: "a negotiate older than its lifetime is ignored", start: answered, steps: []step{connected},
			step: func(m *Machine) ([]Effect, error) {
				c := negotiateOffer("a=sendrecv")
				c.PartyID = aliceA.PartyID
				return m.RemoteAged(alice, c, 11*time.Second)
			},
			ignored: true, state: StateConnected,
		}, {
			name: "no media connection in time: ice_failed", start: answered,
			step:  fire(TimerConnect),
			want:  []string{"send m.call.hangup(ice_failed)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from connecting"},
			state: StateEnded,
		}, {
			name: "the answer cannot be sent: the caller is declined (it never saw an answer)", start: answered,
			step: func(m *Machine) ([]Effect, error) {
				return m.SignallingFailed(callevent.TypeAnswer, errors.New("M_TOO_LARGE"))
			},
			want:  []string{"send m.call.reject(unknown_error)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from connecting"},
			state: StateEnded,
			check: func(t *testing.T, m *Machine) {
				assert.Equal(t, callevent.ReasonUnknownError, m.HangupReason)
				assert.Contains(t, m.Reason, "M_TOO_LARGE")
			},
		}, {
			name: "our invite cannot be sent: the call ends, nothing more is sent", start: calling,
			step: func(m *Machine) ([]Effect, error) {
				return m.SignallingFailed(callevent.TypeInvite, errors.New("M_FORBIDDEN"))
			},
			want:  []string{"stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from invite_sent"},
			state: StateEnded,
		}, {
			name: "the offer cannot be answered: declined, not hung up (js-sdk ignores that)", start: ringing, steps: []step{doAnswer},
			step:  func(m *Machine) ([]Effect, error) { return m.MediaError(errors.New("no format")) },
			want:  []string{"send m.call.reject(unknown_error)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from create_answer"},
			state: StateEnded,
			check: func(t *testing.T, m *Machine) { assert.Contains(t, m.Reason, "could not be answered: no format") },
		}, {
			name: "a v0 offer that cannot be answered: hangup", start: func(t *testing.T) *Machine {
				m, _ := NewInbound(opts(), alice, invite(Party{User: alice}, callevent.Version0), 0)
				run(t, m, doAnswer)
				return m
			},
			step:  func(m *Machine) ([]Effect, error) { return m.MediaError(errors.New("no format")) },
			want:  []string{"send m.call.hangup(unknown_error)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from create_answer"},
			state: StateEnded,
		}, {
			name: "hung up while making the answer: a reject", start: ringing, steps: []step{doAnswer},
			step:  hangup(""),
			want:  []string{"send m.call.reject", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from create_answer"},
			state: StateEnded,
		}, {
			name: "declined for a reason", start: ringing,
			step:  func(m *Machine) ([]Effect, error) { return m.Decline(callevent.ReasonUnknownError, "unusable offer") },
			want:  []string{"send m.call.reject(unknown_error)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from ringing"},
			state: StateEnded, check: func(t *testing.T, m *Machine) { assert.True(t, m.Missed) },
		}, {
			name: "a negotiate offer that cannot be applied: the call goes on", start: answered,
			steps: []step{connected, remote(aliceA, negotiateOffer("a=sendonly"))},
			step:  func(m *Machine) ([]Effect, error) { return m.NegotiationFailed(errors.New("bad SDP"), false) },
			err:   "cannot be used; the call goes on",
			state: StateConnected, check: func(t *testing.T, m *Machine) {
				assert.False(t, m.RemoteHold, "a hold that was not applied does not count")
			},
		}, {
			name: "the peer's offer we rolled ours back for cannot be applied: restart again", start: answered,
			steps: []step{connected, failed, localOffer, remote(aliceA, negotiateOffer("a=sendrecv"))},
			step:  func(m *Machine) ([]Effect, error) { return m.NegotiationFailed(errors.New("bad SDP"), true) },
			want:  []string{"restart ICE", "changed from connected"},
			state: StateConnected,
		}, {
			name: "local candidates are sent with the end marker", start: answered,
			step: func(m *Machine) ([]Effect, error) {
				return m.LocalCandidates([]callevent.Candidate{{Candidate: "l1"}}, true)
			},
			want: []string{"send m.call.candidates(l1,end)"}, state: StateConnecting,
		}, {
			name: "the peer leaving ends the call without a word", start: answered,
			step:  func(m *Machine) ([]Effect, error) { return m.PeerLeft(), nil },
			want:  []string{"stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from connecting"},
			state: StateEnded,
		},

		{
			name: "the peer mutes its microphone (metadata changed)", start: answered,
			step: remote(aliceA, &callevent.SDPStreamMetadataChanged{StreamMetadata: callevent.StreamMetadata{Metadata: callevent.Streams{
				"s": {Purpose: callevent.PurposeUserMedia, AudioMuted: true}}}}),
			want: []string{"changed from connecting"}, state: StateConnecting,
			check: func(t *testing.T, m *Machine) {
				audio, video := m.PeerMuted()
				assert.True(t, audio)
				assert.False(t, video)
			},
		}, {
			name: "metadata from another party is ignored", start: answered,
			step: remote(aliceB, &callevent.SDPStreamMetadataChanged{StreamMetadata: callevent.StreamMetadata{Metadata: callevent.Streams{
				"s": {Purpose: callevent.PurposeUserMedia, AudioMuted: true}}}}),
			ignored: true, state: StateConnecting,
		},

		// Outbound.
		{
			name: "invite sent with lifetime and invitee", start: calling, steps: nil,
			step:  func(m *Machine) ([]Effect, error) { return nil, nil },
			state: StateInviteSent,
			check: func(t *testing.T, m *Machine) {
				m2, _ := NewOutbound(opts(), alice)
				eff, err := m2.LocalDescription(offerSDP)
				require.NoError(t, err)
				assert.Equal(t, []string{"send m.call.invite", "changed from create_offer", "start invite 1m0s"}, describe(eff))
				inv := eff[0].(Send).Content.(*callevent.Invite)
				assert.Equal(t, alice, inv.Invitee)
				assert.Equal(t, callevent.Lifetime(60000), inv.Lifetime)
				assert.Equal(t, callevent.Streams{"stream1": {Purpose: callevent.PurposeUserMedia}}, inv.Streams())
				assert.Equal(t, us.PartyID, inv.PartyID)
			},
		}, {
			name: "first answer wins: select_answer, apply, candidates of that party", start: calling,
			steps: []step{remote(aliceA, candidates(aliceA, "a1")), remote(aliceB, candidates(aliceB, "b1"))},
			step:  remote(aliceB, answer(aliceB)),
			want:  []string{"stop invite", "send m.call.select_answer(ALICE_B)", "apply v=0 answer ALICE_B", "add candidates b1", "changed from invite_sent", "start connect 30s"},
			state: StateConnecting,
			check: func(t *testing.T, m *Machine) { assert.Equal(t, aliceB, m.Peer) },
		}, {
			name: "a second answer is ignored", start: calling, steps: []step{remote(aliceA, answer(aliceA))},
			step: remote(aliceB, answer(aliceB)), ignored: true, state: StateConnecting,
		}, {
			name: "candidates of the party not taken are ignored", start: calling, steps: []step{remote(aliceA, answer(aliceA))},
			step: remote(aliceB, candidates(aliceB, "b2")), ignored: true, state: StateConnecting,
		}, {
			name: "an answer from someone not invited is ignored", start: calling,
			step: remote(evePty, answer(evePty)), ignored: true, state: StateInviteSent,
		}, {
			name: "reject: select it and end", start: calling,
			step:  remote(aliceA, &callevent.Reject{}),
			want:  []string{"send m.call.select_answer(ALICE_A)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from invite_sent"},
			state: StateEnded,
		}, {
			name: "a reject after an answer is ignored", start: calling, steps: []step{remote(aliceA, answer(aliceA))},
			step: remote(aliceB, &callevent.Reject{}), ignored: true, state: StateConnecting,
		}, {
			name: "a v0 decline (hangup before any answer) ends the call", start: calling,
			step:  remote(aliceA, &callevent.Hangup{Reason: "user_busy"}),
			want:  []string{"stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from invite_sent"},
			state: StateEnded,
			check: func(t *testing.T, m *Machine) { assert.Equal(t, callevent.ReasonUserBusy, m.HangupReason) },
		}, {
			name: "nobody answers: invite_timeout", start: calling,
			step:  fire(TimerInvite),
			want:  []string{"send m.call.hangup(invite_timeout)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from invite_sent"},
			state: StateEnded,
		}, {
			name: "a stale invite timer after the answer is ignored", start: calling, steps: []step{remote(aliceA, answer(aliceA))},
			step: fire(TimerInvite), ignored: true, state: StateConnecting,
		}, {
			name: "glare lost before our invite went out: dropped silently",
			start: func(t *testing.T) *Machine {
				m, _ := NewOutbound(opts(), alice)
				return m
			},
			step:  func(m *Machine) ([]Effect, error) { return m.Replaced("123") },
			want:  []string{"stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from create_offer"},
			state: StateEnded,
		}, {
			name: "glare lost after our invite went out: hangup replaced", start: calling,
			step:  func(m *Machine) ([]Effect, error) { return m.Replaced("123") },
			want:  []string{"send m.call.hangup(replaced)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from invite_sent"},
			state: StateEnded,
		}, {
			name: "glare won by us: their ringing call is rejected as replaced", start: ringing,
			step:  func(m *Machine) ([]Effect, error) { return m.Replaced("ours") },
			want:  []string{"send m.call.reject(replaced)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from ringing"},
			state: StateEnded,
		}, {
			name: "we hang up a connected call", start: calling, steps: []step{remote(aliceA, answer(aliceA)), connected},
			step:  hangup(""),
			want:  []string{"send m.call.hangup(user_hangup)", "stop invite", "stop ringing", "stop connect", "stop negotiate", "close media", "changed from connected"},
			state: StateEnded,
			check: func(t *testing.T, m *Machine) {
				assert.Equal(t, ByLocal, m.HangupBy)
				assert.Equal(t, t0, m.ConnectedAt)
				assert.Equal(t, t0, m.EndedAt)
			},
		}, {
			name: "inputs after the end are refused", start: calling, steps: []step{hangup("")},
			step: remote(aliceA, answer(aliceA)), state: StateEnded,
			check: func(t *testing.T, m *Machine) {
				_, err := m.Answer()
				assert.ErrorIs(t, err, ErrEnded)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.start(t)
			run(t, m, tt.steps...)
			eff, err := tt.step(m)
			var ign *Ignored
			switch {
			case tt.ignored:
				require.ErrorAs(t, err, &ign)
			case tt.err != "":
				require.ErrorContains(t, err, tt.err)
			case errors.Is(err, ErrEnded) && tt.state == StateEnded:
			default:
				require.NoError(t, err)
			}
			assert.Equal(t, tt.want, describe(eff))
			assert.Equal(t, tt.state, m.State)
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

func TestAnswerContent(t *testing.T) {
	m := ringing(t)
	run(t, m, doAnswer)
	eff, err := m.LocalDescription("v=0\r\na=msid:botstream bottrack\r\n")
	require.NoError(t, err)
	ans := eff[0].(Send).Content.(*callevent.Answer)
	assert.Equal(t, us.PartyID, ans.PartyID)
	assert.Equal(t, callevent.Version1, ans.Version)
	assert.Equal(t, m.CallID, ans.CallID)
	assert.Equal(t, callevent.Streams{"botstream": {Purpose: callevent.PurposeUserMedia}}, ans.Streams())

	// A v0 call is answered the v0 way: no party id, no metadata.
	m0, _ := NewInbound(opts(), alice, invite(Party{User: alice}, callevent.Version0), 0)
	run(t, m0, doAnswer)
	eff, err = m0.LocalDescription("v=0\r\na=msid:botstream bottrack\r\n")
	require.NoError(t, err)
	ans = eff[0].(Send).Content.(*callevent.Answer)
	assert.Empty(t, ans.PartyID)
	assert.Equal(t, callevent.Version0, ans.Version)
	assert.Nil(t, ans.Streams())
}

func TestInboundVideoAndAge(t *testing.T) {
	inv := invite(aliceA, callevent.Version1)
	inv.Offer.SDP = videoOfferSDP
	m, eff := NewInbound(opts(), alice, inv, 70*time.Second)
	assert.True(t, m.Video)
	assert.Equal(t, []string{"changed from ", "start ringing 0s"}, describe(eff), "an invite older than its lifetime expires at once")
}
