package e2e

import (
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
)

// linkRE finds a call link in the bot's reply.
var linkRE = regexp.MustCompile(`(http://\S+/call/)([A-Za-z0-9_-]{43})`)

// guestBot is a bot with call links on its own HTTP listener.
func guestBot(t *testing.T, source string) (*botSetup, *testbed.Bot) {
	t.Helper()
	setup := newBotSetupFor(t, func(s *botSetup) string {
		return fmt.Sprintf("%scalls:\n  source: %s\nguests:\n  public_url: \"http://%s\"\n", callMedia, source, s.HTTPAddr)
	})
	return setup, setup.start(t)
}

// newBotSetupFor is newBotSetup with an extra section that names the
// setup's own values (its HTTP address).
func newBotSetupFor(t *testing.T, extra func(*botSetup) string) *botSetup {
	t.Helper()
	s := newBotSetup(t, hs, "")
	pickle := s.Secrets[1]
	s.writeConfig(t, hs, fmt.Sprintf("bot:\n  user_id: %q\n  password: %q\n", s.UserID, s.Password), pickle, extra(s))
	return s
}

// makeLink asks for a link in room and returns its URL and id.
func makeLink(t *testing.T, u *testbed.User, room id.RoomID, bot id.UserID, args string) (url, linkID string) {
	t.Helper()
	reply := body(command(t, u, room, bot, strings.TrimSpace("!voip link "+args)))
	m := linkRE.FindStringSubmatch(reply)
	require.NotNilf(t, m, "a link in %q", reply)
	id := regexp.MustCompile("`!voip revoke ([0-9a-f]{10})`").FindStringSubmatch(reply)
	require.NotNilf(t, id, "the link's id in %q", reply)
	return m[1] + m[2], id[1]
}

func getPage(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // a test's plain GET
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

// TestGuestLinks: a link's page is served while the link lives; a
// malformed, a guessed, an expired and a revoked token each get their
// page; a revoked link's socket is refused; guessing is rate limited per
// address; only members who may change the room's settings make links.
func TestGuestLinks(t *testing.T) {
	setup, _ := guestBot(t, "echo")
	u := newUser(t, hs, "guestl", false)
	room := inviteBot(t, u, setup.UserID, false)

	url, linkID := makeLink(t, u, room, setup.UserID, "2h video")
	status, page, header := getPage(t, url)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, page, "<html")
	assert.Contains(t, header.Get("Content-Security-Policy"), "default-src 'none'")
	assert.Equal(t, "no-referrer", header.Get("Referrer-Policy"), "the token is in the URL")
	assert.Contains(t, body(command(t, u, room, setup.UserID, "!voip links")), linkID)

	base := url[:strings.LastIndex(url, "/")+1]
	status, page, _ = getPage(t, base+"nope")
	assert.Equal(t, http.StatusNotFound, status)
	assert.Contains(t, page, "does not exist")
	var guess [32]byte
	_, _ = rand.Read(guess[:])
	status, page, _ = getPage(t, base+base64.RawURLEncoding.EncodeToString(guess[:]))
	assert.Equal(t, http.StatusNotFound, status, "a guessed token")
	assert.Contains(t, page, "does not exist")
	assert.NotContains(t, page, string(room), "no room id on an error page")

	// Expired: the link's time is put in the past in the bot's database.
	expiring, expiringID := makeLink(t, u, room, setup.UserID, "1m")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(setup.Dir, "voipbot.db")+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`UPDATE guest_link SET expires_at = ? WHERE id = ?`, time.Now().Add(-time.Second).UnixMilli(), expiringID)
	require.NoError(t, err)
	status, page, _ = getPage(t, expiring)
	assert.Equal(t, http.StatusGone, status)
	assert.Contains(t, page, "expired")

	reply := body(command(t, u, room, setup.UserID, "!voip revoke "+linkID))
	assert.Contains(t, reply, "revoked")
	status, page, _ = getPage(t, url)
	assert.Equal(t, http.StatusGone, status)
	assert.Contains(t, page, "revoked")
	_, resp, err := websocket.Dial(ctxFor(t), "ws"+strings.TrimPrefix(url, "http")+"/ws", nil)
	require.Error(t, err, "a revoked link's socket")
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusGone, resp.StatusCode)

	// Someone without the power to change the room's settings.
	other := newUser(t, hs, "guesto", false)
	_, err = u.InviteUser(ctxFor(t), room, &mautrix.ReqInviteUser{UserID: other.UserID})
	require.NoError(t, err)
	_, err = other.JoinRoomByID(ctxFor(t), room)
	require.NoError(t, err)
	assert.Contains(t, body(command(t, other, room, setup.UserID, "!voip link")), "only members who may change")

	// Guessing is slow: one address's bad tries run into the limit.
	limited := false
	for range 40 {
		if status, page, _ := getPage(t, base+"guess"); status == http.StatusTooManyRequests {
			assert.Contains(t, page, "Too many tries")
			limited = true
			break
		}
	}
	assert.True(t, limited, "40 bad tries in a row from one address are rate limited")
}

// TestGuestEchoLink: a guest (a pion peer over the guest protocol) joins
// through a link made with echo: hello, the accept (the bot's own source,
// echo here, answers), media connects and the guest's packets come back;
// the guest's hangup ends the bridge.
func TestGuestEchoLink(t *testing.T) {
	setup, bot := guestBot(t, "echo")
	u := newUser(t, hs, "gueste", false)
	room := inviteBot(t, u, setup.UserID, false)
	url, _ := makeLink(t, u, room, setup.UserID, "echo")
	ctx := ctxFor(t)

	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", nil)
	require.NoError(t, err)
	defer conn.CloseNow()
	readMsg := func() map[string]any {
		_, data, err := conn.Read(ctx)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(data, &m))
		return m
	}
	hello := readMsg()
	require.Equal(t, "hello", hello["type"])

	var se webrtc.SettingEngine
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(0)
	me := &webrtc.MediaEngine{}
	require.NoError(t, me.RegisterDefaultCodecs())
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "guest")
	require.NoError(t, err)
	_, err = pc.AddTrack(track)
	require.NoError(t, err)
	back := make(chan struct{})
	pc.OnTrack(func(r *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if _, _, err := r.ReadRTP(); err == nil {
			close(back)
		}
	})
	offer, err := pc.CreateOffer(nil)
	require.NoError(t, err)
	gathered := webrtc.GatheringCompletePromise(pc)
	require.NoError(t, pc.SetLocalDescription(offer))
	<-gathered
	msg, _ := json.Marshal(map[string]any{"type": "call", "sessionID": "g1", "callType": 2, "sdp": pc.LocalDescription().SDP, "userInfo": map[string]string{"name": "Gus"}})
	require.NoError(t, conn.Write(ctx, websocket.MessageText, msg))
	var accept map[string]any
	for accept == nil {
		if m := readMsg(); m["type"] == "accept" {
			accept = m
		}
	}
	require.NoError(t, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: accept["sdp"].(string)}))
	stop := make(chan struct{})
	defer close(stop)
	go func() { // 20 ms Opus frames of silence, for the echo to return
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				// An Opus frame of silence (TOC 0xf8: CELT, 20 ms).
				_ = track.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
			}
		}
	}()
	select {
	case <-back:
	case <-ctx.Done():
		t.Fatal("the echo sent nothing back")
	}
	waitMetric(t, bot, `voipbot_bridge_legs{kind="guest",state="connected"} 1`)
	msg, _ = json.Marshal(map[string]any{"type": "hangUp", "sessionID": "g1"})
	require.NoError(t, conn.Write(ctx, websocket.MessageText, msg))
	waitMetric(t, bot, `voipbot_bridges 0`)
}
