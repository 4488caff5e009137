package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/internal/opqueue"
	"github.com/voipbot/voipbot/voip"
)

const (
	// gatherWait bounds how long the answer waits for the bot's host
	// candidates (they go in it; the rest trickle).
	gatherWait = 2 * time.Second
	// writeTimeout bounds one message's write to the guest.
	writeTimeout = 10 * time.Second
	// idleTimeout ends a socket whose guest never calls.
	idleTimeout = 10 * time.Minute
	// pingEvery keeps the socket alive through proxies that close idle
	// connections (the page sends nothing during a call); a ping not
	// answered within pingEvery ends it.
	pingEvery = 25 * time.Second
)

// Leg is one guest: their socket, and once they call, their call. Its
// methods never block: each is queued on the leg's operation queue.
type Leg struct {
	m      *Manager
	id     leg.ID
	link   Link
	conn   *websocket.Conn
	log    zerolog.Logger
	q      *opqueue.Queue
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	outMu  sync.Mutex
	out    chan []byte // to the writer; closed (outClosed) at the end
	closed bool
	code   websocket.StatusCode
	why    string

	// On the queue.
	events    leg.Events
	session   string
	name      string
	video     bool
	offer     string
	sess      *voip.Session
	active    bool
	ended     bool
	remoteSet bool
	pending   []webrtc.ICECandidateInit
	preferred map[webrtc.RTPCodecType]bool
	timer     *time.Timer // idle, then ringing
	muted     [2]bool
}

var _ leg.Leg = (*Leg)(nil)

func newLeg(m *Manager, lid leg.ID, link Link, conn *websocket.Conn, log zerolog.Logger) *Leg {
	ctx, cancel := context.WithCancel(m.ctx)
	return &Leg{
		m: m, id: lid, link: link, conn: conn, q: opqueue.New(), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), out: make(chan []byte, 64), preferred: map[webrtc.RTPCodecType]bool{},
		log: log.With().Str("leg", string(lid)).Logger(), code: websocket.StatusNormalClosure,
	}
}

// ID implements leg.Leg.
func (l *Leg) ID() leg.ID { return l.id }

// Kind implements leg.Leg.
func (l *Leg) Kind() leg.Kind { return leg.KindGuest }

// Direction implements leg.Leg: the guest calls.
func (l *Leg) Direction() leg.Direction { return leg.Inbound }

// Peer implements leg.Leg: the name the guest gave, marked as a guest.
func (l *Leg) Peer() string { return "guest " + fmt.Sprintf("%q", l.name) }

// Name is the name the guest typed.
func (l *Leg) Name() string { return l.name }

// Link is the link the guest came through.
func (l *Leg) Link() Link { return l.link }

// Video implements leg.Leg.
func (l *Leg) Video() bool { return l.video }

// Done implements leg.Leg.
func (l *Leg) Done() <-chan struct{} { return l.done }

func (l *Leg) post(fn func()) { l.q.Post(fn) }

// run serves the socket: hello, then the guest's messages onto the
// queue, until the socket or the leg ends.
func (l *Leg) run(ctx context.Context) {
	writerDone := make(chan struct{})
	go l.writer(writerDone)
	go l.pinger()
	var servers []iceServer
	for _, s := range l.m.host.ICEServers() {
		is := iceServer{URLs: s.URLs, Username: s.Username}
		if c, ok := s.Credential.(string); ok {
			is.Credential = c
		}
		servers = append(servers, is)
	}
	l.sendJSON(hello{Type: typeHello, Video: l.link.Video, Title: l.link.Title, ICEServers: servers})
	l.post(func() {
		l.timer = time.AfterFunc(idleTimeout, func() {
			l.post(func() {
				if l.session == "" {
					l.endWith(leg.End{Reason: leg.Hangup, By: leg.ByBot, Detail: "the guest never called"}, websocket.StatusNormalClosure)
				}
			})
		})
	})
	for {
		_, data, err := l.conn.Read(ctx)
		if err != nil {
			detail := "the guest left"
			if websocket.CloseStatus(err) == websocket.StatusMessageTooBig {
				detail = "the guest sent a message over the size limit"
			}
			l.post(func() {
				l.endWith(leg.End{Reason: leg.Hangup, By: leg.ByPeer, Detail: detail}, websocket.StatusNormalClosure)
			})
			break
		}
		msg, err := decode(data)
		if err != nil {
			l.post(func() { l.protocolError(err) })
			break
		}
		l.post(func() { l.handle(msg) })
	}
	<-l.done
	<-writerDone
}

// pinger pings the guest until the leg ends.
func (l *Leg) pinger() {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(l.ctx, pingEvery)
			err := l.conn.Ping(ctx)
			cancel()
			if err != nil && l.ctx.Err() == nil {
				l.log.Info().Err(err).Msg("The guest's socket did not answer a ping")
				_ = l.conn.CloseNow() // the read loop ends the leg
				return
			}
		}
	}
}

// writer writes what the leg sends, in order, then closes the socket.
func (l *Leg) writer(done chan<- struct{}) {
	defer close(done)
	for b := range l.out {
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		err := l.conn.Write(ctx, websocket.MessageText, b)
		cancel()
		if err != nil {
			l.log.Debug().Err(err).Msg("Writing to the guest")
			break
		}
	}
	l.outMu.Lock()
	code, why := l.code, l.why
	l.outMu.Unlock()
	_ = l.conn.Close(code, why)
	for range l.out { //nolint:revive // drain what came after a failed write
	}
}

func (l *Leg) sendJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		l.log.Error().Err(err).Msg("Encoding a message to the guest")
		return
	}
	l.outMu.Lock()
	defer l.outMu.Unlock()
	if l.closed {
		return
	}
	select {
	case l.out <- b:
	default:
		l.log.Warn().Msg("The guest reads too slowly: a message is dropped")
	}
}

// closeOut lets the writer finish with what is queued and close the
// socket with code.
func (l *Leg) closeOut(code websocket.StatusCode, why string) {
	l.outMu.Lock()
	defer l.outMu.Unlock()
	if l.closed {
		return
	}
	l.closed, l.code, l.why = true, code, why
	close(l.out)
}

// protocolError: the guest sent what the protocol does not allow.
func (l *Leg) protocolError(err error) {
	if l.ended {
		return
	}
	l.log.Info().Err(err).Msg("Closing a guest's socket: a message the protocol does not allow")
	l.sendJSON(message{Type: typeError, Error: err.Error()})
	l.endWith(leg.End{Reason: leg.Failed, By: leg.ByPeer, Detail: err.Error()}, websocket.StatusPolicyViolation)
}

// handle takes one message of the guest's (on the queue).
func (l *Leg) handle(msg message) {
	if l.ended {
		return
	}
	if msg.Type == typeCall {
		if l.session != "" {
			l.protocolError(fmt.Errorf("%w: one call per socket", errProtocol))
			return
		}
		l.session, l.name, l.offer = msg.SessionID, msg.UserInfo["name"], msg.SDP
		if l.name == "" {
			l.name = "Guest"
		}
		l.video = l.link.Video && msg.CallType == callVideo
		l.timer.Stop()
		l.events = l.m.host.Ringing(l)
		l.timer = time.AfterFunc(l.m.cfg.RingTimeout, func() {
			l.post(func() {
				if !l.active {
					l.endWith(leg.End{Reason: leg.NoAnswer, By: leg.ByBot, Detail: "nobody answered"}, websocket.StatusNormalClosure)
				}
			})
		})
		return
	}
	if msg.SessionID != l.session {
		l.protocolError(fmt.Errorf("%w: no call %q on this socket", errProtocol, msg.SessionID))
		return
	}
	switch msg.Type {
	case typeICECandidates:
		cands := make([]webrtc.ICECandidateInit, 0, len(msg.ICECandidates))
		for _, c := range msg.ICECandidates {
			cands = append(cands, c.init())
		}
		l.addRemote(cands)
	case typeUpdate:
		a, aok := msg.UserInfo["audio_muted"]
		v, vok := msg.UserInfo["video_muted"]
		if (aok || vok) && l.events != nil {
			l.events.PeerMuted(l, a == "true", v == "true")
		}
	case typeHangUp:
		l.endWith(leg.End{Reason: leg.Hangup, By: leg.ByPeer, Detail: "the guest hung up"}, websocket.StatusNormalClosure)
	}
}

// Answer implements leg.Leg: the guest's call is accepted (someone in the
// room answered, or the bot's own source takes it).
func (l *Leg) Answer() {
	l.post(func() {
		if l.ended || l.active || l.session == "" {
			return
		}
		l.active = true
		l.timer.Stop()
		sess, err := l.m.media.NewSession(l.session, sessionEvents{l}, voip.SessionOptions{ICEServers: l.m.host.ICEServers(), GatherUntil: voip.GatherHosts})
		if err != nil {
			l.fail(fmt.Errorf("creating the media session: %w", err))
			return
		}
		l.sess = sess
		offer := l.offer
		go func() {
			desc, err := l.answer(sess, offer)
			l.post(func() {
				if l.ended {
					return
				}
				if err != nil {
					l.fail(err)
					return
				}
				l.sendJSON(message{Type: typeAccept, SessionID: l.session, SDP: desc.SDP, UserInfo: map[string]string{"name": l.link.Title}})
				l.events.Answered(l)
				cands := l.pending
				l.pending = nil
				l.addRemote(cands)
			})
		}()
	})
}

// answer applies the guest's offer, adds the bot's tracks and makes the
// answer (off the queue).
func (l *Leg) answer(sess *voip.Session, offer string) (webrtc.SessionDescription, error) {
	if err := sess.SetRemoteDescription(l.ctx, webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("the guest's offer: %w", err)
	}
	kinds := 0
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		codecs := sess.NegotiatedCodecs(kind)
		if len(codecs) == 0 || (kind == webrtc.RTPCodecTypeVideo && !l.link.Video) {
			continue
		}
		kinds++
		id := fmt.Sprintf("%s-%s", l.session, kind)
		if err := sess.AddOutbound(l.ctx, voip.NewOutboundTrack(codecs[0].RTPCodecCapability, id, "voipbot")); err != nil {
			return webrtc.SessionDescription{}, fmt.Errorf("adding the %s track: %w", kind, err)
		}
	}
	if kinds == 0 {
		return webrtc.SessionDescription{}, errors.New("the guest's offer has no audio format the bot takes")
	}
	if !l.q.Post(func() {
		l.remoteSet = true
		if !l.ended {
			l.events.MediaReady(l, sess)
		}
	}) {
		return webrtc.SessionDescription{}, context.Canceled
	}
	return sess.CreateAnswer(l.ctx, gatherWait)
}

func (l *Leg) addRemote(cands []webrtc.ICECandidateInit) {
	if len(cands) == 0 {
		return
	}
	if !l.remoteSet {
		l.pending = append(l.pending, cands...)
		return
	}
	sess := l.sess
	go func() {
		if err := sess.AddRemoteCandidates(l.ctx, cands); err != nil {
			l.log.Debug().Err(err).Msg("Adding the guest's candidates")
		}
	}()
}

// Hangup implements leg.Leg: the guest is told why (a reject while it
// rings), and the socket closed.
func (l *Leg) Hangup(r leg.Reason, detail string) {
	l.post(func() { l.endWith(leg.End{Reason: r, By: leg.ByBot, Detail: detail}, websocket.StatusNormalClosure) })
}

// Hold implements leg.Leg: a guest has no hold; it is shown as muted.
func (l *Leg) Hold(on bool) { l.post(func() { l.tellMuted(on, on && l.video) }) }

// SetMuted implements leg.Leg: the other party's microphone and camera.
func (l *Leg) SetMuted(audio, video bool) { l.post(func() { l.tellMuted(audio, video) }) }

func (l *Leg) tellMuted(audio, video bool) {
	if l.ended || !l.active || l.muted == [2]bool{audio, video} {
		return
	}
	l.muted = [2]bool{audio, video}
	l.sendJSON(message{Type: typeUpdate, SessionID: l.session, UserInfo: map[string]string{
		"audio_muted": fmt.Sprint(audio), "video_muted": fmt.Sprint(video),
	}})
}

func (l *Leg) fail(err error) {
	l.log.Warn().Err(err).Msg("The guest's call failed")
	l.endWith(leg.End{Reason: leg.Failed, By: leg.ByBot, Detail: err.Error()}, websocket.StatusInternalError)
}

// reasons are the protocol's words for why a call ended.
var reasons = map[leg.Reason]string{
	leg.Declined: "declined", leg.Busy: "busy", leg.NoAnswer: "no_answer",
	leg.Hangup: "hangup", leg.Failed: "failed", leg.Shutdown: "shutdown",
}

// endWith ends the leg (on the queue): the guest is told why, unless it
// is the one that ended it, and the socket closes with code.
func (l *Leg) endWith(e leg.End, code websocket.StatusCode) {
	if l.ended {
		return
	}
	l.ended = true
	if l.timer != nil {
		l.timer.Stop()
	}
	if e.By == leg.ByBot && l.session != "" {
		t := typeHangUp
		if !l.active {
			t = typeReject
		}
		l.sendJSON(message{Type: t, SessionID: l.session, UserInfo: map[string]string{"reason": reasons[e.Reason], "detail": e.Detail}})
	}
	l.closeOut(code, e.Detail)
	l.cancel()
	if l.sess != nil {
		if err := l.sess.Close(); err != nil {
			l.log.Debug().Err(err).Msg("Closing the media session")
		}
	}
	l.log.Info().Str("reason", string(e.Reason)).Str("by", string(e.By)).Str("detail", e.Detail).Msg("The guest's call ended")
	if l.events != nil {
		l.events.Ended(l, e)
	}
	close(l.done)
	l.q.Close()
}

// sessionEvents is the media session's handler: every event goes onto
// the leg's queue.
type sessionEvents struct{ l *Leg }

func (s sessionEvents) OnLocalCandidates(cands []webrtc.ICECandidateInit, _ bool) {
	s.l.post(func() {
		if s.l.ended || len(cands) == 0 {
			return
		}
		msg := message{Type: typeICECandidates, SessionID: s.l.session}
		for _, c := range cands {
			msg.ICECandidates = append(msg.ICECandidates, candidateOf(c))
		}
		s.l.sendJSON(msg)
	})
}

func (s sessionEvents) OnTrack(t *voip.InboundTrack) {
	s.l.post(func() {
		if s.l.ended || s.l.events == nil || s.l.preferred[t.Kind] {
			return
		}
		s.l.preferred[t.Kind] = true
		s.l.events.Preferred(s.l, t)
	})
}

func (s sessionEvents) OnConnectionState(state webrtc.PeerConnectionState) {
	s.l.post(func() {
		if s.l.ended || s.l.events == nil {
			return
		}
		switch state {
		case webrtc.PeerConnectionStateConnected:
			s.l.events.Connected(s.l)
		case webrtc.PeerConnectionStateFailed:
			s.l.endWith(leg.End{Reason: leg.Failed, By: leg.ByBot, Detail: "the media connection failed"}, websocket.StatusNormalClosure)
		}
	})
}

func (sessionEvents) OnNegotiationNeeded() {}
