package matrixcall

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/callevent"
)

func prometheusRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

// candidatesContent is a candidates event for callID with n host
// candidates of the usual length (and the end marker if end).
func candidatesContent(callID string, n int, end bool) map[string]any {
	var cands []any
	for i := range n {
		cands = append(cands, map[string]any{"candidate": fmt.Sprintf("candidate:%d 1 udp 2122260223 127.0.0.1 %d typ host generation 0", i, 10000+i), "sdpMid": "0", "sdpMLineIndex": 0})
	}
	if end {
		cands = append(cands, map[string]any{"candidate": ""})
	}
	return map[string]any{"call_id": callID, "party_id": "P", "version": "1", "candidates": cands}
}

// Candidates for calls the bot does not know are kept within bounds: per
// sender and in all, in events and bytes, only what an invite can use, and
// for a minute.
func TestEarlyCandidatesAreBounded(t *testing.T) {
	e := newManagerEnv(t, testConfig{})
	now := time.Unix(1_700_000_000, 0)
	e.cm.now = func() time.Time { return now }

	// What an invite can use of one huge event: 32 candidates and the end
	// marker; the rest is counted as trimmed.
	e.deliver(alice, callevent.TypeCandidates, candidatesContent("big", 2000, true), 0)
	kept := e.cm.early.take(callKey{testRoom, "big"})
	require.Len(t, kept, 1)
	cands := kept[0].content.(*callevent.Candidates).Candidates
	assert.Len(t, cands, earlyMaxPerEvent+1)
	assert.True(t, cands[len(cands)-1].IsEnd())
	assert.Equal(t, 2000.0-earlyMaxPerEvent, e.counter("voipbot_early_candidates_trimmed_total", nil))

	// One sender fills its share, not more.
	for i := range 200 {
		e.deliver(alice, callevent.TypeCandidates, candidatesContent(fmt.Sprintf("a-%d", i), 40, false), 0)
	}
	events, bytes := e.cm.early.held()
	assert.LessOrEqual(t, bytes, earlyMaxSenderBytes)
	assert.LessOrEqual(t, events, earlyMaxSenderEvents)
	assert.Positive(t, e.counter("voipbot_early_candidate_events_dropped_total", map[string]string{"reason": "sender_full"}))

	// Many senders fill the buffer, not more.
	for u := range 40 {
		for i := range 30 {
			e.deliver(id.UserID(fmt.Sprintf("@u%d:hs", u)), callevent.TypeCandidates, candidatesContent(fmt.Sprintf("u%d-%d", u, i), 40, false), 0)
		}
	}
	events, bytes = e.cm.early.held()
	assert.LessOrEqual(t, bytes, earlyMaxBytes)
	assert.LessOrEqual(t, events, earlyMaxEvents)
	assert.Positive(t, e.counter("voipbot_early_candidate_events_dropped_total", map[string]string{"reason": "buffer_full"}))
	assert.Equal(t, float64(bytes), e.counter("voipbot_early_candidates_bytes", nil))

	// A sweep after a minute drops them all, and the accounts are back to
	// nothing.
	now = now.Add(earlyMaxAge + time.Second)
	e.cm.early.sweep(now)
	events, bytes = e.cm.early.held()
	assert.Zero(t, events)
	assert.Zero(t, bytes)
	e.cm.early.mu.Lock()
	assert.Empty(t, e.cm.early.senders)
	assert.Empty(t, e.cm.early.calls)
	e.cm.early.mu.Unlock()
	assert.Positive(t, e.counter("voipbot_early_candidate_events_dropped_total", map[string]string{"reason": "expired"}))
}

// Candidates that come in the invite's own sync batch, after it, reach the
// call when it rings; those of a declined call are not kept.
func TestEarlyCandidatesReachTheirCall(t *testing.T) {
	e := newManagerEnv(t, testConfig{MaxCallsPerRoom: 1})
	p := newPionPeer(t)
	offer := p.offer(t)
	// The offer without its candidates: they come trickled.
	var lines []string
	var trickled []any
	for line := range strings.SplitSeq(offer, "\r\n") {
		if c, ok := strings.CutPrefix(line, "a=candidate:"); ok {
			trickled = append(trickled, map[string]any{"candidate": "candidate:" + c, "sdpMid": "0"})
			continue
		}
		lines = append(lines, line)
	}
	require.NotEmpty(t, trickled)
	const callID = "1700000000000aaaaaaaaaaaaaaaa"
	e.deliver(alice, callevent.TypeInvite, inviteContent(callID, "ALICE", strings.Join(lines, "\r\n")), 0)
	e.deliver(alice, callevent.TypeCandidates, map[string]any{"call_id": callID, "party_id": "ALICE", "version": "1", "candidates": trickled}, 0)
	events, _ := e.cm.early.held()
	require.Equal(t, 1, events, "kept until the invite rings")
	e.batchEnd()
	ans := e.nextOf(callevent.TypeAnswer).content.(*callevent.Answer)
	events, _ = e.cm.early.held()
	assert.Zero(t, events, "handed to the call")
	require.NoError(t, p.pc.SetRemoteDescription(webrtcAnswer(ans.Answer.SDP)))
	require.Eventually(t, func() bool {
		lines := e.cm.Describe(testRoom)
		return len(lines) == 1 && strings.Contains(lines[0], "connected")
	}, 10*time.Second, 10*time.Millisecond, "media connects through the trickled candidates")

	// The room is busy: a second call is declined, and its candidates are
	// not kept.
	const busyID = "1700000000001bbbbbbbbbbbbbbbb"
	e.deliver("@bob:hs", callevent.TypeInvite, inviteContent(busyID, "BOB", offer), 0)
	e.batchEnd()
	e.refusal()
	e.deliver("@bob:hs", callevent.TypeCandidates, candidatesContent(busyID, 3, true), 0)
	events, _ = e.cm.early.held()
	assert.Zero(t, events)
	assert.Equal(t, 1.0, e.counter("voipbot_early_candidate_events_dropped_total", map[string]string{"reason": "refused_call"}))
}
