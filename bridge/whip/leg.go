package whip

import (
	"context"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/internal/opqueue"
	"github.com/voipbot/voipbot/voip"
)

// Leg is one WHIP or WHEP session. Its methods never block: each is queued
// on the leg's operation queue.
type Leg struct {
	m        *Manager
	id       leg.ID
	link     Link
	resource string // the session URL's last segment: 128 random bits
	etag     string
	ufrag    string // the client's ICE username fragment
	video    bool
	log      zerolog.Logger
	q        *opqueue.Queue
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	sess     *voip.Session

	// On the queue.
	events    leg.Events
	answered  bool
	connected bool
	ended     bool
	timer     *time.Timer
	preferred map[webrtc.RTPCodecType]*voip.InboundTrack
}

var _ leg.Leg = (*Leg)(nil)

func newLeg(m *Manager, link Link, info offerInfo) *Leg {
	ctx, cancel := context.WithCancel(m.ctx)
	prefix := "whip-"
	if link.Egress {
		prefix = "whep-"
	}
	id := leg.ID(prefix + randomHex(8))
	return &Leg{
		m: m, id: id, link: link, resource: randomHex(16), etag: `"` + randomHex(8) + `"`,
		ufrag: info.ufrag, video: link.Video && info.video,
		log: m.log.With().Str("leg", string(id)).Str("link", link.ID).Logger(),
		q:   opqueue.New(), ctx: ctx, cancel: cancel, done: make(chan struct{}),
		preferred: map[webrtc.RTPCodecType]*voip.InboundTrack{},
	}
}

// ID implements leg.Leg.
func (l *Leg) ID() leg.ID { return l.id }

// Kind implements leg.Leg.
func (l *Leg) Kind() leg.Kind {
	if l.link.Egress {
		return leg.KindWHEP
	}
	return leg.KindWHIP
}

// Direction implements leg.Leg: the client called.
func (l *Leg) Direction() leg.Direction { return leg.Inbound }

// Peer implements leg.Leg: the kind of client and its token's id (a client
// has no name of its own).
func (l *Leg) Peer() string {
	if l.link.Egress {
		return "WHEP player (token " + l.link.ID + ")"
	}
	return "WHIP publisher (token " + l.link.ID + ")"
}

// Link is what the session's token opens.
func (l *Leg) Link() Link { return l.link }

// Video implements leg.Leg.
func (l *Leg) Video() bool { return l.video }

// Done implements leg.Leg.
func (l *Leg) Done() <-chan struct{} { return l.done }

func (l *Leg) post(fn func()) { l.q.Post(fn) }

// start makes the media session and the answer (Start's goroutine, before
// the leg is known to anyone).
func (l *Leg) start(ctx context.Context, offer string, servers []webrtc.ICEServer) (webrtc.SessionDescription, error) {
	sess, err := l.m.media.NewSession(string(l.id), sessionEvents{l}, voip.SessionOptions{ICEServers: servers})
	if err != nil {
		l.close()
		return webrtc.SessionDescription{}, fmt.Errorf("creating the media session: %w", err)
	}
	l.sess = sess
	fail := func(err error) (webrtc.SessionDescription, error) {
		l.close()
		return webrtc.SessionDescription{}, err
	}
	if err := sess.SetRemoteDescription(ctx, webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(fmt.Errorf("%w: %s", ErrOffer, err.Error()))
	}
	kinds := 0
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		codecs := sess.NegotiatedCodecs(kind)
		if len(codecs) == 0 || (kind == webrtc.RTPCodecTypeVideo && !l.video) {
			continue
		}
		kinds++
		if l.link.Egress {
			track := voip.NewOutboundTrack(codecs[0].RTPCodecCapability, fmt.Sprintf("%s-%s", l.id, kind), "voipbot")
			if err := sess.AddOutbound(ctx, track); err != nil {
				return fail(fmt.Errorf("adding the %s track: %w", kind, err))
			}
		}
	}
	if kinds == 0 {
		return fail(fmt.Errorf("%w: no audio format the bot takes (Opus, G.711)", ErrOffer))
	}
	desc, err := sess.CreateAnswer(ctx, l.m.cfg.GatherWait)
	if err != nil {
		return fail(fmt.Errorf("making the answer: %w", err))
	}
	return desc, nil
}

// close ends a leg that never rang (its offer failed), on the queue:
// the session's events may be queued there already.
func (l *Leg) close() {
	l.post(func() {
		if l.ended {
			return
		}
		l.ended = true
		l.cancel()
		if l.sess != nil {
			_ = l.sess.Close()
		}
		close(l.done)
		l.q.Close()
	})
}

// ring hands the leg to the host (on the queue, once answered over HTTP).
func (l *Leg) ring() {
	if l.ended {
		return
	}
	l.events = l.m.host.Ringing(l)
	l.timer = time.AfterFunc(l.m.cfg.RingTimeout, func() {
		l.post(func() {
			if !l.answered {
				l.endWith(leg.End{Reason: leg.NoAnswer, By: leg.ByBot, Detail: "nobody answered"})
			}
		})
	})
}

// Answer implements leg.Leg: the room answered (or the call was joined):
// the media is handed over, and from now on forwarded.
func (l *Leg) Answer() {
	l.post(func() {
		if l.ended || l.answered || l.events == nil {
			return
		}
		l.answered = true
		if l.timer != nil {
			l.timer.Stop()
		}
		l.events.MediaReady(l, l.sess)
		for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if t := l.preferred[kind]; t != nil {
				l.events.Preferred(l, t)
			}
		}
		l.events.Answered(l)
		if l.connected {
			l.events.Connected(l)
		}
	})
}

// Hangup implements leg.Leg: the session's media is closed (WHIP has no
// way to tell the client why; its connection ends).
func (l *Leg) Hangup(r leg.Reason, detail string) {
	l.post(func() { l.endWith(leg.End{Reason: r, By: leg.ByBot, Detail: detail}) })
}

// Hold implements leg.Leg: WHIP carries no hold; nothing changes.
func (l *Leg) Hold(bool) {}

// SetMuted implements leg.Leg: WHIP carries no mute signalling.
func (l *Leg) SetMuted(bool, bool) {}

// patch takes a PATCH: trickled candidates (off the queue: the session
// has its own).
func (l *Leg) patch(ctx context.Context, ifMatch, body string) error {
	switch ifMatch {
	case "", l.etag:
	case "*":
		return fmt.Errorf("%w (If-Match: * asks for one)", ErrRestart)
	default:
		return fmt.Errorf("%w: the session's is %s", ErrPrecondition, l.etag)
	}
	f, err := parseFrag(body)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrOffer, err.Error())
	}
	if (f.ufrag != "" && f.ufrag != l.ufrag) || (f.ufrag == "" && f.pwd != "") {
		return fmt.Errorf("%w (new ICE credentials)", ErrRestart)
	}
	if len(f.candidates) == 0 {
		return nil
	}
	select {
	case <-l.done:
		return ErrNoSession
	default:
	}
	if err := l.sess.AddRemoteCandidates(ctx, f.candidates); err != nil {
		return fmt.Errorf("%w: %s", ErrOffer, err.Error())
	}
	return nil
}

// endWith ends the leg (on the queue).
func (l *Leg) endWith(e leg.End) {
	if l.ended {
		return
	}
	l.ended = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.m.forget(l)
	l.cancel()
	if err := l.sess.Close(); err != nil {
		l.log.Debug().Err(err).Msg("Closing the media session")
	}
	l.log.Info().Str("reason", string(e.Reason)).Str("by", string(e.By)).Str("detail", e.Detail).Msg("WHIP session ended")
	if l.events != nil {
		l.events.Ended(l, e)
	}
	close(l.done)
	l.q.Close()
}

// sessionEvents is the media session's handler: every event goes onto
// the leg's queue.
type sessionEvents struct{ l *Leg }

// OnLocalCandidates: every candidate is in the answer already (a WHIP
// server cannot trickle to its client); late ones are let go.
func (sessionEvents) OnLocalCandidates([]webrtc.ICECandidateInit, bool) {}

func (s sessionEvents) OnTrack(t *voip.InboundTrack) {
	s.l.post(func() {
		l := s.l
		if l.ended || l.preferred[t.Kind] != nil {
			return
		}
		l.preferred[t.Kind] = t
		if l.answered {
			l.events.Preferred(l, t)
		}
	})
}

func (s sessionEvents) OnConnectionState(state webrtc.PeerConnectionState) {
	s.l.post(func() {
		l := s.l
		if l.ended {
			return
		}
		switch state {
		case webrtc.PeerConnectionStateConnected:
			l.connected = true
			if l.answered {
				l.events.Connected(l)
			}
		case webrtc.PeerConnectionStateFailed:
			l.endWith(leg.End{Reason: leg.Failed, By: leg.ByBot, Detail: "the media connection failed"})
		case webrtc.PeerConnectionStateClosed:
			l.endWith(leg.End{Reason: leg.Hangup, By: leg.ByPeer, Detail: "the client closed the connection"})
		}
	})
}

func (sessionEvents) OnNegotiationNeeded() {}
