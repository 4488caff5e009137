package whip

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/voip"
)

const goodToken = "good-token"

// host answers every session at once (unless refuse is set) and records
// what happens.
type host struct {
	refuse   error
	released chan leg.ID
	rung     chan *Leg
	media    chan voip.Leg
	conn     chan struct{}
	ended    chan leg.End
}

func newHost() *host {
	return &host{released: make(chan leg.ID, 4), rung: make(chan *Leg, 4), media: make(chan voip.Leg, 4), conn: make(chan struct{}, 4), ended: make(chan leg.End, 4)}
}

func (h *host) Admit(leg.ID, Link) error { return h.refuse }
func (h *host) Release(l leg.ID)         { h.released <- l }
func (h *host) Ringing(l *Leg) leg.Events {
	h.rung <- l
	l.Answer()
	return h
}
func (h *host) ICEServers() []webrtc.ICEServer {
	return []webrtc.ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}, {URLs: []string{"turn:127.0.0.1:3478"}, Username: "u", Credential: "p"}}
}
func (h *host) Answered(leg.Leg)                      {}
func (h *host) MediaReady(_ leg.Leg, m voip.Leg)      { h.media <- m }
func (h *host) Preferred(leg.Leg, *voip.InboundTrack) {}
func (h *host) Connected(leg.Leg)                     { h.conn <- struct{}{} }
func (h *host) Receiving(leg.Leg, bool)               {}
func (h *host) PeerMuted(leg.Leg, bool, bool)         {}
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

// serve runs a manager behind an httptest server; the one good token is
// goodToken, for room !r:example.com.
func serve(t *testing.T, h *host) (*httptest.Server, *Manager) {
	t.Helper()
	engine, err := voip.NewEngine(voip.Config{Interfaces: []string{"lo"}, IncludeLoopback: true}, zerolog.Nop())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	m := New(ctx, Config{PublicURL: srv.URL + "/", RingTimeout: 5 * time.Second}, engine, h, zerolog.Nop())
	m.Mount(func(p string, hd http.Handler) { mux.Handle(p, hd) }, func(_ *http.Request, token string, _ bool) (Link, error) {
		switch token {
		case goodToken:
			return Link{ID: "0123456789", Room: "!r:example.com"}, nil
		case "flood":
			return Link{}, ErrTooMany
		}
		return Link{}, ErrUnauthorized
	})
	t.Cleanup(func() {
		m.Shutdown(context.Background())
		srv.Close()
		cancel()
		_ = engine.Close()
	})
	return srv, m
}

// client is a pion peer on loopback: a WHIP publisher (sends Opus) or a
// WHEP player (receives).
func client(t *testing.T, egress bool) (*webrtc.PeerConnection, *webrtc.TrackLocalStaticSample) {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(0)
	me := &webrtc.MediaEngine{}
	require.NoError(t, me.RegisterDefaultCodecs())
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pc.Close() })
	if egress {
		_, err = pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		require.NoError(t, err)
		return pc, nil
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "whip")
	require.NoError(t, err)
	_, err = pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	require.NoError(t, err)
	return pc, track
}

func offerOf(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	require.NoError(t, err)
	gathered := webrtc.GatheringCompletePromise(pc)
	require.NoError(t, pc.SetLocalDescription(offer))
	<-gathered
	return pc.LocalDescription().SDP
}

func do(t *testing.T, method, url, ctype, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// A publisher: refused without a good token, a media type, an offer that
// sends; answered with 201, Location, ETag and ICE servers as Link
// headers; its media reaches the leg's inbound track; trickle, an ICE
// restart, a stale entity tag; DELETE ends it.
func TestWHIPPublish(t *testing.T) {
	checkLeaks(t)
	h := newHost()
	srv, _ := serve(t, h)
	pc, track := client(t, false)
	offer := offerOf(t, pc)

	resp, body := do(t, "POST", srv.URL+"/whip", "application/sdp", offer, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
	resp, _ = do(t, "POST", srv.URL+"/whip/wrong", "application/sdp", offer, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = do(t, "POST", srv.URL+"/whip/"+goodToken, "application/sdp", offer, map[string]string{"Authorization": "Bearer other"})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "two tokens that differ")
	resp, _ = do(t, "POST", srv.URL+"/whip/flood", "application/sdp", offer, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	resp, _ = do(t, "POST", srv.URL+"/whip/"+goodToken, "text/plain", offer, nil)
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	resp, body = do(t, "POST", srv.URL+"/whip/"+goodToken, "application/sdp", "v=0\r\nnonsense", nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, body, "unusable offer")
	resp, _ = do(t, "POST", srv.URL+"/whip/"+goodToken, "application/sdp", strings.Repeat("a", maxBody+1), nil)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	player, _ := client(t, true)
	resp, body = do(t, "POST", srv.URL+"/whip/"+goodToken, "application/sdp", offerOf(t, player), nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, body, "must send")
	resp, _ = do(t, "GET", srv.URL+"/whip/"+goodToken, "", "", nil)
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	resp, _ = do(t, "OPTIONS", srv.URL+"/whip", "", "", nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "application/sdp", resp.Header.Get("Accept-Post"))

	resp, answer := do(t, "POST", srv.URL+"/whip", "application/sdp; charset=utf-8", offer, map[string]string{"Authorization": "Bearer " + goodToken})
	require.Equal(t, http.StatusCreated, resp.StatusCode, answer)
	assert.Equal(t, "application/sdp", resp.Header.Get("Content-Type"))
	loc := resp.Header.Get("Location")
	require.Regexp(t, "^"+srv.URL+"/whip/session/[0-9a-f]{32}$", loc)
	etag := resp.Header.Get("ETag")
	require.NotEmpty(t, etag)
	assert.Equal(t, []string{`<stun:127.0.0.1:3478>; rel="ice-server"`, `<turn:127.0.0.1:3478>; rel="ice-server"; username="u"; credential="p"; credential-type="password"`}, resp.Header.Values("Link"))
	assert.Contains(t, answer, "a=recvonly", "the bot only receives from a publisher")
	assert.Contains(t, answer, "a=candidate:", "every candidate is in the answer")

	l := wait(t, h.rung)
	require.Equal(t, leg.KindWHIP, l.Kind())
	sess := wait(t, h.media)
	got := make(chan struct{})
	sess.OnInbound(func(in *voip.InboundTrack) {
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, err := in.Read(buf); err != nil {
					return
				}
				select {
				case got <- struct{}{}:
				default:
				}
			}
		}()
	})
	require.NoError(t, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}))
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = track.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
			}
		}
	}()
	wait(t, h.conn)
	wait(t, got)
	close(stop)
	<-sent

	frag := "a=ice-ufrag:" + ufragOf(offer) + "\r\na=ice-pwd:x\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9999 typ host\r\na=end-of-candidates\r\n"
	resp, body = do(t, "PATCH", loc, "application/trickle-ice-sdpfrag", frag, map[string]string{"If-Match": etag})
	require.Equal(t, http.StatusNoContent, resp.StatusCode, body)
	resp, _ = do(t, "PATCH", loc, "application/sdp", frag, nil)
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	resp, _ = do(t, "PATCH", loc, "application/trickle-ice-sdpfrag", frag, map[string]string{"If-Match": `"stale"`})
	require.Equal(t, http.StatusPreconditionFailed, resp.StatusCode)
	resp, _ = do(t, "PATCH", loc, "application/trickle-ice-sdpfrag", frag, map[string]string{"If-Match": "*"})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "an ICE restart")
	resp, _ = do(t, "PATCH", loc, "application/trickle-ice-sdpfrag", strings.Replace(frag, ufragOf(offer), "newufrag", 1), nil)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "new credentials: a restart")
	resp, _ = do(t, "PATCH", loc, "application/trickle-ice-sdpfrag", "a=candidate:1 1 udp\r\n", nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	resp, _ = do(t, "PATCH", srv.URL+"/whip/session/00000000000000000000000000000000", "application/trickle-ice-sdpfrag", frag, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	resp, _ = do(t, "DELETE", loc, "", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	e := wait(t, h.ended)
	assert.Equal(t, leg.ByPeer, e.By)
	<-l.Done()
	resp, _ = do(t, "DELETE", loc, "", "", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "a session ends once")
}

func ufragOf(sdp string) string {
	for line := range strings.SplitSeq(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

// A player gets the bot's send-only track; the host's refusals are
// 409 (no call) and 503 (busy, with Retry-After); a failed offer gives its
// slot back; the bot's hangup ends the client's connection.
func TestWHEPPlay(t *testing.T) {
	checkLeaks(t)
	h := newHost()
	srv, _ := serve(t, h)
	pc, _ := client(t, true)
	offer := offerOf(t, pc)

	h.refuse = errors.Join(ErrNoCall, errors.New("nobody is in this room's Element Call now"))
	resp, body := do(t, "POST", srv.URL+"/whep/"+goodToken, "application/sdp", offer, nil)
	require.Equal(t, http.StatusConflict, resp.StatusCode)
	assert.Contains(t, body, "nobody is in")
	h.refuse = ErrBusy
	resp, _ = do(t, "POST", srv.URL+"/whep/"+goodToken, "application/sdp", offer, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "60", resp.Header.Get("Retry-After"))
	h.refuse = nil

	// An offer that passes the first look but not pion's: the slot is
	// given back.
	broken := strings.ReplaceAll(offer, "a=fingerprint:", "a=fingerprint-gone:")
	resp, _ = do(t, "POST", srv.URL+"/whep/"+goodToken, "application/sdp", broken, nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	wait(t, h.released)

	resp, answer := do(t, "POST", srv.URL+"/whep/"+goodToken, "application/sdp", offer, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode, answer)
	require.Contains(t, resp.Header.Get("Location"), "/whep/session/")
	assert.Contains(t, answer, "a=sendonly")
	l := wait(t, h.rung)
	require.Equal(t, leg.KindWHEP, l.Kind())
	sess := wait(t, h.media)
	require.NotNil(t, sess.Outbound(webrtc.RTPCodecTypeAudio), "the player's audio track")
	closed := make(chan struct{})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateDisconnected {
			select {
			case <-closed:
			default:
				close(closed)
			}
		}
	})
	require.NoError(t, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}))
	wait(t, h.conn)
	l.Hangup(leg.Hangup, "the call ended")
	e := wait(t, h.ended)
	assert.Equal(t, leg.ByBot, e.By)
	wait(t, closed)
}

func TestParseFrag(t *testing.T) {
	f, err := parseFrag("a=ice-ufrag:EsAw\r\na=ice-pwd:P2uY\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\nm=video 9 RTP/AVP 96\r\na=mid:1\r\na=candidate:2 1 udp 2122260223 192.0.2.1 61765 typ host\r\na=end-of-candidates\r\n")
	require.NoError(t, err)
	assert.Equal(t, "EsAw", f.ufrag)
	assert.Equal(t, "P2uY", f.pwd)
	require.Len(t, f.candidates, 2)
	assert.Equal(t, "candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0", f.candidates[0].Candidate)
	assert.Equal(t, "0", *f.candidates[0].SDPMid)
	assert.Equal(t, "1", *f.candidates[1].SDPMid)
	assert.True(t, f.end)

	f, err = parseFrag("a=candidate:1 1 udp 1 127.0.0.1 1 typ host\n")
	require.NoError(t, err)
	require.NotNil(t, f.candidates[0].SDPMLineIndex, "no mid: the first section")

	for _, bad := range []string{"nonsense\n", "a=candidate:1 1 udp\n", strings.Repeat("a=candidate:1 1 udp 1 127.0.0.1 1 typ host\n", maxFragCandidates+1), strings.Repeat("x", 5000)} {
		_, err := parseFrag(bad)
		assert.Errorf(t, err, "%.40q", bad)
	}
}

func FuzzParseFrag(f *testing.F) {
	f.Add("a=ice-ufrag:a\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 1 typ host\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		fr, err := parseFrag(s)
		if err == nil && len(fr.candidates) > maxFragCandidates {
			t.Fatalf("%d candidates", len(fr.candidates))
		}
	})
}

// checkLeaks fails the test if a goroutine of the package or of a media
// session is left once it and its cleanups are done.
func checkLeaks(t *testing.T) {
	t.Cleanup(func() {
		var left string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			left = ""
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "voipbot/bridge/whip.") && !strings.Contains(g, "checkLeaks") || strings.Contains(g, "voipbot/voip.(*Session)") {
					left += g + "\n\n"
				}
			}
			if left == "" {
				return
			}
		}
		t.Errorf("goroutines left:\n%s", left)
	})
}
