package matrixcall

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/callevent"
	"github.com/voipbot/voipbot/store"
)

const mallory id.UserID = "@mallory:hs"

// unusable rewrites a browser offer so that the bot cannot take it.
var unusable = map[string]func(offer string) string{
	"only G722": func(offer string) string {
		head, audio, _ := strings.Cut(offer, "m=audio")
		var keep []string
		for i, line := range strings.Split("m=audio"+audio, "\r\n") {
			switch {
			case i == 0:
				keep = append(keep, "m=audio 9 UDP/TLS/RTP/SAVPF 9")
			case strings.HasPrefix(line, "a=rtpmap:"), strings.HasPrefix(line, "a=fmtp:"), strings.HasPrefix(line, "a=rtcp-fb:"):
			default:
				keep = append(keep, line)
			}
		}
		return head + strings.Join(keep, "\r\n") + "a=rtpmap:9 G722/8000\r\n"
	},
	"garbage":  func(string) string { return "this is not SDP" },
	"v=0 only": func(string) string { return "v=0\r\n" },
	"no media": func(offer string) string { head, _, _ := strings.Cut(offer, "m="); return head },
	"400 sections": func(offer string) string {
		return offer + strings.Repeat("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", 399)
	},
	"data channels": func(offer string) string {
		head, _, _ := strings.Cut(offer, "m=")
		return head + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
	},
}

// An invite the bot cannot take is declined at once with a reject (which
// the caller honours), recorded as missed and reported in the room; no
// media session is made for it.
func TestManagerDeclinesUnusableOffers(t *testing.T) {
	offer := newPionPeer(t).offer(t)
	for name, rewrite := range unusable {
		t.Run(name, func(t *testing.T) {
			e := newManagerEnv(t, testConfig{})
			const callID = "1700000000000aaaaaaaaaaaaaaaa"
			start := time.Now()
			e.deliver(alice, callevent.TypeInvite, inviteContent(callID, "ALICE", rewrite(offer)), 0)
			e.batchEnd()
			rej, notice := e.refusal()
			t.Logf("declined %s after %s", name, time.Since(start))
			assert.Equal(t, callID, string(rej.CallID))
			assert.Equal(t, callevent.ReasonUnknownError, rej.Reason)
			assert.Equal(t, string(botDev), string(rej.PartyID))
			assert.Contains(t, notice, "Missed call from @alice:hs: the bot cannot take it: ")
			require.Eventually(t, func() bool {
				c, err := e.st.Call(e.ctx, testRoom, callID)
				return err == nil && c != nil && c.Missed && c.State == store.CallStateEnded && c.HangupReason == string(callevent.ReasonUnknownError)
			}, 5*time.Second, 5*time.Millisecond)
			assert.Zero(t, e.cm.Active())
			tries, _ := e.mx.triesOf(callevent.TypeAnswer)
			assert.Empty(t, tries, "no answer was made")
			assert.Equal(t, 1.0, e.counter("voipbot_call_refusals_total", map[string]string{"reason": "unusable_offer", "action": "declined"}))
		})
	}
}

// A caller the access policy does not allow is declined without a slot, a
// record or a notice; an allowed caller's call in the same room is then
// answered (the room takes one call).
func TestManagerDeclinesCallersNotAllowed(t *testing.T) {
	e := newManagerEnv(t, testConfig{MaxCallsPerRoom: 1})
	e.mx.disallowed = map[id.UserID]bool{mallory: true}
	const theirs, ours = "1700000000000mmmmmmmmmmmmmmmm", "1700000000001aaaaaaaaaaaaaaaa"
	// Mallory's candidates before her invite are not kept either.
	e.deliver(mallory, callevent.TypeCandidates, map[string]any{"call_id": theirs, "party_id": "M", "version": "1",
		"candidates": []any{map[string]any{"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}}}, 0)
	events, _ := e.cm.early.held()
	assert.Zero(t, events)
	start := time.Now()
	e.deliver(mallory, callevent.TypeInvite, inviteContent(theirs, "M", newPionPeer(t).offer(t)), 0)
	rej := e.nextOf(callevent.TypeReject)
	t.Logf("declined after %s", time.Since(start))
	assert.Equal(t, theirs, string(rej.content.CallInfo().CallID))
	assert.Empty(t, rej.content.(*callevent.Reject).Reason, "a plain reject")
	e.batchEnd()
	assert.Zero(t, e.cm.Active(), "it took no slot")

	e.deliver(alice, callevent.TypeInvite, inviteContent(ours, "ALICE", newPionPeer(t).offer(t)), 0)
	e.batchEnd()
	ans := e.nextOf(callevent.TypeAnswer)
	assert.Equal(t, ours, string(ans.content.CallInfo().CallID))
	c, err := e.st.Call(e.ctx, testRoom, theirs)
	require.NoError(t, err)
	assert.Nil(t, c, "no record of mallory's call")
	assert.Equal(t, 1.0, e.counter("voipbot_call_refusals_total", map[string]string{"reason": "not_allowed", "action": "declined"}))
	assert.Equal(t, 1.0, e.counter("voipbot_early_candidate_events_dropped_total", map[string]string{"reason": "not_allowed"}))
}

// An invite for anyone in a room with other members is not declined out
// loud: a reject would end the caller's call for the others too.
func TestManagerSilentWhenOthersMayAnswer(t *testing.T) {
	e := newManagerEnv(t, testConfig{})
	e.mx.disallowed = map[id.UserID]bool{mallory: true}
	e.mx.others = 2
	e.deliver(mallory, callevent.TypeInvite, inviteContent("1700000000000mmmmmmmmmmmmmmmm", "M", newPionPeer(t).offer(t)), 0)
	e.batchEnd()
	// Addressed to the bot, it is declined.
	c := inviteContent("1700000000001mmmmmmmmmmmmmmmm", "M", newPionPeer(t).offer(t))
	c["invitee"] = testBot
	e.deliver(mallory, callevent.TypeInvite, c, 0)
	rej := e.nextOf(callevent.TypeReject)
	assert.Equal(t, "1700000000001mmmmmmmmmmmmmmmm", string(rej.content.CallInfo().CallID), "only the invite for the bot")
	assert.Equal(t, 1.0, e.counter("voipbot_call_refusals_total", map[string]string{"reason": "not_allowed", "action": "silent"}))
}

// A flood of invites from one caller while the bot is busy: a few rejects
// (the refusal budget), the rest ring out unanswered; one missed-call
// notice, then one summary per window.
func TestManagerRefusalFlood(t *testing.T) {
	e := newManagerEnv(t, testConfig{MaxCallsPerRoom: 1})
	e.cm.notices.window = 300 * time.Millisecond
	e.deliver(alice, callevent.TypeInvite, inviteContent("1700000000000aaaaaaaaaaaaaaaa", "ALICE", newPionPeer(t).offer(t)), 0)
	e.batchEnd()
	e.nextOf(callevent.TypeAnswer)
	offer := newPionPeer(t).offer(t)
	const flood = 200
	for i := range flood {
		e.deliver(mallory, callevent.TypeInvite, inviteContent(fmt.Sprintf("1700000000001%016d", i), "M", offer), 0)
		e.batchEnd()
	}
	rejects, notices := 0, []string{}
	deadline := time.After(3 * e.cm.notices.window)
	for done := false; !done; {
		select {
		case s := <-e.mx.sent:
			switch {
			case s.typ == callevent.TypeReject:
				rejects++
			case s.notice != "":
				notices = append(notices, s.notice)
			}
		case <-deadline:
			done = true
		}
	}
	assert.Equal(t, refusalBurst, rejects, "the burst of the budget (the flood took far less than refusalEvery)")
	require.Len(t, notices, 2, "%q", notices)
	assert.Contains(t, notices[0], "Missed call from @mallory:hs: the bot is busy")
	assert.Contains(t, notices[1], fmt.Sprintf("%d more missed calls from @mallory:hs in the last 300ms", refusalBurst-1))
	assert.Equal(t, float64(flood-refusalBurst), e.counter("voipbot_call_refusals_total", map[string]string{"reason": "busy", "action": "silent"}))
	assert.Equal(t, 1, e.cm.Active(), "the first call goes on")
}

func TestRefusalBudget(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := newRefusalBudget(func() time.Time { return now })
	for range refusalBurst {
		require.True(t, b.allow(mallory))
	}
	require.False(t, b.allow(mallory))
	require.True(t, b.allow(alice), "a budget per sender")
	now = now.Add(refusalEvery)
	require.True(t, b.allow(mallory), "one more per interval")
	require.False(t, b.allow(mallory))
	// The map of senders is bounded: full budgets are forgotten.
	for i := range refusalMaxSenders {
		b.allow(id.UserID(fmt.Sprintf("@u%d:hs", i)))
	}
	now = now.Add(refusalBurst * refusalEvery)
	require.True(t, b.allow("@newcomer:hs"))
	b.mu.Lock()
	defer b.mu.Unlock()
	assert.Less(t, len(b.senders), refusalMaxSenders)
}

func TestMissedNoticesFold(t *testing.T) {
	var mu sync.Mutex
	var got []string
	sent := make(chan struct{}, 16)
	n := newMissedNotices(func(room id.RoomID, text string) {
		mu.Lock()
		got = append(got, string(room)+" "+text)
		mu.Unlock()
		sent <- struct{}{}
	}, newCallMetrics(prometheusRegistry()))
	n.window = 100 * time.Millisecond
	n.missed(testRoom, alice, "busy")
	n.missed(testRoom, alice, "busy again")
	n.missed(testRoom, alice, "busy at last")
	n.missed("!other:hs", alice, "elsewhere")
	for range 3 {
		<-sent
	}
	mu.Lock()
	assert.ElementsMatch(t, []string{
		"!room:hs Missed call from @alice:hs: busy.",
		"!other:hs Missed call from @alice:hs: elsewhere.",
		"!room:hs 2 more missed calls from @alice:hs in the last 100ms (the last: busy at last).",
	}, got)
	mu.Unlock()
	// A quiet window ends the fold: the next is a first notice again.
	require.Eventually(t, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.folds) == 0
	}, 5*time.Second, 10*time.Millisecond)
	n.missed(testRoom, alice, "later")
	<-sent
	mu.Lock()
	assert.Equal(t, "!room:hs Missed call from @alice:hs: later.", got[len(got)-1])
	mu.Unlock()
	n.stop()
}

// A negotiate the bot cannot use is answered with a warning in the log and
// nothing else: the call goes on, unheld, and a good negotiate after it is
// answered.
func TestManagerKeepsCallOnBadNegotiate(t *testing.T) {
	e := newManagerEnv(t, testConfig{})
	p := newPionPeer(t)
	const callID = "1700000000000aaaaaaaaaaaaaaaa"
	e.connectedCall(p, callID)
	negotiate := func(sdp string) {
		e.deliver(alice, callevent.TypeNegotiate, map[string]any{"call_id": callID, "party_id": "ALICE", "version": "1",
			"lifetime": 10000, "description": map[string]any{"type": "offer", "sdp": sdp}}, 0)
	}
	offer, err := p.pc.CreateOffer(nil)
	require.NoError(t, err)
	// Caught by the intake check; then one that passes it but not pion
	// (no ICE credentials), which would also put us on hold.
	negotiate("garbage")
	negotiate(unusable["only G722"](offer.SDP))
	noICE := strings.ReplaceAll(strings.ReplaceAll(offer.SDP, "a=ice-ufrag:", "a=x-ufrag:"), "a=sendrecv", "a=sendonly")
	negotiate(noICE)
	// A good one after them is answered: the queue went past the bad ones.
	require.NoError(t, p.pc.SetLocalDescription(offer))
	negotiate(offer.SDP)
	n := e.nextOf(callevent.TypeNegotiate).content.(*callevent.Negotiate)
	assert.Equal(t, callevent.SDPAnswer, n.Description.Type)
	require.NoError(t, p.pc.SetRemoteDescription(webrtcAnswer(n.Description.SDP)))
	assert.Equal(t, "connected", e.callState(callID), "the call goes on")
	lines := e.cm.Describe(testRoom)
	require.Len(t, lines, 1)
	assert.NotContains(t, lines[0], "on hold", "a hold that could not be applied does not count")
	select {
	case s := <-e.mx.sent:
		if s.typ != callevent.TypeCandidates {
			t.Fatalf("sent %s %q for a bad negotiate", s.typ, s.notice)
		}
	default:
	}
}

// A negotiate that passes the intake check but leaves the media session
// unable to negotiate again (pion took it in, then refused its candidates)
// ends the call: the peer's party cannot go on with it.
func TestManagerEndsCallStuckInNegotiation(t *testing.T) {
	e := newManagerEnv(t, testConfig{})
	p := newPionPeer(t)
	const callID = "1700000000000aaaaaaaaaaaaaaaa"
	e.connectedCall(p, callID)
	offer, err := p.pc.CreateOffer(nil)
	require.NoError(t, err)
	var lines []string
	for line := range strings.SplitSeq(offer.SDP, "\r\n") {
		if strings.HasPrefix(line, "a=candidate:") {
			line = "a=candidate:not a candidate at all"
		}
		lines = append(lines, line)
	}
	e.deliver(alice, callevent.TypeNegotiate, map[string]any{"call_id": callID, "party_id": "ALICE", "version": "1",
		"lifetime": 10000, "description": map[string]any{"type": "offer", "sdp": strings.Join(lines, "\r\n")}}, 0)
	h := e.nextOf(callevent.TypeHangup).content.(*callevent.Hangup)
	assert.Equal(t, callevent.ReasonUnknownError, h.Reason)
	require.Eventually(t, func() bool {
		c, err := e.st.Call(e.ctx, testRoom, callID)
		return err == nil && c != nil && c.State == store.CallStateEnded && strings.Contains(c.StateReason, "stuck halfway")
	}, 5*time.Second, 10*time.Millisecond)
}
