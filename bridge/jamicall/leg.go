package jamicall

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/internal/opqueue"
	"github.com/voipbot/voipbot/jami/connect"
	"github.com/voipbot/voipbot/jami/media"
	"github.com/voipbot/voipbot/jami/sip"
)

// Leg is one call with a Jami device. Its methods never block: each is
// queued on the leg's operation queue, and the slow parts (the DHT, ICE,
// SIP transactions) run off it and post their outcome back.
type Leg struct {
	m      *Manager
	id     leg.ID
	dir    leg.Direction
	peer   string // the Jami account
	video  bool
	events leg.Events
	log    zerolog.Logger
	q      *opqueue.Queue
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// Set once, before the leg is shared (inbound) or on its queue.
	dev      connect.Device
	conn     *sip.Conn
	incoming *sip.IncomingCall
	dialog   *sip.Dialog
	session  *media.Session
	media    *mediaLeg

	// On the queue.
	started, answering, answered, ended bool
	holding                             bool
	created                             time.Time

	mu     sync.Mutex // guards what describe reads
	status string
}

var _ leg.Leg = (*Leg)(nil)

func newLeg(m *Manager, id leg.ID, dir leg.Direction, peer string, video bool) *Leg {
	ctx, cancel := context.WithCancel(m.ctx)
	return &Leg{
		m: m, id: id, dir: dir, peer: peer, video: video, q: opqueue.New(), ctx: ctx, cancel: cancel,
		done:    make(chan struct{}),
		log:     m.log.With().Str("leg", string(id)).Str("jami_account", peer).Str("direction", string(dir)).Logger(),
		created: time.Now(),
		status:  "ringing",
	}
}

// ID implements leg.Leg.
func (l *Leg) ID() leg.ID { return l.id }

// Kind implements leg.Leg.
func (l *Leg) Kind() leg.Kind { return leg.KindJami }

// Direction implements leg.Leg.
func (l *Leg) Direction() leg.Direction { return l.dir }

// Peer implements leg.Leg: the Jami account.
func (l *Leg) Peer() string { return l.peer }

// Video implements leg.Leg.
func (l *Leg) Video() bool { return l.video }

// Done implements leg.Leg.
func (l *Leg) Done() <-chan struct{} { return l.done }

// Expires is when an outbound leg stops ringing.
func (l *Leg) Expires() time.Time { return l.created.Add(l.m.cfg.RingTimeout) }

// Describe is a line for the status command.
func (l *Leg) Describe() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("Jami %s (%s, %s)", l.peer, l.dir, l.status)
}

func (l *Leg) setStatus(s string) {
	l.mu.Lock()
	l.status = s
	l.mu.Unlock()
}

func (l *Leg) post(fn func()) { l.q.Post(fn) }

// Start rings the account's devices (an outbound leg).
func (l *Leg) Start() {
	l.post(func() {
		if l.started || l.ended || l.dir != leg.Outbound {
			return
		}
		l.started = true
		go l.dial()
	})
}

// fork is one device rung by an outbound leg.
type fork struct {
	dev     connect.Device
	conn    *sip.Conn
	session *media.Session
	dialog  *sip.Dialog
	answer  []byte
	err     error
}

// dial rings every device of the account, off the queue; the first that
// answers wins and the others are cancelled.
func (l *Leg) dial() {
	ctx, cancel := context.WithTimeout(l.ctx, l.m.cfg.RingTimeout)
	defer cancel()
	acc, err := parseAccount(l.peer)
	if err == nil {
		var devs []connect.Device
		if devs, err = l.m.net.Devices(ctx, acc); err == nil {
			var won *fork
			won, err = l.ring(ctx, devs)
			if won != nil {
				l.post(func() { l.onAnswered(won) })
				return
			}
		}
	}
	l.post(func() { l.endWith(endOfDialError(ctx, err)) })
}

// ring INVITEs each device at once and returns the first that answered;
// the others are cancelled (a device that answers anyway is hung up).
func (l *Leg) ring(ctx context.Context, devs []connect.Device) (*fork, error) {
	fctx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	results := make(chan *fork, len(devs))
	for _, dev := range devs {
		go func() { results <- l.ringDevice(fctx, dev) }()
	}
	var won *fork
	var errs []error
	for range devs {
		f := <-results
		switch {
		case f.err == nil && won == nil:
			won = f
			cancelAll()
		case f.err == nil:
			// A second device answered before its CANCEL: hang it up.
			go func() { _ = f.dialog.Bye(context.WithoutCancel(ctx)); l.m.linger(f.conn); _ = f.session.Close() }()
		default:
			errs = append(errs, f.err)
			if f.session != nil {
				_ = f.session.Close()
			}
			l.m.linger(f.conn)
		}
	}
	if won != nil {
		return won, nil
	}
	return nil, pickError(errs)
}

// ringDevice opens a SIP channel to one device and INVITEs it.
func (l *Leg) ringDevice(ctx context.Context, dev connect.Device) *fork {
	f := &fork{dev: dev}
	_, ch, err := l.m.net.OpenSIP(ctx, dev, l.video)
	if err != nil {
		f.err = fmt.Errorf("connecting to device %s: %w", dev.ID, err)
		return f
	}
	f.conn = sip.NewConn(ch, l.m.sipConfig(dev))
	if f.session, err = l.newSession(l.video); err != nil {
		f.err = err
		return f
	}
	offer, err := f.session.Offer(ctx)
	if err != nil {
		f.err = fmt.Errorf("making the SDP offer: %w", err)
		return f
	}
	f.dialog, f.answer, f.err = f.conn.Invite(ctx, offer, func(code int) {
		if code == 180 {
			l.setStatus("ringing on a device")
		}
	})
	return f
}

func (l *Leg) newSession(video bool) (*media.Session, error) {
	ips := l.m.net.ICEAddresses()
	loop := false
	for _, ip := range ips {
		loop = loop || ip.IsLoopback()
	}
	s, err := media.NewSession(media.Options{Audio: true, Video: video, IPs: ips, IncludeLoopback: loop, Log: l.log})
	if err != nil {
		return nil, fmt.Errorf("making the media session: %w", err)
	}
	return s, nil
}

// onAnswered: a device answered our INVITE (on the queue).
func (l *Leg) onAnswered(f *fork) {
	if l.ended {
		go func() { _ = f.dialog.Bye(context.Background()) }()
		_ = f.session.Close()
		l.m.linger(f.conn)
		return
	}
	l.dev, l.conn, l.dialog, l.session = f.dev, f.conn, f.dialog, f.session
	l.log = l.log.With().Stringer("device", f.dev.ID).Logger()
	l.answered = true
	if err := l.session.SetAnswer(f.answer); err != nil {
		l.hangupNow(leg.Failed, fmt.Sprintf("the device's SDP answer: %v", err))
		return
	}
	l.dialog.SetHandler(l.handler())
	l.events.Answered(l)
	l.setStatus("connecting media")
	go l.connectMedia()
}

// Answer implements leg.Leg: an inbound leg's media is answered, then the
// INVITE (once ICE has its candidates), then ICE runs.
func (l *Leg) Answer() {
	l.post(func() {
		if l.dir != leg.Inbound || l.answering || l.ended {
			return
		}
		l.answering = true
		go l.answer()
	})
}

func (l *Leg) answer() {
	fail := func(err error) {
		l.post(func() { l.hangupNow(leg.Failed, err.Error()) })
	}
	session, err := l.newSession(true)
	if err != nil {
		fail(err)
		return
	}
	ans, err := session.Answer(l.ctx, l.incoming.Offer)
	if err != nil {
		_ = session.Close()
		l.post(func() {
			l.endWith(leg.End{Reason: leg.Failed, By: leg.ByBot, Detail: "the caller's SDP: " + err.Error()})
			go func() { _ = l.incoming.Reject(488, "Not Acceptable Here") }()
		})
		return
	}
	l.post(func() { l.session = session })
	dialog, err := l.incoming.Answer(l.ctx, ans)
	if err != nil {
		l.post(func() {
			l.endWith(leg.End{Reason: leg.Failed, By: leg.ByPeer, Detail: "the caller did not acknowledge the answer: " + err.Error()})
		})
		return
	}
	l.post(func() {
		if l.ended {
			go func() { _ = dialog.Bye(context.Background()) }()
			return
		}
		l.dialog = dialog
		l.answered = true
		dialog.SetHandler(l.handler())
		l.events.Answered(l)
		l.setStatus("connecting media")
		go l.connectMedia()
	})
}

// watchCancel ends a ringing inbound leg whose caller gives up.
func (l *Leg) watchCancel() {
	go func() {
		select {
		case <-l.incoming.Canceled():
			l.post(func() {
				if !l.answered {
					l.endWith(leg.End{Reason: leg.Hangup, By: leg.ByPeer, Detail: "the Jami caller hung up before the answer"})
				}
			})
		case <-l.done:
		}
	}()
}

// connectMedia runs ICE and starts the media leg, off the queue.
func (l *Leg) connectMedia() {
	ctx, cancel := context.WithTimeout(l.ctx, l.m.cfg.MediaTimeout)
	defer cancel()
	var session *media.Session
	_ = l.q.Do(ctx, func() error { session = l.session; return nil })
	if session == nil {
		return
	}
	if err := session.Connect(ctx); err != nil {
		l.post(func() { l.hangupNow(leg.Failed, "media ICE with the Jami device: "+err.Error()) })
		return
	}
	ml := newMediaLeg(string(l.id), session, l.RequestKeyframe, l.log)
	l.post(func() {
		if l.ended {
			_ = ml.Close()
			return
		}
		l.media = ml
		l.events.MediaReady(l, ml.PacketLeg)
		l.events.Connected(l)
		l.setStatus("connected")
		l.reportDirections()
	})
}

// reconnectMedia runs ICE again after an ICE restart (the peer's, or our
// re-offer's), off the queue. The media leg stays in its conversation
// meanwhile: sends are dropped and reads wait.
func (l *Leg) reconnectMedia(session *media.Session) {
	ctx, cancel := context.WithTimeout(l.ctx, l.m.cfg.MediaTimeout)
	defer cancel()
	if err := session.Connect(ctx); err != nil {
		l.post(func() { l.hangupNow(leg.Failed, "media ICE with the Jami device after an ICE restart: "+err.Error()) })
		return
	}
	l.log.Info().Msg("Media reconnected after an ICE restart")
}

// handler is what the dialog tells the leg.
func (l *Leg) handler() sip.Handler {
	return sip.Handler{
		OnReInvite: l.onReInvite,
		OnInfo: func(contentType string, body []byte) {
			if strings.EqualFold(contentType, sip.ContentTypeDTMFRelay) {
				if digit, d, ok := sip.ParseDTMFRelay(body); ok {
					if d == 0 {
						d = 160 * time.Millisecond // jamid's default pulse length
					}
					l.post(func() { l.events.DTMF(l, digit, d) })
				}
				return
			}
			if !strings.EqualFold(contentType, sip.ContentTypeMediaControl) {
				return
			}
			mc, ok := sip.ParseMediaControl(body)
			if !ok {
				return
			}
			l.post(func() { l.onMediaControl(mc) })
		},
		OnMessage: func(contentType string, body []byte) {
			for _, text := range textParts(contentType, body) {
				l.m.host.Text(l, text)
			}
		},
		OnBye: func() {
			l.post(func() { l.endWith(leg.End{Reason: leg.Hangup, By: leg.ByPeer, Detail: "the Jami peer hung up"}) })
		},
	}
}

// onReInvite answers the peer's re-INVITE (hold, resume, a media change)
// on the same media session; one that restarts ICE is connected again
// (reconnectMedia) while the forwarder's streams stay. It runs on the SIP callback goroutine and waits for the queue.
func (l *Leg) onReInvite(offer []byte) ([]byte, error) {
	var answer []byte
	err := l.q.Do(l.ctx, func() error {
		if l.session == nil || l.ended {
			return errors.New("no media session")
		}
		var err error
		answer, err = l.session.Answer(l.ctx, offer)
		if err != nil {
			return err
		}
		l.reportDirections()
		if l.media != nil && l.session.NeedsConnect() {
			go l.reconnectMedia(l.session)
		}
		return nil
	})
	if err != nil {
		l.log.Info().Err(err).Msg("Refused the Jami peer's re-INVITE")
	}
	return answer, err
}

// reportDirections tells the conversation whether the peer takes media
// (it holds the call when it does not).
func (l *Leg) reportDirections() {
	if l.media == nil {
		return
	}
	for _, st := range l.session.Streams() {
		if st.Kind.String() == "audio" && !st.Rejected() {
			l.events.Receiving(l, st.Direction().Sends())
			return
		}
	}
}

// onMediaControl: a keyframe request goes to the source of our video; a
// mute state to the other parties.
func (l *Leg) onMediaControl(mc sip.MediaControl) {
	if mc.KeyframeRequest && l.media != nil {
		l.media.keyframeRequested()
	}
	if mc.Mute != nil {
		l.events.PeerMuted(l, *mc.Mute, false)
	}
}

// Hangup implements leg.Leg.
func (l *Leg) Hangup(r leg.Reason, detail string) {
	l.post(func() { l.hangupNow(r, detail) })
}

// hangupNow ends the leg from our side, on the queue: a ringing inbound
// call is refused with the SIP status for r, a dialing one cancelled, an
// answered one hung up with a BYE.
func (l *Leg) hangupNow(r leg.Reason, detail string) {
	if l.ended {
		return
	}
	switch {
	case l.dialog != nil:
		d := l.dialog
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), 10*time.Second)
			defer cancel()
			_ = d.Bye(ctx)
		}()
	case l.incoming != nil && !l.answering:
		code, reason := statusFor(r)
		ic := l.incoming
		go func() { _ = ic.Reject(code, reason) }()
	}
	l.endWith(leg.End{Reason: r, By: leg.ByBot, Detail: detail})
}

// endWith ends the leg (on the queue): media closed, the channel left to
// linger, the conversation told.
func (l *Leg) endWith(e leg.End) {
	if l.ended {
		return
	}
	l.ended = true
	l.setStatus("ended")
	l.cancel()
	if l.media != nil {
		_ = l.media.Close()
	} else if l.session != nil {
		_ = l.session.Close()
	}
	l.m.linger(l.conn)
	l.m.forget(l)
	l.log.Info().Str("reason", string(e.Reason)).Str("by", string(e.By)).Str("detail", e.Detail).Msg("Jami leg ended")
	if l.events != nil {
		l.events.Ended(l, e)
	}
	close(l.done)
	l.q.Close()
}

// Hold implements leg.Leg: a re-INVITE that makes our streams sendonly
// (hold) or sendrecv again.
func (l *Leg) Hold(on bool) {
	l.post(func() {
		if l.ended || l.dialog == nil || l.session == nil || l.holding == on {
			return
		}
		l.holding = on
		dir := media.SendRecv
		if on {
			dir = media.SendOnly
		}
		for _, st := range l.session.Streams() {
			if !st.Rejected() {
				l.session.SetDirection(st, dir)
			}
		}
		offer, err := l.reoffer()
		if err != nil {
			l.log.Warn().Err(err).Msg("Making the hold offer")
			return
		}
		d, s := l.dialog, l.session
		go func() {
			ans, err := d.ReInvite(l.ctx, offer)
			l.post(func() {
				if err == nil {
					err = s.SetAnswer(ans)
				}
				if err != nil {
					// The call stays as it was, on its ICE session.
					l.log.Info().Err(err).Bool("hold", on).Msg("The Jami peer refused our hold re-INVITE, or its answer")
					s.AbandonOffer()
					l.holding = !on
					return
				}
				if s.NeedsConnect() { // our re-offer restarted ICE (reoffer)
					go l.reconnectMedia(s)
				}
			})
		}()
	})
}

// reoffer is a re-offer as jamid makes one to this peer: on the same ICE
// session for 11.0.2 and later (what jamid does, and what our User-Agent
// says we take), else with an ICE restart, as older peers require.
func (l *Leg) reoffer() ([]byte, error) {
	if l.dialog.PeerVersion().AtLeast(11, 0, 2) {
		return l.session.Offer(l.ctx)
	}
	return l.session.OfferICERestart(l.ctx)
}

// SetMuted implements leg.Leg: jamid shows the bot's stream muted
// (media_control mute_state, which is about audio).
func (l *Leg) SetMuted(audio, _ bool) {
	l.post(func() {
		if l.ended || l.dialog == nil {
			return
		}
		d := l.dialog
		go func() { _ = d.Info(l.ctx, sip.ContentTypeMediaControl, sip.MuteState(audio)) }()
	})
}

// RequestKeyframe asks the peer for a keyframe (SIP INFO, as jamid does).
func (l *Leg) RequestKeyframe() {
	l.post(func() {
		if l.dialog == nil || l.ended {
			return
		}
		d := l.dialog
		go func() { _ = d.Info(l.ctx, sip.ContentTypeMediaControl, sip.KeyframeRequest(-1)) }()
	})
}
