package guest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/voip"
)

// host answers every call at once and records what happens.
type host struct {
	answer    bool
	rung      chan *Leg
	connected chan struct{}
	muted     chan [2]bool
	ended     chan leg.End
}

func newHost(answer bool) *host {
	return &host{answer: answer, rung: make(chan *Leg, 2), connected: make(chan struct{}, 2), muted: make(chan [2]bool, 2), ended: make(chan leg.End, 2)}
}

func (h *host) Ringing(l *Leg) leg.Events {
	h.rung <- l
	if h.answer {
		l.Answer()
	}
	return h
}
func (h *host) ICEServers() []webrtc.ICEServer        { return nil }
func (h *host) Answered(leg.Leg)                      {}
func (h *host) MediaReady(leg.Leg, voip.Leg)          {}
func (h *host) Preferred(leg.Leg, *voip.InboundTrack) {}
func (h *host) Connected(leg.Leg)                     { h.connected <- struct{}{} }
func (h *host) Receiving(leg.Leg, bool)               {}
func (h *host) PeerMuted(_ leg.Leg, a, v bool)        { h.muted <- [2]bool{a, v} }
func (h *host) DTMF(leg.Leg, rune, time.Duration)     {}
func (h *host) Ended(_ leg.Leg, e leg.End)            { h.ended <- e }

func wait[T any](t *testing.T, c chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing came")
		var zero T
		return zero
	}
}

// serve runs a manager behind an httptest server and dials a guest
// socket to it.
func serve(t *testing.T, h *host, link Link) (*websocket.Conn, *Manager) {
	t.Helper()
	engine, err := voip.NewEngine(voip.Config{Interfaces: []string{"lo"}, IncludeLoopback: true}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { _ = engine.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	m := New(ctx, Config{RingTimeout: 5 * time.Second}, engine, h, zerolog.Nop())
	served := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		m.Serve(r.Context(), c, link, "127.0.0.1")
		close(served)
	}))
	conn, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.CloseNow()
		m.Shutdown(context.Background())
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
		srv.Close()
		cancel()
	})
	return conn, m
}

func read(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, data, err := c.Read(ctx)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	return m
}

func write(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, c.Write(context.Background(), websocket.MessageText, b))
}

func loopbackPC(t *testing.T) *webrtc.PeerConnection {
	var se webrtc.SettingEngine
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	me := &webrtc.MediaEngine{}
	require.NoError(t, me.RegisterDefaultCodecs())
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "guest")
	require.NoError(t, err)
	_, err = pc.AddTrack(track)
	require.NoError(t, err)
	return pc
}

// A guest calls: hello, then the call rings the host; answered, the
// guest gets an accept whose answer connects; its mute reaches the host;
// the bot's hangup tells the guest why and closes the socket.
func TestGuestCall(t *testing.T) {
	h := newHost(true)
	conn, _ := serve(t, h, Link{ID: "abc", Room: "!r:hs", Title: "Team room"})
	hello := read(t, conn)
	assert.Equal(t, map[string]any{"type": "hello", "video": false, "title": "Team room"}, hello)

	pc := loopbackPC(t)
	offer, err := pc.CreateOffer(nil)
	require.NoError(t, err)
	gathered := webrtc.GatheringCompletePromise(pc)
	require.NoError(t, pc.SetLocalDescription(offer))
	<-gathered
	write(t, conn, map[string]any{"type": "call", "sessionID": "s1", "callType": 2, "sdp": pc.LocalDescription().SDP, "userInfo": map[string]string{"name": "Ann"}})
	l := wait(t, h.rung)
	assert.Equal(t, "Ann", l.Name())
	assert.Equal(t, leg.KindGuest, l.Kind())

	var accept map[string]any
	for accept == nil {
		if m := read(t, conn); m["type"] == "accept" {
			accept = m
		}
	}
	assert.Equal(t, "s1", accept["sessionID"])
	assert.Equal(t, "Team room", accept["userInfo"].(map[string]any)["name"])
	connected := make(chan struct{})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	require.NoError(t, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: accept["sdp"].(string)}))
	wait(t, h.connected)
	<-connected

	write(t, conn, map[string]any{"type": "update", "sessionID": "s1", "userInfo": map[string]string{"audio_muted": "true"}})
	assert.Equal(t, [2]bool{true, false}, wait(t, h.muted))

	l.Hangup(leg.Hangup, "the room hung up")
	var bye map[string]any
	for bye == nil {
		if m := read(t, conn); m["type"] == "hangUp" {
			bye = m
		}
	}
	assert.Equal(t, map[string]any{"reason": "hangup", "detail": "the room hung up"}, bye["userInfo"])
	_, _, err = conn.Read(context.Background())
	assert.Equal(t, websocket.StatusNormalClosure, websocket.CloseStatus(err))
	assert.Equal(t, leg.End{Reason: leg.Hangup, By: leg.ByBot, Detail: "the room hung up"}, wait(t, h.ended))
}

// A call nobody takes is a reject with the reason; a malformed message
// is an error and a policy close; an oversized one a too-big close.
func TestGuestRefusals(t *testing.T) {
	t.Run("declined", func(t *testing.T) {
		h := newHost(false)
		conn, _ := serve(t, h, Link{ID: "abc", Room: "!r:hs"})
		read(t, conn) // hello
		write(t, conn, map[string]any{"type": "call", "sessionID": "s1", "callType": 2, "sdp": "v=0\r\n"})
		l := wait(t, h.rung)
		l.Hangup(leg.Declined, "nobody took it")
		m := read(t, conn)
		assert.Equal(t, "reject", m["type"])
		assert.Equal(t, "declined", m["userInfo"].(map[string]any)["reason"])
	})
	t.Run("malformed", func(t *testing.T) {
		h := newHost(false)
		conn, _ := serve(t, h, Link{ID: "abc", Room: "!r:hs"})
		read(t, conn)
		require.NoError(t, conn.Write(context.Background(), websocket.MessageText, []byte(`{"type":"accept","sessionID":"x"}`)))
		m := read(t, conn)
		assert.Equal(t, "error", m["type"])
		_, _, err := conn.Read(context.Background())
		assert.Equal(t, websocket.StatusPolicyViolation, websocket.CloseStatus(err))
	})
	t.Run("oversized", func(t *testing.T) {
		h := newHost(false)
		conn, _ := serve(t, h, Link{ID: "abc", Room: "!r:hs"})
		read(t, conn)
		big := `{"type":"hangUp","sessionID":"` + strings.Repeat("x", MaxMessage) + `"}`
		_ = conn.Write(context.Background(), websocket.MessageText, []byte(big))
		_, _, err := conn.Read(context.Background())
		assert.Equal(t, websocket.StatusMessageTooBig, websocket.CloseStatus(err))
	})
}
