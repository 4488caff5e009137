package guestclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/voip/media"
	"github.com/voipbot/voipbot/web/guestpage"
)

// A fake bot: the guest page served from web/guestpage as the bot serves
// it, and a WebSocket that speaks the guest protocol (v1) with a pion peer
// connection that answers the guest's offer and sends a tone (and, in a
// video call, the moving test pattern). The test decides what the bot does
// with each call (Accept, Reject, HangUp, Update …). This only proves the
// page's plumbing (signalling, media in and out, what the page shows); the
// real bot's side is tested where it is built.
//
// The tone is the pure-Go build's embedded 880 Hz Opus tone (voip/media
// has 330, 440 and 880 Hz without cgo): not 660 Hz as a live encoder could
// make, but well clear of the guest's own tone and of the page's 425 Hz
// ringback, so that what the guest hears can only be the bot's.
const botToneHz = 880

// Tokens of the bot's shape (43 base64url characters).
const (
	goodToken    = "GoodGoodGoodGoodGoodGoodGoodGoodGoodGoodGoo"
	expiredToken = "ExpiredExpiredExpiredExpiredExpiredExpiredE"
)

// fakeBot is an httptest server with the page and the socket.
type fakeBot struct {
	t        *testing.T
	srv      *httptest.Server
	hello    map[string]any
	sessions chan *botSession

	// revoked makes the good link answer 410 from now on;
	// revokeOnSocket revokes it when a socket comes (the link expiring
	// between the page's load and its socket); refuseSocket refuses every
	// socket with 503 (the page itself still loads).
	revoked, revokeOnSocket, refuseSocket atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the socket handlers (hijacked: httptest does not wait for them)
}

func newFakeBot(t *testing.T, video bool, title string) *fakeBot {
	t.Helper()
	return newFakeBotWith(t, map[string]any{"video": video, "title": title})
}

// newFakeBotWith makes a bot whose hello has the given fields.
func newFakeBotWith(t *testing.T, hello map[string]any) *fakeBot {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &fakeBot{
		t:        t,
		hello:    map[string]any{"type": "hello"},
		sessions: make(chan *botSession, 8),
		ctx:      ctx,
		cancel:   cancel,
	}
	for k, v := range hello {
		b.hello[k] = v
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /call/{token}", func(w http.ResponseWriter, r *http.Request) {
		switch tok := r.PathValue("token"); {
		case tok == goodToken && b.revoked.Load():
			guestpage.ErrorPage(w, http.StatusGone, "This call link was revoked", "Whoever made it took it back.")
		case tok == goodToken:
			guestpage.Page(w, r)
		case tok == expiredToken:
			guestpage.ErrorPage(w, http.StatusGone, "This call link has expired", "Ask for a new link in the room.")
		default:
			guestpage.ErrorPage(w, http.StatusNotFound, "This call link does not exist", "Check the link, or ask for a new one.")
		}
	})
	mux.HandleFunc("GET /call/{token}/ws", b.serveSocket)
	guestpage.MountAssets(mux.Handle, "/call/")
	// Loopback only: httptest listens on 127.0.0.1.
	b.srv = httptest.NewServer(mux)
	t.Cleanup(b.close)
	return b
}

// URL is the page of token.
func (b *fakeBot) URL(token string) string { return b.srv.URL + "/call/" + token }

func (b *fakeBot) close() {
	b.cancel()
	b.srv.Close()
	b.wg.Wait()
}

// NextSession waits for the next call the bot got.
func (b *fakeBot) NextSession(ctx context.Context) *botSession {
	b.t.Helper()
	select {
	case s := <-b.sessions:
		return s
	case <-ctx.Done():
		require.FailNow(b.t, "no call reached the fake bot", "%v", ctx.Err())
		return nil
	}
}

// message is any message of the protocol, both ways.
type message struct {
	Type          string             `json:"type"`
	SessionID     string             `json:"sessionID,omitempty"`
	CallType      int                `json:"callType,omitempty"`
	SDP           string             `json:"sdp,omitempty"`
	UserInfo      map[string]string  `json:"userInfo,omitempty"`
	ICECandidates []iceCandidateJSON `json:"iceCandidates,omitempty"`
	Error         string             `json:"error,omitempty"`
}

type iceCandidateJSON struct {
	Candidate     string  `json:"candidate"`
	SDPMid        *string `json:"sdpMid"`
	SDPMLineIndex *uint16 `json:"sdpMLineIndex"`
}

// botSession is one socket of the bot, and the call on it.
type botSession struct {
	t    *testing.T
	conn *websocket.Conn
	// Call is the guest's call message.
	Call message
	pc   *webrtc.PeerConnection

	updates chan map[string]string
	hangups chan map[string]string
	closed  chan struct{} // the socket's read loop ended

	// Packets the bot received from the guest, by kind, and closed at the
	// first of each.
	audioIn, videoIn   atomic.Int64
	gotAudio, gotVideo chan struct{}
	// Candidates trickled by the guest after its call.
	trickled chan string

	sources []*voip.SourceLeg
	media   sync.WaitGroup // the source pumps and the inbound readers
}

func (b *fakeBot) serveSocket(w http.ResponseWriter, r *http.Request) {
	if b.revokeOnSocket.Load() {
		b.revoked.Store(true)
	}
	switch tok := r.PathValue("token"); {
	case b.refuseSocket.Load():
		http.Error(w, "not now", http.StatusServiceUnavailable)
		return
	case tok == goodToken && !b.revoked.Load():
	case tok == goodToken || tok == expiredToken:
		http.Error(w, "expired", http.StatusGone)
		return
	default:
		http.Error(w, "no such link", http.StatusNotFound)
		return
	}
	b.wg.Add(1)
	defer b.wg.Done()
	// Same origin only (coder/websocket's default check).
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(64 << 10)
	s := &botSession{
		t: b.t, conn: conn,
		updates: make(chan map[string]string, 16),
		hangups: make(chan map[string]string, 4),
		closed:  make(chan struct{}),
		// More than the page can gather: the reader never blocks.
		trickled: make(chan string, 64),

		gotAudio: make(chan struct{}),
		gotVideo: make(chan struct{}),
	}
	defer close(s.closed)
	defer s.stopMedia()
	if err := s.write(b.ctx, b.hello); err != nil {
		return
	}
	for {
		_, data, err := conn.Read(b.ctx)
		if err != nil {
			return
		}
		var m message
		if err := json.Unmarshal(data, &m); err != nil {
			b.t.Errorf("fake bot: a message that is not JSON: %v: %.200s", err, data)
			return
		}
		switch m.Type {
		case "call":
			if s.pc != nil {
				b.t.Errorf("fake bot: a second call on one socket")
				return
			}
			s.Call = m
			if err := s.answer(); err != nil {
				b.t.Errorf("fake bot: answering: %v", err)
				return
			}
			b.sessions <- s
		case "iceCandidates":
			s.checkSession(m)
			for _, c := range m.ICECandidates {
				select {
				case s.trickled <- c.Candidate:
				default:
				}
				if err := s.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex}); err != nil {
					b.t.Errorf("fake bot: a candidate of the guest: %v", err)
				}
			}
		case "update":
			s.checkSession(m)
			s.updates <- m.UserInfo
		case "hangUp":
			s.checkSession(m)
			s.hangups <- m.UserInfo
		default:
			b.t.Errorf("fake bot: a message of type %q from the guest", m.Type)
		}
	}
}

// checkSession reports a message about another session than the call's
// (from the handler's goroutine: no FailNow there).
func (s *botSession) checkSession(m message) {
	if s.pc == nil || m.SessionID != s.Call.SessionID {
		s.t.Errorf("fake bot: a %s of session %q on the socket of session %q", m.Type, m.SessionID, s.Call.SessionID)
	}
}

func (s *botSession) write(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.conn.Write(ctx, websocket.MessageText, data)
}

// answer makes the peer connection for the guest's offer, with the tone
// (and the test pattern in a video call) to send: the answer is ready for
// Accept, with every candidate in it.
func (s *botSession) answer() error {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		return err
	}
	var se webrtc.SettingEngine
	// No mDNS: nothing but the host candidates goes on the network.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	s.pc = pc
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		count, got := &s.audioIn, s.gotAudio
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			count, got = &s.videoIn, s.gotVideo
		}
		s.media.Go(func() {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return // the peer connection closed
				}
				if count.Add(1) == 1 {
					close(got)
				}
			}
		})
	})
	if err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.Call.SDP}); err != nil {
		return err
	}
	tone, err := media.Tone("bot", voip.AudioCodecs[0], botToneHz)
	if err != nil {
		return err
	}
	if err = s.send(tone, "audio", voip.AudioCodecs[0].RTPCodecCapability); err != nil {
		return err
	}
	if strings.Contains(s.Call.SDP, "m=video") {
		pattern, err := media.Pattern("bot")
		if err != nil {
			return err
		}
		if err = s.send(pattern, "video", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}); err != nil {
			return err
		}
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err = pc.SetLocalDescription(answer); err != nil {
		return err
	}
	<-gathered
	return nil
}

// send adds a track to the peer connection fed by a source leg's packets.
func (s *botSession) send(src *voip.SourceLeg, kind string, codec webrtc.RTPCodecCapability) error {
	s.sources = append(s.sources, src)
	track, err := webrtc.NewTrackLocalStaticRTP(codec, kind, "bot")
	if err != nil {
		return err
	}
	if _, err = s.pc.AddTrack(track); err != nil {
		return err
	}
	src.OnInbound(func(in *voip.InboundTrack) {
		s.media.Go(func() {
			buf := make([]byte, 1500)
			for {
				n, err := in.Read(buf)
				if err != nil {
					return // the source was closed
				}
				var p rtp.Packet
				if p.Unmarshal(buf[:n]) != nil {
					continue
				}
				_ = track.WriteRTP(&p) // nothing bound yet, or closed: dropped
			}
		})
	})
	return nil
}

func (s *botSession) stopMedia() {
	if s.pc != nil {
		_ = s.pc.Close()
	}
	for _, src := range s.sources {
		_ = src.Close()
	}
	s.media.Wait()
}

// Accept sends accept with the answer, as answered by name.
func (s *botSession) Accept(ctx context.Context, name string) {
	s.t.Helper()
	require.NoError(s.t, s.write(ctx, message{
		Type: "accept", SessionID: s.Call.SessionID, SDP: s.pc.LocalDescription().SDP,
		UserInfo: map[string]string{"name": name},
	}))
}

// Reject sends reject.
func (s *botSession) Reject(ctx context.Context, reason, detail string) {
	s.t.Helper()
	require.NoError(s.t, s.write(ctx, message{Type: "reject", SessionID: s.Call.SessionID, UserInfo: map[string]string{"reason": reason, "detail": detail}}))
}

// HangUp sends hangUp.
func (s *botSession) HangUp(ctx context.Context, reason, detail string) {
	s.t.Helper()
	require.NoError(s.t, s.write(ctx, message{Type: "hangUp", SessionID: s.Call.SessionID, UserInfo: map[string]string{"reason": reason, "detail": detail}}))
}

// Update sends the other party's mute.
func (s *botSession) Update(ctx context.Context, audioMuted, videoMuted bool) {
	s.t.Helper()
	require.NoError(s.t, s.write(ctx, message{Type: "update", SessionID: s.Call.SessionID, UserInfo: map[string]string{
		"audio_muted": fmt.Sprint(audioMuted), "video_muted": fmt.Sprint(videoMuted),
	}}))
}

// Fail sends error and closes the socket with code, as the bot does for a
// malformed or oversized message.
func (s *botSession) Fail(ctx context.Context, text string, code websocket.StatusCode) {
	s.t.Helper()
	require.NoError(s.t, s.write(ctx, message{Type: "error", Error: text}))
	// The page closes its side as soon as it reads the error: either
	// side's close may come first.
	_ = s.conn.Close(code, text)
}

// Drop closes the socket at once, without a word.
func (s *botSession) Drop() { _ = s.conn.CloseNow() }

// WaitUpdate returns the guest's next update.
func (s *botSession) WaitUpdate(ctx context.Context) map[string]string {
	s.t.Helper()
	select {
	case u := <-s.updates:
		return u
	case <-s.closed:
		// What came before the close is in the channel already.
		select {
		case u := <-s.updates:
			return u
		default:
		}
		require.FailNow(s.t, "the guest's socket closed before an update")
	case <-ctx.Done():
		require.FailNow(s.t, "no update from the guest", "%v", ctx.Err())
	}
	return nil
}

// WaitHangUp returns the guest's hangUp's userInfo.
func (s *botSession) WaitHangUp(ctx context.Context) map[string]string {
	s.t.Helper()
	select {
	case u := <-s.hangups:
		return u
	case <-s.closed:
		// What came before the close is in the channel already.
		select {
		case u := <-s.hangups:
			return u
		default:
		}
		require.FailNow(s.t, "the guest's socket closed without a hangUp")
	case <-ctx.Done():
		require.FailNow(s.t, "no hangUp from the guest", "%v", ctx.Err())
	}
	return nil
}

// WaitTrickled returns the next candidate the guest trickled.
func (s *botSession) WaitTrickled(ctx context.Context) string {
	s.t.Helper()
	select {
	case c := <-s.trickled:
		return c
	case <-ctx.Done():
		require.FailNow(s.t, "no candidate trickled by the guest", "%v", ctx.Err())
	}
	return ""
}

// WaitMedia waits until the guest's audio (and video) reached the bot.
func (s *botSession) WaitMedia(ctx context.Context, video bool) {
	s.t.Helper()
	for kind, got := range map[string]chan struct{}{"audio": s.gotAudio, "video": s.gotVideo} {
		if kind == "video" && !video {
			continue
		}
		select {
		case <-got:
		case <-ctx.Done():
			require.FailNow(s.t, "no "+kind+" from the guest reached the bot", "%v", ctx.Err())
		}
	}
}

// WaitClosed waits until the guest's socket has closed.
func (s *botSession) WaitClosed(ctx context.Context) error {
	select {
	case <-s.closed:
		return nil
	case <-ctx.Done():
		return errors.New("the guest's socket is still open")
	}
}

// slowSTUN is a STUN server on loopback that answers every binding
// request late, with a made-up mapped address (127.0.0.2: on loopback, so
// that checks towards it stay on this machine, and other than the host's,
// so that the browser keeps the candidate): the browser's gathering
// outlasts the page's cap, and the server-reflexive candidate comes after
// the call.
type slowSTUN struct {
	conn   *net.UDPConn
	delay  time.Duration
	wg     sync.WaitGroup
	mu     sync.Mutex
	timers []*time.Timer
}

func newSlowSTUN(t *testing.T, delay time.Duration) *slowSTUN {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	s := &slowSTUN{conn: conn, delay: delay}
	s.wg.Go(s.serve)
	t.Cleanup(s.close)
	return s
}

// URL is the server's STUN URL, for hello's iceServers.
func (s *slowSTUN) URL() string { return "stun:" + s.conn.LocalAddr().String() }

func (s *slowSTUN) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		var req stun.Message
		if !stun.IsMessage(buf[:n]) || stun.Decode(buf[:n], &req) != nil || req.Type != stun.BindingRequest {
			continue
		}
		res, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: net.IPv4(127, 0, 0, 2), Port: from.Port}, stun.Fingerprint)
		if err != nil {
			continue
		}
		s.mu.Lock()
		s.timers = append(s.timers, time.AfterFunc(s.delay, func() { _, _ = s.conn.WriteToUDP(res.Raw, from) }))
		s.mu.Unlock()
	}
}

func (s *slowSTUN) close() {
	_ = s.conn.Close()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tm := range s.timers {
		tm.Stop()
	}
}
