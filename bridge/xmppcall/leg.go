package xmppcall

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/internal/opqueue"
	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/xmpp/qbsignal"
)

// Timings of the SDK's that a peer must keep to.
const (
	// resendEvery: a caller re-sends its `call` until answered
	// (dialingTimeInterval).
	resendEvery = 5 * time.Second
	// gatherWait bounds how long a description waits for host
	// candidates: they go in the SDP, because the SDK applies trickled
	// candidates only once its session is active.
	gatherWait = 2 * time.Second
	// sendTimeout bounds one signal's send.
	sendTimeout = 10 * time.Second
)

// The mute fields of an `update` (this bridge's convention: the SDK
// carries any fields an app puts there, and QuickBlox defines none).
const (
	fieldAudioMuted = "audio_muted"
	fieldVideoMuted = "video_muted"
)

// Leg is one QuickBlox session with one peer. Its methods never block:
// each is queued on the leg's operation queue; the network and the media
// session are used off it.
type Leg struct {
	m       *Manager
	id      leg.ID
	dir     leg.Direction
	peer    uint64
	session string
	// call is the session's call: its ids and call type go on every
	// signal of the session.
	call   qbsignal.Signal
	video  bool
	log    zerolog.Logger
	q      *opqueue.Queue
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// On the queue.
	events    leg.Events
	sess      *voip.Session
	active    bool // accepted (by either side)
	ended     bool
	remoteSet bool
	// pending are the peer's candidates that came before its SDP was set.
	pending []webrtc.ICECandidateInit
	// held are the bot's candidates not yet sent: an outbound leg holds
	// them until the peer accepts (the SDK ignores them before).
	held      []webrtc.ICECandidateInit
	preferred map[webrtc.RTPCodecType]bool
	offer     string // the call's SDP (inbound: the peer's; outbound: ours)
	ringTimer *time.Timer
	resend    *time.Ticker
	muted     [2]bool // what the bot last told the peer: audio, video
}

var _ leg.Leg = (*Leg)(nil)

func newLeg(m *Manager, lid leg.ID, dir leg.Direction, peer uint64, call qbsignal.Signal, log zerolog.Logger) *Leg {
	ctx, cancel := context.WithCancel(m.ctx)
	l := &Leg{
		m: m, id: lid, dir: dir, peer: peer, session: call.SessionID, call: call,
		video: call.CallType == qbsignal.CallVideo, q: opqueue.New(), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), preferred: map[webrtc.RTPCodecType]bool{},
		log: log.With().Str("leg", string(lid)).Uint64("peer", peer).Logger(),
	}
	if dir == leg.Inbound {
		l.offer = call.SDP
	}
	return l
}

// ID implements leg.Leg.
func (l *Leg) ID() leg.ID { return l.id }

// Kind implements leg.Leg.
func (l *Leg) Kind() leg.Kind { return leg.KindXMPP }

// Direction implements leg.Leg.
func (l *Leg) Direction() leg.Direction { return l.dir }

// Peer implements leg.Leg: the QuickBlox user id.
func (l *Leg) Peer() string { return fmt.Sprint(l.peer) }

// PeerID is the QuickBlox user id of the peer.
func (l *Leg) PeerID() uint64 { return l.peer }

// Video implements leg.Leg: a video call (callType 1).
func (l *Leg) Video() bool { return l.video }

// Done implements leg.Leg.
func (l *Leg) Done() <-chan struct{} { return l.done }

func (l *Leg) post(fn func()) { l.q.Post(fn) }

// send sends a signal of the session off the queue; a failure is logged
// (the SDK's timers end a session whose signals are lost).
func (l *Leg) send(sig qbsignal.Signal) {
	net := l.m.network()
	if net == nil {
		l.log.Warn().Str("type", string(sig.Type)).Msg("Not connected to the XMPP server: the signal is not sent")
		return
	}
	l.m.wg.Add(1)
	go func() {
		defer l.m.wg.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), sendTimeout)
		defer cancel()
		if err := net.Send(ctx, l.m.peerJID(l.peer), sig); err != nil {
			l.log.Warn().Err(err).Str("type", string(sig.Type)).Msg("Sending a QuickBlox signal")
		}
	}()
}

func (l *Leg) reply(t qbsignal.Type) qbsignal.Signal { return reply(l.call, t) }

// ring: an inbound call is rung at the host (on the queue), and given up
// after RingTimeout.
func (l *Leg) ring() {
	l.post(func() {
		l.events = l.m.host.Ringing(l)
		l.ringTimer = time.AfterFunc(l.m.cfg.RingTimeout, func() {
			l.post(func() {
				if !l.active {
					l.endWith(leg.End{Reason: leg.NoAnswer, By: leg.ByBot, Detail: "nobody answered the QuickBlox call"}, true)
				}
			})
		})
	})
}

// Answer implements leg.Leg: the bot accepts an inbound call (its answer
// with the bot's candidates in it).
func (l *Leg) Answer() {
	l.post(func() {
		if l.ended || l.active || l.dir != leg.Inbound {
			return
		}
		l.active = true
		if l.ringTimer != nil {
			l.ringTimer.Stop()
		}
		if err := l.newSession(); err != nil {
			l.fail(err)
			return
		}
		sess := l.sess
		offer := l.offer
		go func() {
			desc, err := l.answerOffer(sess, offer)
			l.post(func() {
				if l.ended {
					return
				}
				if err != nil {
					l.fail(err)
					return
				}
				accept := l.reply(qbsignal.TypeAccept)
				accept.SDP = desc.SDP
				accept.UserInfo = l.m.userInfo()
				l.send(accept)
				l.events.Answered(l)
				l.flushRemote()
			})
		}()
	})
}

// answerOffer applies the peer's offer, adds the bot's tracks, and makes
// the answer (off the queue).
func (l *Leg) answerOffer(sess *voip.Session, offer string) (webrtc.SessionDescription, error) {
	if err := sess.SetRemoteDescription(l.ctx, webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("the caller's offer: %w", err)
	}
	kinds := map[webrtc.RTPCodecType]webrtc.RTPCodecParameters{}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if codecs := sess.NegotiatedCodecs(kind); len(codecs) > 0 {
			kinds[kind] = codecs[0]
		}
	}
	if len(kinds) == 0 {
		return webrtc.SessionDescription{}, fmt.Errorf("the caller's offer has no audio or video format the bot takes")
	}
	if err := l.addOutbound(sess, kinds); err != nil {
		return webrtc.SessionDescription{}, err
	}
	if !l.q.Post(func() { l.remoteSet = true }) {
		return webrtc.SessionDescription{}, context.Canceled
	}
	return sess.CreateAnswer(l.ctx, gatherWait)
}

// addOutbound adds the bot's track of each kind and tells the
// conversation that media may be forwarded to the leg.
func (l *Leg) addOutbound(sess *voip.Session, kinds map[webrtc.RTPCodecType]webrtc.RTPCodecParameters) error {
	for kind, codec := range kinds {
		id := fmt.Sprintf("%s-%s", l.session, kind)
		if err := sess.AddOutbound(l.ctx, voip.NewOutboundTrack(codec.RTPCodecCapability, id, "voipbot")); err != nil {
			return fmt.Errorf("adding the %s track: %w", kind, err)
		}
	}
	l.post(func() {
		if !l.ended && l.events != nil {
			l.events.MediaReady(l, sess)
		}
	})
	return nil
}

// newSession makes the leg's media session (on the queue).
func (l *Leg) newSession() error {
	sess, err := l.m.media.NewSession(l.session, sessionEvents{l}, voip.SessionOptions{ICEServers: l.m.host.ICEServers(), GatherUntil: voip.GatherHosts})
	if err != nil {
		return fmt.Errorf("creating the media session: %w", err)
	}
	l.sess = sess
	return nil
}

// Start rings the peer of an outbound leg.
func (l *Leg) Start() {
	if l.dir == leg.Outbound {
		l.dial()
	}
}

// dial places an outbound call: the offer (with the bot's host
// candidates), re-sent every 5 s until the peer answers, for RingTimeout.
func (l *Leg) dial() {
	l.post(func() {
		if err := l.newSession(); err != nil {
			l.fail(err)
			return
		}
		sess := l.sess
		go func() {
			kinds := map[webrtc.RTPCodecType]webrtc.RTPCodecParameters{webrtc.RTPCodecTypeAudio: voip.AudioCodecs[0]}
			if l.video {
				kinds[webrtc.RTPCodecTypeVideo] = voip.VideoCodecs[0]
			}
			err := l.addOutbound(sess, kinds)
			var desc webrtc.SessionDescription
			if err == nil {
				desc, err = sess.CreateOffer(l.ctx, voip.OfferOptions{GatherWait: gatherWait})
			}
			l.post(func() {
				if l.ended {
					return
				}
				if err != nil {
					l.fail(fmt.Errorf("making the offer: %w", err))
					return
				}
				l.offer = desc.SDP
				l.sendCall()
				l.resend = time.NewTicker(resendEvery)
				go l.resendCalls(l.resend)
				l.ringTimer = time.AfterFunc(l.m.cfg.RingTimeout, func() {
					l.post(func() {
						if !l.active {
							l.endWith(leg.End{Reason: leg.NoAnswer, By: leg.ByBot, Detail: "the QuickBlox user did not answer"}, true)
						}
					})
				})
			})
		}()
	})
}

func (l *Leg) sendCall() {
	call := l.call
	call.SDP = l.offer
	call.UserInfo = l.m.userInfo()
	call.UserInfo["bandwidth"] = qbsignal.Text("0")
	l.send(call)
}

func (l *Leg) resendCalls(t *time.Ticker) {
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
			l.post(func() {
				if !l.active && !l.ended {
					l.sendCall()
				}
			})
		}
	}
}

// repeatedCall: the caller re-sent its call (with candidates in its SDP
// by now): candidates the bot has not had are taken from it.
func (l *Leg) repeatedCall(sig qbsignal.Signal) {
	l.post(func() {
		if l.dir != leg.Inbound || l.ended {
			return
		}
		l.addRemote(candidatesOf(sig.SDP))
	})
}

// candidatesOf lists an SDP's a=candidate lines, per media section.
func candidatesOf(sdp string) []webrtc.ICECandidateInit {
	var out []webrtc.ICECandidateInit
	section := -1
	var mid string
	for _, line := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "m="):
			section++
			mid = ""
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:") && section >= 0:
			idx := uint16(section)
			m := mid
			out = append(out, webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a="), SDPMid: &m, SDPMLineIndex: &idx})
		}
	}
	return out
}

// signal takes one signal of the session (on the queue).
func (l *Leg) signal(sig qbsignal.Signal) {
	l.post(func() {
		if l.ended {
			return
		}
		switch sig.Type {
		case qbsignal.TypeAccept:
			l.accepted(sig)
		case qbsignal.TypeReject:
			l.endWith(leg.End{Reason: leg.Declined, By: leg.ByPeer, Detail: "the QuickBlox user rejected the call"}, false)
		case qbsignal.TypeHangUp:
			l.endWith(leg.End{Reason: leg.Hangup, By: leg.ByPeer, Detail: "the QuickBlox user hung up"}, false)
		case qbsignal.TypeICECandidates:
			cands := make([]webrtc.ICECandidateInit, 0, len(sig.Candidates))
			for _, c := range sig.Candidates {
				ci := webrtc.ICECandidateInit{Candidate: c.Candidate}
				if c.SDPMid != "" {
					mid := c.SDPMid
					ci.SDPMid = &mid
				}
				if c.SDPMLineIndex >= 0 {
					idx := uint16(c.SDPMLineIndex)
					ci.SDPMLineIndex = &idx
				}
				cands = append(cands, ci)
			}
			l.addRemote(cands)
		case qbsignal.TypeUpdate:
			l.update(sig)
		}
	})
}

// accepted: the peer answered the bot's call.
func (l *Leg) accepted(sig qbsignal.Signal) {
	if l.dir != leg.Outbound || l.active {
		return
	}
	l.active = true
	l.ringTimer.Stop()
	l.resend.Stop()
	sess := l.sess
	go func() {
		err := sess.SetRemoteDescription(l.ctx, webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sig.SDP})
		l.post(func() {
			if l.ended {
				return
			}
			if err != nil {
				l.fail(fmt.Errorf("the QuickBlox user's answer: %w", err))
				return
			}
			l.remoteSet = true
			l.events.Answered(l)
			l.flushRemote()
			l.sendHeld()
		})
	}()
}

// update: the peer's mute state (this bridge's fields), or an ICE restart
// offer (not taken: the SDK closes such a session after 30 s).
func (l *Leg) update(sig qbsignal.Signal) {
	if sig.Reason == "reconnect" {
		l.log.Info().Msg("The QuickBlox user asks for an ICE restart, which the bot does not do yet")
		return
	}
	audio, aok := muteField(sig, fieldAudioMuted)
	video, vok := muteField(sig, fieldVideoMuted)
	if !aok && !vok {
		return
	}
	l.events.PeerMuted(l, audio, video)
}

// muteField reads a mute field from the update's top-level fields or its
// userInfo.
func muteField(sig qbsignal.Signal, name string) (muted, ok bool) {
	for _, f := range []qbsignal.Fields{sig.Custom, sig.UserInfo} {
		if v, found := f[name]; found && !v.IsObject() {
			return v.Text == "true" || v.Text == "1", true
		}
	}
	return false, false
}

// addRemote adds the peer's candidates once its SDP is set.
func (l *Leg) addRemote(cands []webrtc.ICECandidateInit) {
	if len(cands) == 0 {
		return
	}
	if !l.remoteSet || l.sess == nil {
		l.pending = append(l.pending, cands...)
		return
	}
	sess := l.sess
	go func() {
		if err := sess.AddRemoteCandidates(l.ctx, cands); err != nil {
			l.log.Debug().Err(err).Msg("Adding the QuickBlox user's candidates")
		}
	}()
}

func (l *Leg) flushRemote() {
	cands := l.pending
	l.pending = nil
	l.addRemote(cands)
}

// localCandidates: the bot's candidates found after its description; an
// outbound leg holds them until the peer accepts.
func (l *Leg) localCandidates(cands []webrtc.ICECandidateInit) {
	if len(cands) == 0 || l.ended {
		return
	}
	if l.dir == leg.Outbound && !l.remoteSet {
		l.held = append(l.held, cands...)
		return
	}
	sig := l.reply(qbsignal.TypeICECandidates)
	for _, c := range cands {
		qc := qbsignal.Candidate{Candidate: c.Candidate, SDPMLineIndex: -1}
		if c.SDPMid != nil {
			qc.SDPMid = *c.SDPMid
		}
		if c.SDPMLineIndex != nil {
			qc.SDPMLineIndex = int(*c.SDPMLineIndex)
		}
		sig.Candidates = append(sig.Candidates, qc)
	}
	l.send(sig)
}

func (l *Leg) sendHeld() {
	held := l.held
	l.held = nil
	l.localCandidates(held)
}

// Hangup implements leg.Leg: a ringing inbound call is rejected, any
// other hung up.
func (l *Leg) Hangup(r leg.Reason, detail string) {
	l.post(func() { l.endWith(leg.End{Reason: r, By: leg.ByBot, Detail: detail}, true) })
}

// Hold implements leg.Leg: QuickBlox has no hold; the peer is told the
// bot's side is muted meanwhile.
func (l *Leg) Hold(on bool) {
	l.post(func() { l.tellMuted(on, on && l.video) })
}

// SetMuted implements leg.Leg: the other party's microphone and camera,
// sent as an update.
func (l *Leg) SetMuted(audio, video bool) {
	l.post(func() { l.tellMuted(audio, video) })
}

func (l *Leg) tellMuted(audio, video bool) {
	if l.ended || !l.active || l.muted == [2]bool{audio, video} {
		return
	}
	l.muted = [2]bool{audio, video}
	fields := qbsignal.Fields{fieldAudioMuted: qbsignal.Text(fmt.Sprint(audio)), fieldVideoMuted: qbsignal.Text(fmt.Sprint(video))}
	update := l.reply(qbsignal.TypeUpdate)
	// Top level, where the SDK's update() puts an app's fields, and in
	// userInfo, the only place its update listener reads.
	update.Custom = fields
	update.UserInfo = fields
	l.send(update)
}

func (l *Leg) fail(err error) {
	l.log.Warn().Err(err).Msg("The QuickBlox call failed")
	l.endWith(leg.End{Reason: leg.Failed, By: leg.ByBot, Detail: err.Error()}, true)
}

// endWith ends the leg (on the queue); tell: the peer is told (a reject
// for a call the bot never accepted, else a hangUp).
func (l *Leg) endWith(e leg.End, tell bool) {
	if l.ended {
		return
	}
	l.ended = true
	if l.ringTimer != nil {
		l.ringTimer.Stop()
	}
	if l.resend != nil {
		l.resend.Stop()
	}
	if tell && (l.dir == leg.Inbound || l.offer != "") { // a call never sent needs no goodbye
		t := qbsignal.TypeHangUp
		if l.dir == leg.Inbound && !l.active {
			t = qbsignal.TypeReject
		}
		sig := l.reply(t)
		sig.UserInfo = l.m.userInfo()
		l.send(sig)
	}
	l.cancel()
	if l.sess != nil {
		if err := l.sess.Close(); err != nil {
			l.log.Debug().Err(err).Msg("Closing the media session")
		}
	}
	l.m.forget(l)
	l.log.Info().Str("reason", string(e.Reason)).Str("by", string(e.By)).Str("detail", e.Detail).Msg("The QuickBlox call ended")
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
	s.l.post(func() { s.l.localCandidates(cands) })
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
			s.l.endWith(leg.End{Reason: leg.Failed, By: leg.ByBot, Detail: "the media connection failed"}, true)
		}
	})
}

func (sessionEvents) OnNegotiationNeeded() {}
