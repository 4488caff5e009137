package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/matrix/rtcevent"
	"github.com/voipbot/voipbot/store"
	"github.com/voipbot/voipbot/voip"
)

// fakeLeg is a leg whose party the test plays: it records what the bridge
// asks of it.
type fakeLeg struct {
	id      leg.ID
	dir     leg.Direction
	peer    string
	expires time.Time

	answers chan struct{}
	hangups chan leg.End
	started chan struct{}
	muted   chan [2]bool
	holds   chan bool
	done    chan struct{}
	once    sync.Once
}

func newFakeLeg(name string, dir leg.Direction, peer string) *fakeLeg {
	return &fakeLeg{id: leg.ID("fake:" + name), dir: dir, peer: peer,
		answers: make(chan struct{}, 4), hangups: make(chan leg.End, 4), started: make(chan struct{}, 1), muted: make(chan [2]bool, 4), holds: make(chan bool, 4), done: make(chan struct{})}
}

func (f *fakeLeg) ID() leg.ID               { return f.id }
func (f *fakeLeg) Kind() leg.Kind           { return leg.KindMatrix }
func (f *fakeLeg) Direction() leg.Direction { return f.dir }
func (f *fakeLeg) Peer() string             { return f.peer }
func (f *fakeLeg) Video() bool              { return false }
func (f *fakeLeg) Expires() time.Time       { return f.expires }
func (f *fakeLeg) Done() <-chan struct{}    { return f.done }
func (f *fakeLeg) Answer()                  { f.answers <- struct{}{} }
func (f *fakeLeg) Start()                   { f.started <- struct{}{} }
func (f *fakeLeg) SetMuted(a, v bool)       { f.muted <- [2]bool{a, v} }
func (f *fakeLeg) Hold(on bool)             { f.holds <- on }
func (f *fakeLeg) Hangup(r leg.Reason, detail string) {
	f.hangups <- leg.End{Reason: r, By: leg.ByBot, Detail: detail}
	f.finish()
}
func (f *fakeLeg) finish() { f.once.Do(func() { close(f.done) }) }

// fakeReacher is Matrix for the registry: everyone is allowed but the
// listed users; notices are recorded.
type fakeReacher struct {
	disallowed map[id.UserID]bool
	notices    chan string
}

func (f *fakeReacher) UserID() id.UserID                                          { return "@bot:hs" }
func (f *fakeReacher) Allowed(u id.UserID) bool                                   { return !f.disallowed[u] }
func (f *fakeReacher) Joined(context.Context, id.RoomID, id.UserID) (bool, error) { return true, nil }
func (f *fakeReacher) DirectRoom(context.Context, id.UserID) (id.RoomID, bool, error) {
	return "!dm:hs", false, nil
}
func (f *fakeReacher) FindDirectRoom(context.Context, id.UserID) (id.RoomID, error) {
	return "!dm:hs", nil
}
func (f *fakeReacher) ResolveAlias(context.Context, id.RoomAlias) (id.RoomID, error) {
	return "", errors.New("no aliases here")
}
func (f *fakeReacher) CallMemberships(context.Context, id.RoomID) ([]rtcevent.StateEvent, error) {
	return nil, nil
}
func (f *fakeReacher) SendFile(_ context.Context, _ id.RoomID, file matrix.File) (id.EventID, error) {
	f.notices <- "file " + file.Name
	return "$f", nil
}
func (f *fakeReacher) SendNotice(_ context.Context, _ id.RoomID, md string, _ *matrix.Event) (id.EventID, error) {
	f.notices <- md
	return "$n", nil
}

type bridgeEnv struct {
	t   *testing.T
	reg *registry
	st  *store.Store
	mx  *fakeReacher
	// dialled receives each leg the bridge places.
	dialled chan *fakeLeg
	dialErr error
}

func newBridgeEnv(t *testing.T) *bridgeEnv {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "v.db")}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	mx := &fakeReacher{disallowed: map[id.UserID]bool{}, notices: make(chan string, 16)}
	cfg := CallsConfig{Source: MediaEcho, MaxCalls: 4}
	cfg.InviteLifetime = time.Minute
	e := &bridgeEnv{t: t, st: st, mx: mx, dialled: make(chan *fakeLeg, 4)}
	e.reg = newRegistry(ctx, cfg, st, mx, zerolog.Nop())
	n := 0
	e.reg.dial = func(_ context.Context, b *Bridge, t Target, _ bool, _ time.Time, _ string) (placedLeg, error) {
		if e.dialErr != nil {
			return nil, e.dialErr
		}
		n++
		f := newFakeLeg(fmt.Sprintf("far%d", n), leg.Outbound, string(t.User))
		if busy := e.reg.adm.admit(f.id, "!dm:hs", ""); busy != "" {
			return nil, &busyError{why: busy}
		}
		e.dialled <- f
		return f, nil
	}
	return e
}

// routed starts a bridge as a call to the bot in a room routed to
// matrix:@b:hs does: the origin rings, the far leg is placed.
func (e *bridgeEnv) routed() (*Bridge, *fakeLeg, *fakeLeg) {
	origin := newFakeLeg("origin", leg.Inbound, "@a:hs")
	origin.expires = time.Now().Add(time.Minute)
	require.Empty(e.t, e.reg.Admit(origin.id, "!a:hs", ""))
	target := Target{Kind: leg.KindMatrix, User: "@b:hs"}
	b := e.reg.newBridge("!a:hs", target)
	b.post(func() {
		b.join(origin, true)
		b.ring(target)
	})
	far := recv(e.t, e.dialled, "the far leg is placed")
	recv(e.t, far.started, "and started")
	return b, origin, far
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out: %s", what)
		var zero T
		return zero
	}
}

func (e *bridgeEnv) waitDone(b *Bridge) {
	e.t.Helper()
	recv(e.t, b.Done(), "the bridge ends")
	assert.Zero(e.t, e.reg.adm.held(), "every call slot is given back")
	legs, err := e.st.BridgeLegs(context.Background(), string(b.id))
	require.NoError(e.t, err)
	for _, l := range legs {
		assert.Equal(e.t, store.LegStateEnded, l.State, l.LegID)
	}
	n, err := e.st.CountActiveBridges(context.Background())
	require.NoError(e.t, err)
	assert.Zero(e.t, n)
}

// A routed call rings until the far end answers, and is answered then.
func TestBridgeAnswersOriginWhenFarAnswers(t *testing.T) {
	e := newBridgeEnv(t)
	b, origin, far := e.routed()
	select {
	case <-origin.answers:
		t.Fatal("the origin is answered before the far end")
	default:
	}
	b.events.Answered(far)
	recv(t, origin.answers, "the origin is answered once the far end is")
	b.events.Answered(origin)

	// A mutes: B sees the bot's stream muted.
	b.events.PeerMuted(origin, true, false)
	assert.Equal(t, [2]bool{true, false}, recv(t, far.muted, "the mute is mirrored"))
	// A holds: B is put on hold; A resumes: B too.
	b.events.Receiving(origin, false)
	assert.True(t, recv(t, far.holds, "the hold is mirrored"))
	b.events.Receiving(origin, true)
	assert.False(t, recv(t, far.holds, "the resume is mirrored"))

	// B hangs up: A's call is hung up.
	b.events.Ended(far, leg.End{Reason: leg.Hangup, By: leg.ByPeer})
	far.finish()
	end := recv(t, origin.hangups, "the origin is hung up")
	assert.Equal(t, leg.Hangup, end.Reason)
	e.waitDone(b)
	legs, err := e.st.BridgeLegs(context.Background(), string(b.id))
	require.NoError(t, err)
	require.Len(t, legs, 2)
	assert.Equal(t, "peer", legs[1].EndedBy)
	assert.Equal(t, "bot", legs[0].EndedBy)
}

// The far end's refusal is the caller's, with the mapped reason.
func TestBridgeFarEndRefusalReachesCaller(t *testing.T) {
	for far, want := range map[leg.Reason]leg.Reason{
		leg.Declined: leg.Declined, leg.Hangup: leg.Declined, leg.Busy: leg.Busy,
		leg.NoAnswer: leg.NoAnswer, leg.Failed: leg.Failed,
	} {
		t.Run(string(far), func(t *testing.T) {
			e := newBridgeEnv(t)
			b, origin, farLeg := e.routed()
			b.events.Ended(farLeg, leg.End{Reason: far, By: leg.ByPeer, Detail: "x"})
			farLeg.finish()
			assert.Equal(t, want, recv(t, origin.hangups, "the origin is declined").Reason)
			e.waitDone(b)
		})
	}
}

// The caller giving up (or its ringing timing out) stops the far end's
// ringing, with invite_timeout for a timeout.
func TestBridgeCallerGivesUpWhileFarRings(t *testing.T) {
	for origin, want := range map[leg.Reason]leg.Reason{leg.Hangup: leg.Hangup, leg.NoAnswer: leg.NoAnswer} {
		t.Run(string(origin), func(t *testing.T) {
			e := newBridgeEnv(t)
			b, o, far := e.routed()
			b.events.Ended(o, leg.End{Reason: origin, By: leg.ByPeer})
			o.finish()
			assert.Equal(t, want, recv(t, far.hangups, "the far end stops ringing").Reason)
			e.waitDone(b)
		})
	}
}

// No slot for the far leg: the caller hears busy. A target that cannot be
// reached: the caller's call fails, and the room is told why.
func TestBridgeDialFailures(t *testing.T) {
	e := newBridgeEnv(t)
	e.reg.adm.max = 1 // the origin takes the only slot
	b, origin := e.routedNoFar()
	assert.Equal(t, leg.Busy, recv(t, origin.hangups, "busy").Reason)
	recv(t, e.mx.notices, "the room is told")
	e.waitDone(b)

	e = newBridgeEnv(t)
	e.dialErr = errors.New("the bot is not in !x:hs")
	b, origin = e.routedNoFar()
	assert.Equal(t, leg.Failed, recv(t, origin.hangups, "failed").Reason)
	assert.Contains(t, recv(t, e.mx.notices, "the room is told"), "the bot is not in !x:hs")
	e.waitDone(b)
}

func (e *bridgeEnv) routedNoFar() (*Bridge, *fakeLeg) {
	origin := newFakeLeg("origin", leg.Inbound, "@a:hs")
	require.Empty(e.t, e.reg.Admit(origin.id, "!a:hs", ""))
	target := Target{Kind: leg.KindMatrix, User: "@b:hs"}
	b := e.reg.newBridge("!a:hs", target)
	b.post(func() {
		b.join(origin, true)
		b.ring(target)
	})
	return b, origin
}

// Someone the access policy leaves out answers a rung room: hung up, and
// the caller is never answered.
func TestBridgeRefusesDisallowedAnswerer(t *testing.T) {
	e := newBridgeEnv(t)
	e.mx.disallowed["@b:hs"] = true
	b, origin, far := e.routed()
	b.events.Answered(far)
	end := recv(t, far.hangups, "the far leg is hung up")
	assert.Contains(t, end.Detail, "access policy")
	b.events.Ended(far, end)
	assert.Equal(t, leg.Declined, recv(t, origin.hangups, "the origin is declined").Reason)
	select {
	case <-origin.answers:
		t.Fatal("the origin was answered")
	default:
	}
	e.waitDone(b)
}

// Stopping the bot ends every bridge with reason shutdown; the next start
// finds nothing active.
func TestBridgeShutdownAndRestart(t *testing.T) {
	e := newBridgeEnv(t)
	b, origin, far := e.routed()
	b.events.Answered(far)
	recv(t, origin.answers, "answered")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.reg.shutdown(ctx)
	assert.Equal(t, leg.Shutdown, recv(t, origin.hangups, "origin").Reason)
	assert.Equal(t, leg.Shutdown, recv(t, far.hangups, "far").Reason)
	e.waitDone(b)

	// A run killed mid-bridge leaves rows active; the next start ends them.
	require.NoError(t, e.st.PutBridge(ctx, &store.Bridge{BridgeID: "br-old", RoomID: "!a:hs", Target: "matrix:@b:hs", CreatedAt: time.Now()}))
	require.NoError(t, e.st.PutBridgeLeg(ctx, &store.BridgeLeg{LegID: "matrix:old", BridgeID: "br-old", Kind: "matrix", Direction: "inbound", State: "connected", CreatedAt: time.Now()}))
	require.NoError(t, e.reg.endStale(ctx))
	n, err := e.st.CountActiveBridges(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	legs, err := e.st.BridgeLegs(ctx, "br-old")
	require.NoError(t, err)
	assert.Equal(t, store.LegStateEnded, legs[0].State)
	assert.Equal(t, "the bot restarted", legs[0].EndReason)
}

// A call's quality report names each party and direction with its numbers.
func TestFormatReport(t *testing.T) {
	out := formatReport("br-1", []legReport{{
		name:     "@a:hs (matrix, inbound)",
		duration: 10 * time.Second,
		stats: voip.LegStats{
			Inbound:  []voip.TrackStats{{Kind: webrtc.RTPCodecTypeAudio, Codec: "audio/opus", Packets: 500, Bytes: 40000, Lost: 5, Jitter: 3 * time.Millisecond}},
			Outbound: []voip.TrackStats{{Kind: webrtc.RTPCodecTypeAudio, Codec: "audio/opus", Packets: 490, Bytes: 39000, RTT: 12 * time.Millisecond, PLIs: 1}},
		},
	}})
	assert.Contains(t, out, "**Call report** (`br-1`, 10s)")
	assert.Contains(t, out, "from it, audio audio/opus: 500 packets, 32 kbit/s; lost 5 (1.0%), jitter 3ms")
	assert.Contains(t, out, "to it, audio audio/opus: 490 packets, 31 kbit/s; lost 0 (0%), jitter 0s, round trip 12ms, NACKs 0, keyframe requests 1")
}

// The caller hangs up while the target is still being found: the bridge
// waits for the search, then never places the leg, and gives its slot back.
func TestBridgeCallerGoneWhileDialling(t *testing.T) {
	e := newBridgeEnv(t)
	release := make(chan struct{})
	dialled := make(chan *fakeLeg, 1)
	e.reg.dial = func(ctx context.Context, b *Bridge, t Target, _ bool, _ time.Time, _ string) (placedLeg, error) {
		<-release
		f := newFakeLeg("far", leg.Outbound, string(t.User))
		if busy := e.reg.adm.admit(f.id, "!dm:hs", ""); busy != "" {
			return nil, &busyError{why: busy}
		}
		dialled <- f
		return f, nil
	}
	b, origin := e.routedNoFar()
	b.events.Ended(origin, leg.End{Reason: leg.Hangup, By: leg.ByPeer})
	origin.finish()
	processed := make(chan struct{})
	b.post(func() { close(processed) }) // after the hangup, on the bridge's queue
	recv(t, processed, "the bridge has taken the hangup")
	select {
	case <-b.Done():
		t.Fatal("the bridge ended while a target was still being found")
	default:
	}
	close(release)
	far := recv(t, dialled, "the search comes back")
	assert.Equal(t, leg.Hangup, recv(t, far.hangups, "the far leg is dropped").Reason)
	select {
	case <-far.started:
		t.Fatal("the far leg was placed")
	default:
	}
	e.waitDone(b)
}

// packetLeg is a voip leg with one Opus stream that negotiated
// telephone-event 101: what the forwarder writes to it comes out of out.
func packetLeg(t *testing.T, name string) (*voip.PacketLeg, chan rtp.Packet) {
	out := make(chan rtp.Packet, 256)
	done := make(chan struct{})
	var once sync.Once
	opus := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}
	l := voip.NewPacketLeg(name, []voip.PacketStream{{
		Kind: webrtc.RTPCodecTypeAudio, Codec: opus, SendPayloadType: 111, DTMFPayloadType: 101, SendDTMFPayloadType: 101,
		ReadRTP: func([]byte) (int, error) { <-done; return 0, io.EOF },
		WriteRTP: func(h *rtp.Header, payload []byte) error {
			select {
			case out <- rtp.Packet{Header: *h, Payload: append([]byte(nil), payload...)}:
			default:
			}
			return nil
		},
		ID: name + "-audio", StreamID: name,
	}}, voip.WithCloser(func() error { once.Do(func() { close(done) }); return nil }))
	t.Cleanup(func() { _ = l.Close() })
	return l, out
}

// Keys one party's signalling carried (jamid's SIP INFO) reach the other
// party as RFC 4733 events of those keys, in order, and not the presser.
func TestBridgePassesSignalledKeysOn(t *testing.T) {
	e := newBridgeEnv(t)
	b, origin, far := e.routed()
	b.events.Answered(far)
	recv(t, origin.answers, "the origin is answered")
	b.events.Answered(origin)
	originMedia, originOut := packetLeg(t, "origin")
	farMedia, farOut := packetLeg(t, "far")
	b.events.MediaReady(origin, originMedia)
	b.events.MediaReady(far, farMedia)

	// Two keys pressed at once arrive whole and in order.
	b.events.DTMF(origin, '4', 60*time.Millisecond)
	b.events.DTMF(origin, '5', 60*time.Millisecond)
	// The events of each key, as they come (an end is sent three times).
	var keys []byte
	for last := false; !last; {
		p := recv(t, farOut, "the far party gets the keys' events")
		require.EqualValues(t, 101, p.PayloadType)
		require.Len(t, p.Payload, 4)
		if len(keys) == 0 || keys[len(keys)-1] != p.Payload[0] {
			keys = append(keys, p.Payload[0])
		}
		last = p.Payload[0] == 5 && p.Payload[1]&0x80 != 0
	}
	require.Equal(t, []byte{4, 5}, keys, "key 4's events, then key 5's, none interleaved")
	select {
	case p := <-originOut:
		t.Fatalf("the presser got a packet back: %+v", p.Header)
	default:
	}

	// Legs let go of their media as they end.
	b.events.Ended(far, leg.End{Reason: leg.Hangup, By: leg.ByPeer})
	require.NoError(t, farMedia.Close())
	far.finish()
	recv(t, origin.hangups, "the origin is hung up")
	require.NoError(t, originMedia.Close())
	e.waitDone(b)
}
