package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/bench/benchserver"
	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/matrix/callevent"
)

// BenchmarkBridgedCallMemory: the bot's resident memory and goroutines per
// bridged Matrix ⇄ Matrix call (alice's call to the bot in a room routed to
// bob, bob answering the bot's call in his direct room with it — two legs,
// no media flowing), and what is left once all have been hung up (the
// goroutine count must return to where it started). Baseline: the same bot
// with no calls.
func BenchmarkBridgedCallMemory(b *testing.B) {
	const calls = 10
	for range b.N {
		setup := newBotSetup(b, hs, `calls:
  max_calls: 0
  max_calls_per_room: 0
`+callMedia)
		bot := setup.start(b, "VOIPBOT_LOGGING_LEVEL=info")
		ctx := ctxFor(b)
		alice := newUser(b, hs, "alice", false)
		bob := newUser(b, hs, "bobcallee", false)
		dm, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", Invite: []id.UserID{setup.UserID}, IsDirect: true})
		require.NoError(b, err)
		_, err = bob.WaitEvent(ctx, testbed.Membership(dm.RoomID, setup.UserID, event.MembershipJoin))
		require.NoError(b, err)
		room := inviteBot(b, alice, setup.UserID, false)
		require.Contains(b, body(command(b, alice, room, setup.UserID, "!voip route matrix:"+bob.UserID.String())), "now go to")

		rss0, g0 := benchserver.RSS(bot.PID()), goroutines(b, bot)
		callers := make([]*goPeer, calls)
		for i := range callers {
			callers[i] = newGoPeer(b, alice, room)
			callers[i].callID = fmt.Sprintf("%d%016d", time.Now().UnixMilli(), i)
			callers[i].invite(ctx, setup.UserID)
		}
		// Bob answers each of the bot's invites in his direct room and takes
		// its trickled candidates, until every call of his is connected.
		connected := make(chan string, 2*calls)
		bobCtx, stopBob := context.WithCancel(ctx)
		bobDone := make(chan error, 1)
		go func() {
			callees := map[string]*goPeer{}
			_, err := bob.WaitEvent(bobCtx, func(evt *event.Event) bool {
				if evt.Sender != setup.UserID || evt.RoomID != dm.RoomID {
					return false
				}
				t := callevent.Type(evt.Type.Type)
				c, err := callevent.Parse(t, evt.Content.VeryRaw)
				if err != nil {
					return false
				}
				switch c := c.(type) {
				case *callevent.Invite:
					callee := newGoPeer(b, bob, dm.RoomID)
					callee.callID = string(c.CallID)
					callee.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
						if s == webrtc.PeerConnectionStateConnected {
							connected <- string(c.CallID)
						}
					})
					callee.answer(bobCtx, c)
					callees[string(c.CallID)] = callee
				case *callevent.Candidates:
					if callee := callees[string(c.CallID)]; callee != nil {
						for _, cand := range c.Candidates {
							if !cand.IsEnd() {
								_ = callee.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: cand.Candidate, SDPMid: cand.SDPMid, SDPMLineIndex: cand.SDPMLineIndex})
							}
						}
					}
				}
				return false
			})
			bobDone <- err
		}()
		// Alice applies the bot's answers and candidates.
		byID := map[string]*goPeer{}
		for _, p := range callers {
			byID[p.callID] = p
			p.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
				if s == webrtc.PeerConnectionStateConnected {
					connected <- p.callID
				}
			})
		}
		aliceDone := make(chan error, 1)
		go func() {
			_, err := alice.WaitEvent(bobCtx, func(evt *event.Event) bool {
				if evt.Sender != setup.UserID || evt.RoomID != room {
					return false
				}
				c, err := callevent.Parse(callevent.Type(evt.Type.Type), evt.Content.VeryRaw)
				if err != nil || byID[string(c.CallInfo().CallID)] == nil {
					return false
				}
				p := byID[string(c.CallInfo().CallID)]
				switch c := c.(type) {
				case *callevent.Answer:
					_ = p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: c.Answer.SDP})
				case *callevent.Candidates:
					for _, cand := range c.Candidates {
						if !cand.IsEnd() {
							_ = p.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: cand.Candidate, SDPMid: cand.SDPMid, SDPMLineIndex: cand.SDPMLineIndex})
						}
					}
				}
				return false
			})
			aliceDone <- err
		}()
		for n := 0; n < 2*calls; n++ {
			select {
			case <-connected:
			case <-ctx.Done():
				b.Fatalf("calls connected: %d of %d", n, 2*calls)
			}
		}
		stopBob()
		<-bobDone
		<-aliceDone
		waitMetric(b, bot, fmt.Sprintf(`voipbot_bridge_legs{kind="matrix",state="connected"} %d`, 2*calls))
		rss1, g1 := benchserver.RSS(bot.PID()), goroutines(b, bot)
		for _, p := range callers {
			p.send(ctx, callevent.TypeHangup, map[string]any{"reason": "user_hangup"})
		}
		require.NoError(b, testbed.WaitFor(ctx, func() (bool, error) {
			m, err := bot.Metrics()
			return err == nil && strings.Contains(m, "voipbot_bridges 0") && !strings.Contains(m, "voipbot_calls{"), err
		}))
		var g2 int
		settled := testbed.WaitFor(ctxFor(b), func() (bool, error) {
			g2 = goroutines(b, bot)
			return g2 <= g0, nil
		})
		rss2 := benchserver.RSS(bot.PID())
		require.NoError(b, settled, "goroutines back to %d after the calls ended (still %d)", g0, g2)

		b.ReportMetric(float64(rss0)/(1<<20), "baseline-RSS-MiB")
		b.ReportMetric(float64(rss1-rss0)/calls/1024, "KiB/bridged-call")
		b.ReportMetric(float64(g1-g0)/calls, "goroutines/bridged-call")
		b.ReportMetric(float64(g0), "goroutines-before")
		b.ReportMetric(float64(g2), "goroutines-after")
		b.ReportMetric(float64(rss2)/(1<<20), "RSS-after-MiB")
	}
}

// answer answers an invite (all candidates in the answer).
func (p *goPeer) answer(ctx context.Context, inv *callevent.Invite) {
	p.t.Helper()
	require.NoError(p.t, p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: inv.Offer.SDP}))
	ans, err := p.pc.CreateAnswer(nil)
	require.NoError(p.t, err)
	gathered := webrtc.GatheringCompletePromise(p.pc)
	require.NoError(p.t, p.pc.SetLocalDescription(ans))
	select {
	case <-gathered:
	case <-ctx.Done():
		p.t.Fatal("gathering did not complete")
	}
	p.send(ctx, callevent.TypeAnswer, map[string]any{"answer": map[string]any{"type": "answer", "sdp": p.pc.LocalDescription().SDP}})
}
