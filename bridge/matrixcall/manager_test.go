package matrixcall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/internal/testbed/impair"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/matrix/callevent"
	"github.com/voipbot/voipbot/store"
	"github.com/voipbot/voipbot/voip"
)

const (
	testBot  id.UserID   = "@bot:hs"
	testRoom id.RoomID   = "!room:hs"
	alice    id.UserID   = "@alice:hs"
	botDev   id.DeviceID = "BOTDEVICE"
)

// sent is a call event or notice the manager sent.
type sent struct {
	room    id.RoomID
	typ     callevent.Type // "" for a notice
	content callevent.Content
	notice  string
	at      time.Time
}

// fakeMatrix stands in for the Matrix client: it records what is sent.
type fakeMatrix struct {
	public bool
	sent   chan sent
	// refuse makes sending an event type fail with that error.
	refuse map[callevent.Type]error
	// disallowed users may not use the bot; others are the members of the
	// room besides the bot and the caller.
	disallowed map[id.UserID]bool
	others     int

	mu    sync.Mutex
	tries map[callevent.Type][]time.Time
	txns  map[callevent.Type][]string
}

func (f *fakeMatrix) UserID() id.UserID           { return testBot }
func (f *fakeMatrix) DeviceID() id.DeviceID       { return botDev }
func (f *fakeMatrix) Allowed(user id.UserID) bool { return !f.disallowed[user] }
func (f *fakeMatrix) SendCallEvent(_ context.Context, room id.RoomID, t callevent.Type, c callevent.Content, txnID string) (id.EventID, error) {
	f.mu.Lock()
	if f.tries == nil {
		f.tries, f.txns = map[callevent.Type][]time.Time{}, map[callevent.Type][]string{}
	}
	f.tries[t] = append(f.tries[t], time.Now())
	f.txns[t] = append(f.txns[t], txnID)
	err := f.refuse[t]
	f.mu.Unlock()
	if err != nil {
		return "", err
	}
	f.sent <- sent{room: room, typ: t, content: c, at: time.Now()}
	return id.EventID(fmt.Sprintf("$%s-%d", t, time.Now().UnixNano())), nil
}
func (f *fakeMatrix) SendNotice(_ context.Context, room id.RoomID, md string, _ *matrix.Event) (id.EventID, error) {
	f.sent <- sent{room: room, notice: md, at: time.Now()}
	return "$notice", nil
}
func (f *fakeMatrix) RoomIsPublic(context.Context, id.RoomID) (bool, error) { return f.public, nil }
func (f *fakeMatrix) OthersInRoom(context.Context, id.RoomID, id.UserID) (int, error) {
	return f.others, nil
}

// triesOf is when the manager tried to send events of type t, and with
// which transaction IDs.
func (f *fakeMatrix) triesOf(t callevent.Type) ([]time.Time, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tries[t]), slices.Clone(f.txns[t])
}

type managerEnv struct {
	t    testing.TB
	cm   *Manager
	host *testHost
	mx   *fakeMatrix
	st   *store.Store
	ctx  context.Context
	reg  *prometheus.Registry
}

// counter is the value of a counter of the manager's metrics ("" labels:
// the sum over all).
func (e *managerEnv) counter(name string, labels map[string]string) float64 {
	e.t.Helper()
	families, err := e.reg.Gather()
	require.NoError(e.t, err)
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue series
				}
			}
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

func newManagerEnv(t testing.TB, cfg testConfig) *managerEnv {
	return newManagerEnvWith(t, cfg, voip.Config{Interfaces: []string{"lo"}, IncludeLoopback: true,
		ICEDisconnected: 5 * time.Second, ICEFailed: 10 * time.Second, ICEKeepalive: time.Second})
}

// newManagerEnvWith is newManagerEnv with the media engine's configuration.
func newManagerEnvWith(t testing.TB, cfg testConfig, media voip.Config) *managerEnv {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "v.db")}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.SetMembership(ctx, testRoom, store.MembershipJoin, alice))
	engine, err := voip.NewEngine(media, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { _ = engine.Close() })
	if cfg.InviteLifetime == 0 {
		cfg.InviteLifetime = time.Minute
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	mx := &fakeMatrix{sent: make(chan sent, 1024)}
	reg := prometheus.NewRegistry()
	log := zerolog.Nop()
	if os.Getenv("VOIPBOT_TEST_LOG") != "" {
		log = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	host := newTestHost(cfg, log)
	cm := New(ctx, cfg.Config, mx, st, engine, host, reg, log)
	e := &managerEnv{t: t, cm: cm, host: host, mx: mx, st: st, ctx: ctx, reg: reg}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cm.Shutdown(sctx)
	})
	return e
}

// deliver hands the manager one event as the intake would; batchEnd ends
// the sync batch.
func (e *managerEnv) deliver(sender id.UserID, t callevent.Type, content map[string]any, age time.Duration) {
	raw, err := json.Marshal(content)
	require.NoError(e.t, err)
	evt := &matrix.Event{
		Event: &event.Event{
			Type: event.Type{Type: string(t), Class: event.MessageEventType}, Sender: sender, RoomID: testRoom,
			ID: id.EventID(fmt.Sprintf("$%s%d", t, time.Now().UnixNano())), Content: event.Content{VeryRaw: raw},
			Unsigned: event.Unsigned{Age: age.Milliseconds()},
		},
		ReceivedAt: time.Now(),
	}
	require.NoError(e.t, e.cm.handleEvent(e.ctx, evt))
}

func (e *managerEnv) batchEnd() { e.cm.batchEnd(e.ctx, testRoom) }

// place places a call from the bot to invitee, as the bridge does.
func (e *managerEnv) place(invitee id.UserID, video bool) (*Leg, error) {
	callID, legID, err := e.cm.NewCallID()
	if err != nil {
		return nil, err
	}
	if busy := e.host.Admit(legID, testRoom, ""); busy != "" {
		return nil, errors.New(busy)
	}
	r, err := e.cm.Place(testRoom, callID, PlaceOptions{Invitee: invitee, Video: video}, e.host.events())
	if err != nil {
		return nil, err
	}
	r.Start()
	return r, nil
}

// hangupAll hangs up every call in the room, as the hangup command does.
func (e *managerEnv) hangupAll() {
	for _, r := range e.cm.LegsIn(testRoom) {
		r.Hangup(leg.Hangup, "hung up by the test")
	}
}

// next waits for the next thing sent.
func (e *managerEnv) next() sent {
	e.t.Helper()
	select {
	case s := <-e.mx.sent:
		return s
	case <-time.After(10 * time.Second):
		e.t.Fatal("nothing sent within 10s")
	}
	return sent{}
}

// nextOf waits for the next call event of type t, skipping candidates.
func (e *managerEnv) nextOf(t callevent.Type) sent {
	e.t.Helper()
	for {
		s := e.next()
		if s.typ == t {
			return s
		}
		if s.typ != callevent.TypeCandidates {
			e.t.Fatalf("sent %s %q while waiting for %s", s.typ, s.notice, t)
		}
	}
}

// refusal waits for a reject and a notice, in either order (the notice
// goes out at once, the reject from its own goroutine), skipping
// candidates of other calls.
func (e *managerEnv) refusal() (*callevent.Reject, string) {
	e.t.Helper()
	var rej *callevent.Reject
	notice := ""
	for rej == nil || notice == "" {
		s := e.next()
		switch {
		case s.typ == callevent.TypeReject:
			rej = s.content.(*callevent.Reject)
		case s.notice != "":
			notice = s.notice
		case s.typ != callevent.TypeCandidates:
			e.t.Fatalf("sent %s while waiting for a reject and a notice", s.typ)
		}
	}
	return rej, notice
}

// connectedCall has alice call the bot from p with callID and waits until
// the call is connected.
func (e *managerEnv) connectedCall(p *pionPeer, callID string) {
	e.t.Helper()
	e.deliver(alice, callevent.TypeInvite, inviteContent(callID, "ALICE", p.offer(e.t)), 0)
	e.batchEnd()
	ans := e.nextOf(callevent.TypeAnswer).content.(*callevent.Answer)
	require.NoError(e.t, p.pc.SetRemoteDescription(webrtcAnswer(ans.Answer.SDP)))
	require.Eventually(e.t, func() bool { return e.callState(callID) == "connected" }, 10*time.Second, 10*time.Millisecond)
}

// callState is the stored state of a call ("" if there is none).
func (e *managerEnv) callState(callID string) string {
	c, err := e.st.Call(e.ctx, testRoom, callID)
	if err != nil || c == nil {
		return ""
	}
	return c.State
}

func webrtcAnswer(sdp string) webrtc.SessionDescription {
	return webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}
}

// pionPeer is a plain pion client making offers and answers.
type pionPeer struct {
	pc *webrtc.PeerConnection
}

func newPionPeer(t testing.TB) *pionPeer {
	pc := newLoopbackPC(t)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "peer")
	require.NoError(t, err)
	_, err = pc.AddTrack(track)
	require.NoError(t, err)
	return &pionPeer{pc: pc}
}

// newLoopbackPC is a plain pion peer connection on loopback, closed with
// the test.
func newLoopbackPC(t testing.TB) *webrtc.PeerConnection {
	var se webrtc.SettingEngine
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	me := &webrtc.MediaEngine{}
	require.NoError(t, me.RegisterDefaultCodecs())
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// offer returns a complete offer (all candidates in it).
func (p *pionPeer) offer(t testing.TB) string {
	offer, err := p.pc.CreateOffer(nil)
	require.NoError(t, err)
	done := webrtc.GatheringCompletePromise(p.pc)
	require.NoError(t, p.pc.SetLocalDescription(offer))
	<-done
	return p.pc.LocalDescription().SDP
}

func inviteContent(callID, party string, sdp string) map[string]any {
	return map[string]any{"call_id": callID, "party_id": party, "version": "1", "lifetime": 60000,
		"offer": map[string]any{"type": "offer", "sdp": sdp}}
}

func TestManagerAnswersInvite(t *testing.T) {
	e := newManagerEnv(t, testConfig{})
	p := newPionPeer(t)
	e.deliver(alice, callevent.TypeInvite, inviteContent("1700000000000aaaaaaaaaaaaaaaa", "ALICE", p.offer(t)), 0)
	e.batchEnd()
	ans := e.nextOf(callevent.TypeAnswer).content.(*callevent.Answer)
	assert.Equal(t, string(botDev), string(ans.PartyID))
	require.NoError(t, p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.Answer.SDP}))
	c, err := e.st.Call(e.ctx, testRoom, "1700000000000aaaaaaaaaaaaaaaa")
	require.NoError(t, err)
	require.NotNil(t, c)
	assert.Equal(t, alice, c.PeerUserID)

	// Mute changes are tracked and shown (the spec's typo key too).
	e.deliver(alice, callevent.TypeSDPStreamMetadataChanged, map[string]any{"call_id": "1700000000000aaaaaaaaaaaaaaaa", "party_id": "ALICE", "version": "1",
		"sdp_stream_metadata": map[string]any{"s": map[string]any{"purpose": "m.usermedia", "audio_muted:": true}}}, 0)
	require.Eventually(t, func() bool {
		lines := e.cm.Describe(testRoom)
		return len(lines) == 1 && strings.Contains(lines[0], "peer's microphone muted")
	}, 5*time.Second, time.Millisecond)
	assert.Contains(t, e.cm.Describe(testRoom)[0], "inbound voice call with @alice:hs")
}

func TestManagerInviteRules(t *testing.T) {
	tests := []struct {
		name   string
		public bool
		send   func(e *managerEnv, sdp string)
	}{
		{"invite for someone else", false, func(e *managerEnv, sdp string) {
			c := inviteContent("1700000000000bbbbbbbbbbbbbbbb", "ALICE", sdp)
			c["invitee"] = "@carol:hs"
			e.deliver(alice, callevent.TypeInvite, c, 0)
		}},
		{"stale invite (age within 3 s of lifetime)", false, func(e *managerEnv, sdp string) {
			e.deliver(alice, callevent.TypeInvite, inviteContent("1700000000000cccccccccccccccc", "ALICE", sdp), 57500*time.Millisecond)
		}},
		{"our own invite echoed back", false, func(e *managerEnv, sdp string) {
			e.deliver(testBot, callevent.TypeInvite, inviteContent("1700000000000dddddddddddddddd", string(botDev), sdp), 0)
		}},
		{"hung up in the same batch", false, func(e *managerEnv, sdp string) {
			e.deliver(alice, callevent.TypeInvite, inviteContent("1700000000000eeeeeeeeeeeeeeee", "ALICE", sdp), 0)
			e.deliver(alice, callevent.TypeHangup, map[string]any{"call_id": "1700000000000eeeeeeeeeeeeeeee", "party_id": "ALICE", "version": "1", "reason": "user_hangup"}, 0)
		}},
		{"answered elsewhere in the same batch", false, func(e *managerEnv, sdp string) {
			e.deliver(alice, callevent.TypeInvite, inviteContent("1700000000000ffffffffffffffff", "ALICE", sdp), 0)
			e.deliver(testBot, callevent.TypeAnswer, map[string]any{"call_id": "1700000000000ffffffffffffffff", "party_id": "OTHERDEV", "version": "1",
				"answer": map[string]any{"type": "answer", "sdp": "v=0"}}, 0)
		}},
		{"public room", true, func(e *managerEnv, sdp string) {
			e.deliver(alice, callevent.TypeInvite, inviteContent("1700000000000gggggggggggggggg", "ALICE", sdp), 0)
		}},
		{"malformed invite", false, func(e *managerEnv, sdp string) {
			c := inviteContent("1700000000000hhhhhhhhhhhhhhhh", "ALICE", sdp)
			delete(c, "offer")
			e.deliver(alice, callevent.TypeInvite, c, 0)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newManagerEnv(t, testConfig{})
			e.mx.public = tt.public
			tt.send(e, newPionPeer(t).offer(t))
			e.batchEnd()
			assert.Zero(t, e.cm.Active(), "no call started")
			select {
			case s := <-e.mx.sent:
				t.Fatalf("sent %s %q", s.typ, s.notice)
			default:
			}
		})
	}
}

func TestManagerBusy(t *testing.T) {
	e := newManagerEnv(t, testConfig{MaxCallsPerRoom: 1})
	e.deliver(alice, callevent.TypeInvite, inviteContent("1700000000000aaaaaaaaaaaaaaaa", "ALICE", newPionPeer(t).offer(t)), 0)
	e.batchEnd()
	e.nextOf(callevent.TypeAnswer)
	e.deliver("@bob:hs", callevent.TypeInvite, inviteContent("1700000000001bbbbbbbbbbbbbbbb", "BOB", newPionPeer(t).offer(t)), 0)
	e.batchEnd()
	rej, notice := e.refusal()
	assert.Equal(t, callevent.ReasonUserBusy, rej.Reason)
	assert.Equal(t, "1700000000001bbbbbbbbbbbbbbbb", string(rej.CallID))
	assert.Contains(t, notice, "Missed call from @bob:hs")
	require.Eventually(t, func() bool {
		c, err := e.st.Call(e.ctx, testRoom, "1700000000001bbbbbbbbbbbbbbbb")
		return err == nil && c != nil && c.Missed && c.State == store.CallStateEnded
	}, 5*time.Second, 10*time.Millisecond, "the busy call is recorded as missed")
	require.Eventually(t, func() bool { return e.cm.Active() == 1 }, 5*time.Second, time.Millisecond, "the first call goes on")
}

// Glare: our invite is out when the peer's arrives. The lesser call ID
// survives; the other is hung up with "replaced".
func TestManagerGlare(t *testing.T) {
	for _, oursLesser := range []bool{true, false} {
		t.Run(fmt.Sprintf("ours lesser %v", oursLesser), func(t *testing.T) {
			e := newManagerEnv(t, testConfig{})
			r, err := e.place(alice, false)
			require.NoError(t, err)
			inv := e.nextOf(callevent.TypeInvite).content.(*callevent.Invite)
			assert.Equal(t, alice, inv.Invitee)
			theirs := "9999999999999zzzzzzzzzzzzzzzz"
			if !oursLesser {
				theirs = "0000000000001aaaaaaaaaaaaaaaa"
			}
			e.deliver(alice, callevent.TypeInvite, inviteContent(theirs, "ALICE", newPionPeer(t).offer(t)), 0)
			e.batchEnd()
			if oursLesser {
				h := e.nextOf(callevent.TypeReject).content.(*callevent.Reject)
				assert.Equal(t, callevent.ReasonReplaced, h.Reason)
				assert.Equal(t, theirs, string(h.CallID), "theirs is declined")
				require.Eventually(t, func() bool { return e.cm.Active() == 1 }, 5*time.Second, time.Millisecond, "ours goes on")
				return
			}
			// Ours is hung up and theirs answered, each on its own call's
			// queue: in either order.
			got := map[callevent.Type]callevent.Content{}
			for len(got) < 2 {
				s := e.next()
				if s.typ != callevent.TypeCandidates {
					got[s.typ] = s.content
				}
			}
			h := got[callevent.TypeHangup].(*callevent.Hangup)
			assert.Equal(t, callevent.ReasonReplaced, h.Reason)
			assert.Equal(t, r.CallID(), h.CallID, "ours is hung up")
			ans := got[callevent.TypeAnswer].(*callevent.Answer)
			assert.Equal(t, theirs, string(ans.CallID), "theirs is answered on the user's behalf")
		})
	}
}

// The invite→answer time inside the bot (from the invite's intake to the
// answer going out), against raw pion answering the same offer the least
// any answering client must: a peer connection, the remote offer, a track,
// an answer and its candidates.
func BenchmarkInviteToAnswer(b *testing.B) {
	e := newManagerEnv(b, testConfig{MaxCalls: 0, MaxCallsPerRoom: 0})
	var mu sync.Mutex
	var ours, raw []time.Duration
	for i := range b.N {
		offer := newPionPeer(b).offer(b)
		// Ours.
		callID := fmt.Sprintf("1700000000000%016d", i)
		start := time.Now()
		e.deliver(alice, callevent.TypeInvite, inviteContent(callID, "ALICE", offer), 0)
		e.batchEnd()
		s := e.nextOf(callevent.TypeAnswer)
		mu.Lock()
		ours = append(ours, s.at.Sub(start))
		mu.Unlock()
		e.hangupAll()
		e.nextOf(callevent.TypeHangup)
		require.Eventually(b, func() bool { return e.cm.Active() == 0 }, 5*time.Second, time.Millisecond)

		// Raw pion.
		start = time.Now()
		rawAnswer(b, offer)
		raw = append(raw, time.Since(start))
	}
	reportPercentiles(b, "ours", ours)
	reportPercentiles(b, "raw-pion", raw)
	b.ReportMetric(float64(percentile(ours, 50))/float64(percentile(raw, 50)), "p50-ratio")
}

func rawAnswer(b *testing.B, offer string) {
	pc := newLoopbackPC(b)
	defer pc.Close() // now, as the bot's calls are closed each round
	require.NoError(b, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}))
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "raw")
	require.NoError(b, err)
	_, err = pc.AddTrack(track)
	require.NoError(b, err)
	answer, err := pc.CreateAnswer(nil)
	require.NoError(b, err)
	done := webrtc.GatheringCompletePromise(pc)
	require.NoError(b, pc.SetLocalDescription(answer))
	select {
	case <-done:
	case <-time.After(200 * time.Millisecond): // the same cap as the bot's
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, len(s)*p/100)]
}

func reportPercentiles(b *testing.B, name string, d []time.Duration) {
	b.ReportMetric(float64(percentile(d, 50).Microseconds())/1000, name+"-p50-ms")
	b.ReportMetric(float64(percentile(d, 99).Microseconds())/1000, name+"-p99-ms")
}

// The peer puts the call on hold with m.call.negotiate (its media
// sendonly): the bot answers the negotiate offer, records the hold (and
// stops sending), and takes it back when the peer resumes. (pion answers a
// sendonly offer with sendrecv; the peer's side then settles on sendonly.)
func TestManagerRemoteHold(t *testing.T) {
	e := newManagerEnv(t, testConfig{})
	p := newPionPeer(t)
	const callID = "1700000000000aaaaaaaaaaaaaaaa"
	e.connectedCall(p, callID)

	// Clients hold by making their media sendonly (pion cannot set a
	// transceiver's direction, so the test rewrites its own offer).
	negotiate := func(direction string) string {
		offer, err := p.pc.CreateOffer(nil)
		require.NoError(t, err)
		sdp := strings.ReplaceAll(offer.SDP, "a=sendrecv", "a="+direction)
		e.deliver(alice, callevent.TypeNegotiate, map[string]any{"call_id": callID, "party_id": "ALICE", "version": "1",
			"lifetime": 10000, "description": map[string]any{"type": "offer", "sdp": sdp}}, 0)
		n := e.nextOf(callevent.TypeNegotiate).content.(*callevent.Negotiate)
		require.Equal(t, callevent.SDPAnswer, n.Description.Type)
		return n.Description.SDP
	}
	negotiate("sendonly")
	require.Eventually(t, func() bool {
		c, err := e.st.Call(e.ctx, testRoom, callID)
		return err == nil && c != nil && c.StateReason == "put on hold by the peer"
	}, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, negotiate("sendrecv"), "a=sendrecv", "resumed")
	require.Eventually(t, func() bool {
		c, err := e.st.Call(e.ctx, testRoom, callID)
		return err == nil && c != nil && c.StateReason == "resumed by the peer"
	}, 5*time.Second, 10*time.Millisecond)
}

// A room's source decides what the caller hears: here the tone, in Opus
// frames that are not silence.
func TestManagerToneSource(t *testing.T) {
	e := newManagerEnv(t, testConfig{})
	e.host.cfg.Tone = true
	p := newPionPeer(t)
	got := make(chan []byte, 64)
	p.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case got <- pkt.Payload:
			default:
			}
		}
	})
	e.deliver(alice, callevent.TypeInvite, inviteContent("1700000000000aaaaaaaaaaaaaaaa", "ALICE", p.offer(t)), 0)
	e.batchEnd()
	ans := e.nextOf(callevent.TypeAnswer).content.(*callevent.Answer)
	require.NoError(t, p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.Answer.SDP}))
	for i := range 10 {
		select {
		case payload := <-got:
			require.Greater(t, len(payload), 20, "packet %d: a tone, not the 3-byte silence frame", i)
		case <-time.After(10 * time.Second):
			t.Fatal("no tone arrived")
		}
	}
}

// With stream metadata, the peer's user-media stream is what the echo sends
// back, not its screen share, whichever comes first.
func TestManagerEchoFollowsStreamMetadata(t *testing.T) {
	e := newManagerEnv(t, testConfig{})
	pc := newLoopbackPC(t)
	opus := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	screen, err := webrtc.NewTrackLocalStaticRTP(opus, "screen-audio", "screen")
	require.NoError(t, err)
	cam, err := webrtc.NewTrackLocalStaticRTP(opus, "cam-audio", "cam")
	require.NoError(t, err)
	for _, tr := range []*webrtc.TrackLocalStaticRTP{screen, cam} {
		_, err = pc.AddTrack(tr)
		require.NoError(t, err)
	}
	got := make(chan byte, 256)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			select {
			case got <- pkt.Payload[0]:
			default:
			}
		}
	})
	p := &pionPeer{pc: pc}
	invite := inviteContent("1700000000000aaaaaaaaaaaaaaaa", "ALICE", p.offer(t))
	invite["sdp_stream_metadata"] = map[string]any{
		"cam":    map[string]any{"purpose": "m.usermedia"},
		"screen": map[string]any{"purpose": "m.screenshare"},
	}
	e.deliver(alice, callevent.TypeInvite, invite, 0)
	e.batchEnd()
	ans := e.nextOf(callevent.TypeAnswer).content.(*callevent.Answer)
	require.NoError(t, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.Answer.SDP}))

	// Both streams send (the screen's first); what comes back must settle
	// on the camera's marker.
	camBack := 0
	for seq := uint16(0); camBack < 10; seq++ {
		for _, s := range []struct {
			tr     *webrtc.TrackLocalStaticRTP
			marker byte
		}{{screen, 0x5C}, {cam, 0xCA}} {
			_ = s.tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: []byte{s.marker, 1, 2, 3}})
		}
		select {
		case m := <-got:
			if m == 0xCA {
				camBack++
			} else {
				camBack = 0 // the screen share may be echoed only until the camera's track is known
			}
		case <-time.After(20 * time.Millisecond):
		case <-e.ctx.Done():
			t.Fatal("test context ended")
		}
		require.Less(t, seq, uint16(500), "the camera's stream never became the echo")
	}
}

// The peer leaving the room ends its call; nothing is sent.
func TestManagerPeerLeaves(t *testing.T) {
	e := newManagerEnv(t, testConfig{})
	e.deliver(alice, callevent.TypeInvite, inviteContent("1700000000000aaaaaaaaaaaaaaaa", "ALICE", newPionPeer(t).offer(t)), 0)
	e.batchEnd()
	e.nextOf(callevent.TypeAnswer)
	key := string(alice)
	leave := &matrix.Event{Event: &event.Event{Type: event.StateMember, Sender: alice, RoomID: testRoom, StateKey: &key,
		Content: event.Content{Parsed: &event.MemberEventContent{Membership: event.MembershipLeave}}}}
	require.True(t, e.cm.isPeerLeaving(leave.Event))
	require.NoError(t, e.cm.handleLeave(e.ctx, leave))
	require.Eventually(t, func() bool {
		c, err := e.st.Call(e.ctx, testRoom, "1700000000000aaaaaaaaaaaaaaaa")
		return err == nil && c != nil && c.State == store.CallStateEnded && c.HangupBy == "remote"
	}, 5*time.Second, 10*time.Millisecond)
	for {
		select {
		case s := <-e.mx.sent:
			require.Equal(t, callevent.TypeCandidates, s.typ, "nothing but trickled candidates is sent")
			continue
		default:
		}
		break
	}
}

// Calls a previous run left active are hung up and recorded as ended.
func TestManagerEndsStaleCalls(t *testing.T) {
	e := newManagerEnv(t, testConfig{})
	require.NoError(t, e.st.PutCall(e.ctx, &store.Call{RoomID: testRoom, CallID: "stale1", OurPartyID: string(botDev),
		PeerUserID: alice, PeerPartyID: "ALICE", Direction: store.CallInbound, Version: "1", State: "connected"}))
	require.NoError(t, e.st.PutCall(e.ctx, &store.Call{RoomID: testRoom, CallID: "stale0", OurPartyID: string(botDev),
		PeerUserID: alice, Direction: store.CallInbound, Version: "0", State: "ringing"}))
	require.NoError(t, e.cm.EndStale(e.ctx))
	hangups := map[callevent.CallID]*callevent.Hangup{}
	for range 2 {
		h := e.nextOf(callevent.TypeHangup).content.(*callevent.Hangup)
		hangups[h.CallID] = h
	}
	assert.Equal(t, string(botDev), string(hangups["stale1"].PartyID))
	assert.Empty(t, hangups["stale0"].PartyID, "v0: no party id")
	assert.Equal(t, callevent.Version0, hangups["stale0"].Version)
	for _, id := range []string{"stale0", "stale1"} {
		c, err := e.st.Call(e.ctx, testRoom, id)
		require.NoError(t, err)
		assert.Equal(t, store.CallStateEnded, c.State)
		assert.Equal(t, "the bot restarted during the call", c.StateReason)
	}
}

// A call whose path dies is restarted, not hung up: the bot's connection
// fails, it sends an ICE-restart offer as m.call.negotiate, the peer answers
// it, and media connects again over the path that is left.
func TestManagerICERestartAfterPathLoss(t *testing.T) {
	e := newManagerEnvWith(t, testConfig{}, voip.Config{Interfaces: []string{"lo"}, IncludeLoopback: true,
		ICEDisconnected: 500 * time.Millisecond, ICEFailed: time.Second, ICEKeepalive: 200 * time.Millisecond})
	relay, err := impair.NewRelay(impair.Link{}, impair.Link{}, 1)
	require.NoError(t, err)
	p := newPionPeer(t) // side A of the relay; the bot is B
	const callID = "1700000000000aaaaaaaaaaaaaaaa"
	e.deliver(alice, callevent.TypeInvite, inviteContent(callID, "ALICE", impair.OnlyCandidate(p.offer(t), relay.AddrForB())), 0)
	e.batchEnd()
	ans := e.nextOf(callevent.TypeAnswer).content.(*callevent.Answer)
	require.NoError(t, p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer,
		SDP: impair.OnlyCandidate(ans.Answer.SDP, relay.AddrForA())}))
	waitReason := func(reason string) {
		require.Eventually(t, func() bool {
			c, err := e.st.Call(e.ctx, testRoom, callID)
			return err == nil && c != nil && c.StateReason == reason
		}, 20*time.Second, 10*time.Millisecond, "call reason %q", reason)
	}
	waitReason("media connected")

	require.NoError(t, relay.Close()) // the only path is gone
	var offer *callevent.Negotiate
	for offer == nil {
		s := e.next()
		if n, ok := s.content.(*callevent.Negotiate); ok {
			offer = n
		} else {
			require.NotEqual(t, callevent.TypeHangup, s.typ, "the bot hung up instead of restarting ICE")
		}
	}
	require.Equal(t, callevent.SDPOffer, offer.Description.Type)
	require.NoError(t, p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.Description.SDP}))
	answer, err := p.pc.CreateAnswer(nil)
	require.NoError(t, err)
	gathered := webrtc.GatheringCompletePromise(p.pc)
	require.NoError(t, p.pc.SetLocalDescription(answer))
	<-gathered
	e.deliver(alice, callevent.TypeNegotiate, map[string]any{"call_id": callID, "party_id": "ALICE", "version": "1", "lifetime": 10000,
		"description": map[string]any{"type": "answer", "sdp": p.pc.LocalDescription().SDP}}, 0)
	waitReason("media connected again")
}

// An answer the homeserver refuses for good (413: too large) is not
// retried; the call ends and the caller, who never saw the answer, is
// declined.
func TestManagerAnswerCannotBeSent(t *testing.T) {
	e := newManagerEnv(t, testConfig{})
	e.mx.refuse = map[callevent.Type]error{callevent.TypeAnswer: httpError(413, "M_TOO_LARGE", nil)}
	const callID = "1700000000000aaaaaaaaaaaaaaaa"
	e.deliver(alice, callevent.TypeInvite, inviteContent(callID, "ALICE", newPionPeer(t).offer(t)), 0)
	e.batchEnd()
	rej := e.nextOf(callevent.TypeReject).content.(*callevent.Reject)
	assert.Equal(t, callevent.ReasonUnknownError, rej.Reason)
	require.Eventually(t, func() bool {
		c, err := e.st.Call(e.ctx, testRoom, callID)
		return err == nil && c != nil && c.State == store.CallStateEnded && strings.Contains(c.StateReason, "could not be sent")
	}, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return e.cm.Active() == 0 }, 5*time.Second, time.Millisecond)
	tries, _ := e.mx.triesOf(callevent.TypeAnswer)
	assert.Len(t, tries, 1, "a permanent refusal is not retried")
	assert.Equal(t, 1.0, e.counter("voipbot_call_send_failures_total", map[string]string{"kind": "permanent"}))
}

// httpError is an error as mautrix returns a homeserver's refusal.
func httpError(status int, code string, extra map[string]any) error {
	if extra == nil {
		extra = map[string]any{}
	}
	return mautrix.HTTPError{
		Response:  &http.Response{StatusCode: status, Header: http.Header{}},
		RespError: &mautrix.RespError{ErrCode: code, Err: "refused by the test", StatusCode: status, ExtraData: extra},
	}
}

// Transient failures are retried with backoff, with one transaction ID for
// all tries; a rate limit is waited out as long as the homeserver asks.
func TestManagerSendRetries(t *testing.T) {
	sendRetryDelay = time.Millisecond
	t.Cleanup(func() { sendRetryDelay = 500 * time.Millisecond })
	for name, tc := range map[string]struct {
		err      error
		tries    int
		minDelay time.Duration
	}{
		"unavailable": {httpError(503, "M_UNKNOWN", nil), sendTries, 0},
		"no answer":   {mautrix.HTTPError{Message: "request error", WrappedError: errors.New("connection refused")}, sendTries, 0},
		"rate limit":  {httpError(429, "M_LIMIT_EXCEEDED", map[string]any{"retry_after_ms": 150.0}), sendTries, 150 * time.Millisecond},
		"forbidden":   {httpError(403, "M_FORBIDDEN", nil), 1, 0},
	} {
		t.Run(name, func(t *testing.T) {
			e := newManagerEnv(t, testConfig{})
			e.mx.refuse = map[callevent.Type]error{callevent.TypeHangup: tc.err}
			_, err := e.cm.sendCallEvent(e.ctx, zerolog.Nop(), testRoom, callevent.TypeHangup, &callevent.Hangup{Common: callevent.Common{CallID: "c", Version: callevent.Version1}})
			require.Error(t, err)
			tries, txns := e.mx.triesOf(callevent.TypeHangup)
			require.Len(t, tries, tc.tries)
			for i := 1; i < len(tries); i++ {
				assert.GreaterOrEqual(t, tries[i].Sub(tries[i-1]), tc.minDelay, "try %d", i+1)
				assert.Equal(t, txns[0], txns[i], "every try has the same transaction ID")
			}
		})
	}
}
