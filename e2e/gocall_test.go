package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/matrix/callevent"
)

// callMedia is the media section the bot runs with in these tests: loopback
// only, as every network test here.
const callMedia = `media:
  interfaces: [lo]
  include_loopback: true
`

// goPeer is a Matrix call client made of mautrix (signalling, through a
// testbed.User) and plain pion (media): an implementation independent of the
// bot's, which can also send what js-sdk never would (version 0 invites,
// odd party IDs, stale invites).
type goPeer struct {
	t       testing.TB
	u       *testbed.User
	room    id.RoomID
	callID  string
	partyID string
	version callevent.Version
	pc      *webrtc.PeerConnection
	track   *webrtc.TrackLocalStaticRTP
	// received counts RTP packets that came back with our marker payload.
	mu       sync.Mutex
	received int
	got      chan struct{} // signalled on every packet received
}

func newGoPeer(t testing.TB, u *testbed.User, room id.RoomID) *goPeer {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(0)
	me := &webrtc.MediaEngine{}
	require.NoError(t, me.RegisterDefaultCodecs())
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "gopeer")
	require.NoError(t, err)
	_, err = pc.AddTrack(track)
	require.NoError(t, err)
	p := &goPeer{
		t: t, u: u, room: room, pc: pc, track: track, got: make(chan struct{}, 1),
		callID:  fmt.Sprintf("%d%s", time.Now().UnixMilli(), "GoPeerCallId0000"),
		partyID: "GOPEER" + string(u.DeviceID), version: callevent.Version1,
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if len(pkt.Payload) > 0 && pkt.Payload[0] == 0xAB {
				p.mu.Lock()
				p.received++
				p.mu.Unlock()
				select {
				case p.got <- struct{}{}:
				default:
				}
			}
		}
	})
	return p
}

// send sends a call event as raw content, so tests can send anything.
func (p *goPeer) send(ctx context.Context, t callevent.Type, content map[string]any) {
	p.t.Helper()
	content["call_id"] = p.callID
	if p.version == callevent.Version0 {
		content["version"] = 0
	} else {
		content["version"] = "1"
		content["party_id"] = p.partyID
	}
	_, err := p.u.SendMessageEvent(ctx, p.room, event.Type{Type: string(t), Class: event.MessageEventType}, content)
	require.NoError(p.t, err)
}

// invite makes an offer with all candidates in it and sends the invite.
func (p *goPeer) invite(ctx context.Context, invitee id.UserID) {
	p.t.Helper()
	offer, err := p.pc.CreateOffer(nil)
	require.NoError(p.t, err)
	gathered := webrtc.GatheringCompletePromise(p.pc)
	require.NoError(p.t, p.pc.SetLocalDescription(offer))
	select {
	case <-gathered:
	case <-ctx.Done():
		p.t.Fatal("gathering did not complete")
	}
	content := map[string]any{
		"lifetime": 60000,
		"offer":    map[string]any{"type": "offer", "sdp": p.pc.LocalDescription().SDP},
	}
	if invitee != "" {
		content["invitee"] = invitee
	}
	p.send(ctx, callevent.TypeInvite, content)
}

// waitCallEvent waits for a call event of this call from sender.
func (p *goPeer) waitCallEvent(ctx context.Context, sender id.UserID, t callevent.Type) callevent.Content {
	p.t.Helper()
	var parsed callevent.Content
	_, err := p.u.WaitEvent(ctx, func(evt *event.Event) bool {
		if evt.Sender != sender || evt.Type.Type != string(t) {
			return false
		}
		c, err := callevent.Parse(t, evt.Content.VeryRaw)
		if err != nil || string(c.CallInfo().CallID) != p.callID {
			return false
		}
		parsed = c
		return true
	})
	require.NoErrorf(p.t, err, "waiting for %s", t)
	return parsed
}

// applyAnswer applies the bot's answer.
func (p *goPeer) applyAnswer(a *callevent.Answer) {
	p.t.Helper()
	require.NoError(p.t, p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.Answer.SDP}))
}

// sendAudioUntilEchoed sends marked Opus-sized packets every 20 ms until n
// have come back, or ctx ends.
func (p *goPeer) sendAudioUntilEchoed(ctx context.Context, n int) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	payload := make([]byte, 160)
	payload[0] = 0xAB
	for seq := uint16(0); ; seq++ {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 4242}, Payload: payload}
		if err := p.track.WriteRTP(pkt); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		p.mu.Lock()
		got := p.received
		p.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-tick.C:
		case <-p.got:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d packets echoed: %w", got, n, ctx.Err())
		}
	}
}

// rtpStats summarises the peer connection's RTP counters, for failure messages.
func (p *goPeer) rtpStats() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "ice=%s pc=%s", p.pc.ICEConnectionState(), p.pc.ConnectionState())
	for _, s := range p.pc.GetStats() {
		switch s := s.(type) {
		case webrtc.OutboundRTPStreamStats:
			fmt.Fprintf(&sb, " out[%s ssrc=%d pkts=%d]", s.Kind, s.SSRC, s.PacketsSent)
		case webrtc.InboundRTPStreamStats:
			fmt.Fprintf(&sb, " in[%s ssrc=%d pkts=%d]", s.Kind, s.SSRC, s.PacketsReceived)
		}
	}
	return sb.String()
}

// TestGoPeerCallsBot: a plain pion client calls the bot, the bot answers
// (with candidates in its SDP), media connects, the bot echoes our audio,
// and our hangup ends the call on both sides.
func TestGoPeerCallsBot(t *testing.T) {
	setup := newBotSetup(t, hs, callMedia)
	bot := setup.start(t)
	alice := newUser(t, hs, "alice", false)
	room := inviteBot(t, alice, setup.UserID, false)
	ctx := ctxFor(t)

	p := newGoPeer(t, alice, room)
	p.invite(ctx, setup.UserID)
	ans := p.waitCallEvent(ctx, setup.UserID, callevent.TypeAnswer).(*callevent.Answer)
	require.Equal(t, callevent.Version1, ans.Version)
	require.NotEmpty(t, ans.PartyID, "the bot answers with its party id")
	require.Contains(t, ans.Answer.SDP, "a=candidate:", "candidates gathered within ~200 ms are in the answer")
	require.NotNil(t, ans.Streams(), "the answer describes the bot's streams (sdp_stream_metadata)")
	p.applyAnswer(ans)

	require.NoError(t, p.sendAudioUntilEchoed(ctx, 25), "the bot echoes our audio; our stats: %s", p.rtpStats())
	waitMetric(t, bot, `voipbot_calls{state="connected"} 1`)

	p.send(ctx, callevent.TypeHangup, map[string]any{"reason": "user_hangup"})
	waitNoCalls(t, bot)

	// The call's record says how it went.
	stopBot(t, bot)
	st := openBotDB(t, setup.Dir+"/voipbot.db")
	c, err := st.Call(ctx, room, p.callID)
	require.NoError(t, err)
	require.NotNil(t, c)
	raw, _ := json.Marshal(c)
	require.Equal(t, "ended", c.State, "%s", raw)
	require.Equal(t, "remote", c.HangupBy)
	require.Equal(t, "user_hangup", c.HangupReason)
	require.Equal(t, alice.UserID, c.PeerUserID)
	require.Equal(t, p.partyID, c.PeerPartyID)
	require.False(t, c.ConnectedAt.IsZero(), "connected time recorded")
	require.False(t, c.Missed)
}

// connectGoPeer has p call the bot and waits until the bot's echo comes
// back; it returns the bot's answer.
func connectGoPeer(t *testing.T, ctx context.Context, p *goPeer, bot id.UserID) *callevent.Answer {
	t.Helper()
	p.invite(ctx, bot)
	ans := p.waitCallEvent(ctx, bot, callevent.TypeAnswer).(*callevent.Answer)
	p.applyAnswer(ans)
	require.NoError(t, p.sendAudioUntilEchoed(ctx, 10), "our stats: %s", p.rtpStats())
	return ans
}

// TestGoPeerLegacyAndOddClients: what js-sdk never sends but other clients
// do — a version 0 call (no party IDs; declined and ended by hangup), and
// famedly's base64 party IDs with its camelCase hangup reason.
func TestGoPeerLegacyAndOddClients(t *testing.T) {
	setup := newBotSetup(t, hs, callMedia)
	bot := setup.start(t)
	alice := newUser(t, hs, "alice", false)
	room := inviteBot(t, alice, setup.UserID, false)
	ctx := ctxFor(t)

	v0 := newGoPeer(t, alice, room)
	v0.version = callevent.Version0
	v0.callID = "legacy-call-0"
	ans := connectGoPeer(t, ctx, v0, setup.UserID)
	require.Equal(t, callevent.Version0, ans.Version, "a v0 call is answered as v0")
	require.Empty(t, ans.PartyID, "v0 has no party IDs")
	v0.send(ctx, callevent.TypeHangup, map[string]any{})
	waitNoCalls(t, bot)

	famedly := newGoPeer(t, alice, room)
	famedly.partyID = "q+/Z0aB9cD4=" // base64, outside the spec's grammar
	connectGoPeer(t, ctx, famedly, setup.UserID)
	famedly.send(ctx, callevent.TypeHangup, map[string]any{"reason": "userHangup"})
	waitNoCalls(t, bot)

	stopBot(t, bot)
	st := openBotDB(t, setup.Dir+"/voipbot.db")
	c, err := st.Call(ctx, room, v0.callID)
	require.NoError(t, err)
	require.Equal(t, "0", c.Version)
	require.Equal(t, "user_hangup", c.HangupReason, "an absent reason is user_hangup")
	c, err = st.Call(ctx, room, famedly.callID)
	require.NoError(t, err)
	require.Equal(t, famedly.partyID, c.PeerPartyID)
	require.Equal(t, "userHangup", c.HangupReason)
}

// TestGoPeerIgnoredInvitesAndSpoofing: an invite too close to its lifetime
// does not ring; another user cannot hang up alice's call by naming her
// party ID (a party is a user and a party ID).
func TestGoPeerIgnoredInvitesAndSpoofing(t *testing.T) {
	setup := newBotSetup(t, hs, callMedia)
	bot := setup.start(t)
	alice := newUser(t, hs, "alice", false)
	eve := newUser(t, hs, "mallory", false) // "eve" would make a password under 8 characters
	room := inviteBot(t, alice, setup.UserID, false)
	ctx := ctxFor(t)
	_, err := alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: eve.UserID})
	require.NoError(t, err)
	_, err = eve.JoinRoom(ctx, room.String(), nil)
	require.NoError(t, err)

	// The bot calls only members of the room.
	reply := body(command(t, alice, room, setup.UserID, "!voip call @nobody-here:localhost"))
	require.Contains(t, reply, "@nobody-here:localhost is not in this room")

	// Lifetime 2.5 s: within the 3 s grace the moment it is sent.
	stale := newGoPeer(t, alice, room)
	stale.callID = "stale-call"
	offer, err := stale.pc.CreateOffer(nil)
	require.NoError(t, err)
	require.NoError(t, stale.pc.SetLocalDescription(offer))
	stale.send(ctx, callevent.TypeInvite, map[string]any{"lifetime": 2500, "offer": map[string]any{"type": "offer", "sdp": offer.SDP}})
	// The room's events are handled in order: once the bot replied to a
	// later command, it has decided about the invite.
	status := body(command(t, alice, room, setup.UserID, "!voip status"))
	require.Contains(t, status, "Active calls: 0", "the stale invite did not ring")

	p := newGoPeer(t, alice, room)
	connectGoPeer(t, ctx, p, setup.UserID)
	_, err = eve.SendMessageEvent(ctx, room, event.Type{Type: string(callevent.TypeHangup), Class: event.MessageEventType},
		map[string]any{"call_id": p.callID, "party_id": p.partyID, "version": "1", "reason": "user_hangup"})
	require.NoError(t, err)
	status = body(command(t, alice, room, setup.UserID, "!voip status"))
	require.Contains(t, status, "call with "+alice.UserID.String()+": connected", "eve's spoofed hangup is ignored:\n%s", status)
	p.send(ctx, callevent.TypeHangup, map[string]any{"reason": "user_hangup"})
	waitNoCalls(t, bot)
}

// waitNoCalls waits until the bot has no active call.
func waitNoCalls(t *testing.T, bot *testbed.Bot) {
	t.Helper()
	require.NoError(t, testbed.WaitFor(ctxFor(t), func() (bool, error) {
		metrics, err := bot.Metrics()
		return err == nil && !strings.Contains(metrics, "voipbot_calls{"), err
	}), "the call ends")
}
