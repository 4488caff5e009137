package matrixcall

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/call"
	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/internal/opqueue"
	"github.com/voipbot/voipbot/matrix/callevent"
	"github.com/voipbot/voipbot/store"
	"github.com/voipbot/voipbot/voip"
)

// Candidate batching and the wait for candidates to go into an SDP, as the
// spec recommends (MSC2746): up to 200 ms of gathering in the description
// — less once the host candidates are in (voip.GatherHosts) — then batches
// every 500 ms after an answer and every 2 s after an invite.
const (
	gatherWait          = 200 * time.Millisecond
	answerCandidateWait = 500 * time.Millisecond
	inviteCandidateWait = 2 * time.Second
	// sendTries is how often a call event is sent before giving up (with
	// 500 ms, 1 s, 2 s, … between tries, as matrix-js-sdk does).
	sendTries = 5
)

// sendRetryDelay is the first wait between tries (tests shorten it).
var sendRetryDelay = 500 * time.Millisecond

// Leg is one Matrix 1:1 call, as a leg of a conversation: its state
// machine, its media session and its timers, all on one ordered queue.
// Everything that happens to the call — a Matrix event, a media callback, a
// timer, a command — is posted to the queue, so none of them blocks its
// caller and none races another. What happens to it is reported to its
// conversation through leg.Events.
type Leg struct {
	calls *Manager
	m     *call.Machine
	q     *opqueue.Queue
	log   zerolog.Logger
	// ctx is cancelled when the call has ended and its queue drained.
	ctx    context.Context
	cancel context.CancelFunc
	// events is where the leg reports; nil for a call no conversation
	// takes (an invite that loses a glare).
	events leg.Events
	// expires is when an inbound call's invite stops ringing.
	expires time.Time
	// start is what Start posts: an outbound call's first effects.
	start []call.Effect

	inviteEvent id.EventID
	sess        *voip.Session
	tracks      []*voip.InboundTrack // the peer's, as they came
	timers      map[call.Timer]*time.Timer
	// retired: the call has ended and been stored as ended; effects that
	// an earlier input asked for before it ended change nothing more.
	retired bool
	// reported is what the conversation has been told.
	reported struct{ answered, connected, muteAudio, muteVideo bool }

	// view is what other goroutines may read of the machine (which only
	// the queue touches); Room, CallID, Direction and Invitee never change.
	viewMu sync.Mutex
	view   callView
}

// LegID is the leg ID of the Matrix call with this call ID (call IDs are
// unique enough across rooms: the time and 16 random characters).
func LegID(callID callevent.CallID) leg.ID { return leg.ID("matrix:" + string(callID)) }

// callView is the part of a call the manager's policies and the status
// command look at.
type callView struct {
	state                call.State
	peer                 call.Party
	video, remoteHold    bool
	peerMutedAudio       bool
	peerMutedVideo       bool
	reason               string
	connectedAt, created time.Time
}

func viewOf(m *call.Machine) callView {
	audio, video := m.PeerMuted()
	return callView{state: m.State, peer: m.Peer, video: m.Video, remoteHold: m.RemoteHold,
		peerMutedAudio: audio, peerMutedVideo: video, reason: m.Reason, connectedAt: m.ConnectedAt, created: m.CreatedAt}
}

func newLeg(cm *Manager, m *call.Machine) *Leg {
	ctx, cancel := context.WithCancel(context.WithoutCancel(cm.ctx))
	return &Leg{
		view:   viewOf(m),
		calls:  cm,
		m:      m,
		q:      opqueue.New(),
		log:    cm.log.With().Stringer("room_id", m.Room).Str("call_id", string(m.CallID)).Logger(),
		ctx:    ctx,
		cancel: cancel,
		timers: map[call.Timer]*time.Timer{},
	}
}

// ID names the leg.
func (r *Leg) ID() leg.ID { return LegID(r.m.CallID) }

// Kind is matrix.
func (r *Leg) Kind() leg.Kind { return leg.KindMatrix }

// Direction says who placed the call.
func (r *Leg) Direction() leg.Direction {
	if r.m.Direction == call.Outbound {
		return leg.Outbound
	}
	return leg.Inbound
}

// Peer is the user the call is with: the caller, the invitee, or (for a
// call that rings a whole room) whoever answered.
func (r *Leg) Peer() string {
	if p := r.snapshot().peer.User; p != "" {
		return string(p)
	}
	return string(r.m.Invitee)
}

// Video says whether the call has video.
func (r *Leg) Video() bool { return r.snapshot().video }

// Room is where the call is.
func (r *Leg) Room() id.RoomID { return r.m.Room }

// CallID is the Matrix call ID.
func (r *Leg) CallID() callevent.CallID { return r.m.CallID }

// Caller is who placed an inbound call.
func (r *Leg) Caller() id.UserID { return r.snapshot().peer.User }

// Expires is when an inbound call stops ringing (zero for an outbound one).
func (r *Leg) Expires() time.Time { return r.expires }

// Done is closed once the call has ended and its queue has drained (its
// media is closed by then).
func (r *Leg) Done() <-chan struct{} { return r.q.Done() }

// State is the call's state now.
func (r *Leg) State() call.State { return r.snapshot().state }

// Hold puts the peer on hold (a negotiate offer, sendonly), or resumes it:
// the bridged party holds.
func (r *Leg) Hold(on bool) {
	r.post(func() { r.input(r.m.HoldPeer(on)) })
}

// SetMuted tells the peer, through stream metadata, that what the bot
// sends is muted (the bridged party muted its microphone or camera).
func (r *Leg) SetMuted(audio, video bool) {
	r.post(func() { r.input(r.m.SetLocalMuted(audio, video)) })
}

// Start places an outbound call made by Manager.Place.
func (r *Leg) Start() {
	effects := r.start
	r.start = nil
	r.post(func() { r.input(effects, nil) })
}

// Answer answers the call if it rings.
func (r *Leg) Answer() {
	r.post(func() {
		if r.m.State == call.StateRinging {
			r.input(r.m.Answer())
		}
	})
}

// Hangup ends the call for a reason: a ringing call is declined with it
// (see hangupInput).
func (r *Leg) Hangup(reason leg.Reason, detail string) {
	r.post(func() { r.input(hangupInput(r.m, reason, detail)) })
}

// post runs fn on the call's queue.
func (r *Leg) post(fn func()) {
	if !r.q.Post(fn) {
		r.log.Debug().Msg("Call input after the call's queue closed")
	}
}

// input applies what the machine returned for one input.
func (r *Leg) input(effects []call.Effect, err error) {
	var ignored *call.Ignored
	switch {
	case errors.As(err, &ignored):
		r.log.Debug().Str("why", ignored.Why).Msg("Call input ignored")
	case errors.Is(err, call.ErrEnded):
		r.log.Debug().Msg("Call input after the call ended")
	case err != nil:
		r.log.Warn().Err(err).Msg("Call input refused")
	}
	for _, e := range effects {
		r.apply(e)
	}
}

func (r *Leg) apply(e call.Effect) {
	switch e := e.(type) {
	case call.Send:
		if err := r.send(e.Type, e.Content); err != nil && (e.Type == callevent.TypeInvite || e.Type == callevent.TypeAnswer) {
			if e.Type == callevent.TypeInvite {
				r.calls.report(r.m.Room, fmt.Sprintf("The call to %s could not be placed: %v", r.m.Invitee, err))
			}
			r.input(r.m.SignallingFailed(e.Type, err))
		}
	case call.AcceptOffer:
		r.acceptOffer(e.SDP)
	case call.MakeOffer:
		r.makeOffer()
	case call.ApplyAnswer:
		err := r.sess.SetRemoteDescription(r.ctx, webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: e.SDP})
		switch {
		case err == nil:
		case e.Hold:
			r.log.Warn().Err(err).Msg("The peer's answer to our hold offer cannot be applied; the call goes on as it was")
		case e.Negotiation:
			// The peer's answer to our ICE restart: the restart failed.
			err = fmt.Errorf("applying the peer's negotiate answer: %w", err)
			if errors.Is(err, voip.ErrNegotiationStuck) {
				r.input(r.m.MediaError(err))
				return
			}
			r.input(r.m.NegotiationFailed(err, true))
		default:
			r.input(r.m.MediaError(err))
		}
	case call.AddCandidates:
		if r.sess == nil {
			return
		}
		if err := r.sess.AddRemoteCandidates(r.ctx, toICE(e.Candidates)); err != nil {
			r.log.Warn().Err(err).Msg("Failed to add remote candidates")
		}
	case call.StartTimer:
		if r.m.Ended() {
			return // asked for before an earlier effect ended the call
		}
		if old := r.timers[e.Timer]; old != nil {
			old.Stop()
		}
		t := e.Timer
		r.timers[t] = time.AfterFunc(e.After, func() { r.post(func() { r.input(r.m.TimerFired(t)) }) })
	case call.StopTimer:
		if old := r.timers[e.Timer]; old != nil {
			old.Stop()
			delete(r.timers, e.Timer)
		}
	case call.CloseMedia:
		r.closeMedia()
	case call.RestartICE:
		sess := r.sess
		go func() {
			desc, err := sess.RestartICE(r.ctx, gatherWait)
			r.post(func() {
				if err != nil {
					r.input(r.m.MediaFailed("restarting ICE failed: " + err.Error()))
					return
				}
				r.input(r.m.LocalNegotiationOffer(desc.SDP))
			})
		}()
	case call.HoldOffer:
		sess := r.sess
		if sess == nil {
			return
		}
		go func() {
			desc, err := sess.HoldOffer(r.ctx, e.Hold, gatherWait)
			r.post(func() {
				if err != nil {
					r.input(r.m.NegotiationFailed(err, true))
					return
				}
				r.input(r.m.LocalNegotiationOffer(desc.SDP))
			})
		}()
	case call.AcceptNegotiation:
		r.acceptNegotiation(e)
	case call.SetSending:
		if r.events != nil {
			r.events.Receiving(r, e.On)
		}
	case call.Changed:
		r.changed(e.From)
	default:
		r.log.Error().Type("effect", e).Msg("Unknown call effect")
	}
}

// send sends a call event (retrying what may succeed later). The call's
// queue waits meanwhile: later events of the call must not overtake it.
func (r *Leg) send(t callevent.Type, c callevent.Content) error {
	evtID, err := r.calls.sendCallEvent(r.ctx, r.log, r.m.Room, t, c)
	if err == nil && t == callevent.TypeInvite {
		r.inviteEvent = evtID
	}
	return err
}

// newSession makes the call's media session and connects it to the call's
// media source.
func (r *Leg) newSession(candidateWait time.Duration) error {
	// The answer (or invite) goes out once the host candidates are in;
	// server-reflexive and relay candidates trickle after it.
	sess, err := r.calls.media.NewSession(string(r.m.CallID), sessionEvents{r}, voip.SessionOptions{
		ICEServers: r.calls.ice.current(), GatherUntil: voip.GatherHosts})
	if err != nil {
		return fmt.Errorf("creating media session: %w", err)
	}
	r.sess = sess
	if err = sess.SetCandidateBatch(r.ctx, candidateWait); err != nil {
		return err
	}
	return nil
}

// addOutbound adds an outbound track for each kind the session negotiated
// (or will offer) and tells the conversation that the call's media may be
// forwarded to: what goes into those tracks is the conversation's choice
// (the other party, or the bot's own source).
func (r *Leg) addOutbound(kinds map[webrtc.RTPCodecType]webrtc.RTPCodecParameters) error {
	for kind, codec := range kinds {
		id := fmt.Sprintf("%s-%s", r.m.CallID, kind)
		if err := r.sess.AddOutbound(r.ctx, voip.NewOutboundTrack(codec.RTPCodecCapability, id, "voipbot")); err != nil {
			return fmt.Errorf("adding %s track: %w", kind, err)
		}
	}
	if r.events != nil {
		r.events.MediaReady(r, r.sess)
	}
	return nil
}

func (r *Leg) acceptOffer(sdp string) {
	err := func() error {
		if err := r.newSession(answerCandidateWait); err != nil {
			return err
		}
		if err := r.sess.SetRemoteDescription(r.ctx, webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
			return err
		}
		kinds := map[webrtc.RTPCodecType]webrtc.RTPCodecParameters{}
		for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if codecs := r.sess.NegotiatedCodecs(kind); len(codecs) > 0 {
				kinds[kind] = codecs[0]
			}
		}
		if len(kinds) == 0 {
			return errors.New("the offer has no audio or video format the bot takes")
		}
		return r.addOutbound(kinds)
	}()
	if err != nil {
		r.input(r.m.MediaError(err))
		return
	}
	r.makeDescription("making the answer", r.sess.CreateAnswer, r.m.LocalDescription)
}

// makeDescription makes a local description off the queue (it waits up to
// gatherWait for candidates) and hands the result back to the machine on
// the queue: to done, or as a media error.
func (r *Leg) makeDescription(what string, describeFn func(context.Context, time.Duration) (webrtc.SessionDescription, error),
	done func(sdp string) ([]call.Effect, error)) {
	go func() {
		desc, err := describeFn(r.ctx, gatherWait)
		r.post(func() {
			if err != nil {
				r.input(r.m.MediaError(fmt.Errorf("%s: %w", what, err)))
				return
			}
			r.input(done(desc.SDP))
		})
	}()
}

// acceptNegotiation applies the peer's negotiate offer and answers it. An
// offer the session cannot take leaves the call as it was (as js-sdk does);
// only a session that cannot get back to where it was ends the call.
func (r *Leg) acceptNegotiation(e call.AcceptNegotiation) {
	if r.sess == nil {
		return
	}
	if e.Rollback {
		if err := r.sess.Rollback(r.ctx); err != nil {
			r.log.Warn().Err(err).Msg("Rolling back our offer for the peer's failed")
		}
	}
	if err := r.sess.SetRemoteDescription(r.ctx, webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: e.SDP}); err != nil {
		err = fmt.Errorf("applying the peer's negotiate offer: %w", err)
		if errors.Is(err, voip.ErrNegotiationStuck) {
			// The session can renegotiate no more (no hold, no resume, no
			// ICE restart): the call cannot go on as a call.
			r.input(r.m.MediaError(err))
			return
		}
		r.input(r.m.NegotiationFailed(err, e.Rollback))
		return
	}
	r.input(r.m.NegotiationApplied(e.Hold))
	// An answer that cannot be made leaves the session halfway (pion
	// cannot roll a remote offer back): that ends the call, as MediaError.
	r.makeDescription("answering the peer's negotiate offer", r.sess.CreateAnswer, r.m.NegotiationAnswer)
}

func (r *Leg) makeOffer() {
	err := func() error {
		if err := r.newSession(inviteCandidateWait); err != nil {
			return err
		}
		kinds := map[webrtc.RTPCodecType]webrtc.RTPCodecParameters{webrtc.RTPCodecTypeAudio: voip.AudioCodecs[0]}
		if r.m.Video {
			kinds[webrtc.RTPCodecTypeVideo] = voip.VideoCodecs[0]
		}
		return r.addOutbound(kinds)
	}()
	if err != nil {
		r.input(r.m.MediaError(err))
		return
	}
	sess := r.sess
	offer := func(ctx context.Context, wait time.Duration) (webrtc.SessionDescription, error) {
		return sess.CreateOffer(ctx, voip.OfferOptions{GatherWait: wait})
	}
	r.makeDescription("making the offer", offer, r.m.LocalDescription)
}

// closeMedia closes the session; the conversation takes it out of its
// forwarder when it learns that the call ended.
func (r *Leg) closeMedia() {
	if r.sess != nil {
		if err := r.sess.Close(); err != nil {
			r.log.Debug().Err(err).Msg("Closing the media session")
		}
	}
}

// inboundTrack applies the peer's stream metadata to a track it sends: with
// metadata, only user-media streams are the call's media (a screen share
// or an unlisted stream is not forwarded); without, the first stream is.
func (r *Leg) inboundTrack(t *voip.InboundTrack) {
	r.tracks = append(r.tracks, t)
	streams := r.m.RemoteStreams()
	if streams == nil || r.events == nil {
		return
	}
	info, listed := streams[t.StreamID]
	log := r.log.Debug().Str("stream", t.StreamID).Str("kind", t.Kind.String())
	switch {
	case !listed || !info.Known():
		log.Msg("Ignoring a stream the peer's metadata does not list")
	case info.Purpose == callevent.PurposeUserMedia:
		r.events.Preferred(r, t)
	default:
		log.Str("purpose", string(info.Purpose)).Msg("Not forwarding a screen share")
		// Keep a user-media stream of the same kind selected.
		for _, other := range r.tracks {
			if other.Kind == t.Kind && streams[other.StreamID].Purpose == callevent.PurposeUserMedia {
				r.events.Preferred(r, other)
			}
		}
	}
}

// snapshot reads the call's view from any goroutine.
func (r *Leg) snapshot() callView {
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	return r.view
}

// changed persists the call and, once it has ended, retires the runner.
func (r *Leg) changed(from call.State) {
	m := r.m
	if r.retired {
		return
	}
	r.viewMu.Lock()
	r.view = viewOf(m)
	r.viewMu.Unlock()
	ev := r.log.Info()
	if m.State != call.StateEnded {
		ev = r.log.Debug()
	}
	ev.Str("from", string(from)).Str("state", string(m.State)).Str("reason", m.Reason).
		Str("hangup_reason", string(m.HangupReason)).Str("hangup_by", string(m.HangupBy)).Msg("Call state changed")
	if err := r.calls.store.PutCall(r.ctx, callRecord(m, r.inviteEvent)); err != nil {
		r.log.Err(err).Msg("Failed to store the call's state")
	}
	r.report()
	if m.State == call.StateEnded {
		r.retired = true
		for t, timer := range r.timers {
			timer.Stop()
			delete(r.timers, t)
		}
		r.calls.ended(r)
		r.q.Close()
		go func() {
			<-r.q.Done()
			r.cancel()
		}()
	}
}

// callRecord is a call as the store keeps it.
func callRecord(m *call.Machine, inviteEvent id.EventID) *store.Call {
	dir := store.CallInbound
	if m.Direction == call.Outbound {
		dir = store.CallOutbound
	}
	return &store.Call{
		RoomID: m.Room, CallID: string(m.CallID), OurPartyID: string(m.Us.PartyID),
		PeerUserID: m.Peer.User, PeerPartyID: string(m.Peer.PartyID),
		Direction: dir, Version: string(m.Version), Video: m.Video,
		State: string(m.State), StateReason: m.Reason,
		HangupReason: string(m.HangupReason), HangupBy: string(m.HangupBy), Missed: m.Missed,
		InviteEventID: inviteEvent, Lifetime: m.Lifetime,
		CreatedAt: m.CreatedAt, AnsweredAt: m.AnsweredAt, ConnectedAt: m.ConnectedAt, EndedAt: m.EndedAt,
	}
}

// sessionEvents turns media session callbacks into inputs on the call's
// queue; it never blocks.
type sessionEvents struct{ r *Leg }

func (s sessionEvents) OnLocalCandidates(cands []webrtc.ICECandidateInit, done bool) {
	converted := fromICE(cands)
	s.r.post(func() { s.r.input(s.r.m.LocalCandidates(converted, done)) })
}

func (s sessionEvents) OnTrack(t *voip.InboundTrack) {
	s.r.post(func() { s.r.inboundTrack(t) })
}

func (s sessionEvents) OnConnectionState(st webrtc.PeerConnectionState) {
	switch st {
	case webrtc.PeerConnectionStateConnected:
		s.r.post(func() { s.r.input(s.r.m.MediaConnected()) })
	case webrtc.PeerConnectionStateFailed:
		s.r.post(func() { s.r.input(s.r.m.MediaFailed("the media connection failed")) })
	}
}

func (sessionEvents) OnNegotiationNeeded() {}

func toICE(cands []callevent.Candidate) []webrtc.ICECandidateInit {
	out := make([]webrtc.ICECandidateInit, 0, len(cands))
	for _, c := range cands {
		if c.IsEnd() {
			continue
		}
		out = append(out, webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
	}
	return out
}

func fromICE(cands []webrtc.ICECandidateInit) []callevent.Candidate {
	out := make([]callevent.Candidate, 0, len(cands))
	for _, c := range cands {
		out = append(out, callevent.Candidate{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex})
	}
	return out
}

// report tells the conversation what changed since it was last told.
// Called on the queue, after each change of the machine.
func (r *Leg) report() {
	if r.events == nil {
		return
	}
	m := r.m
	if !r.reported.answered && !m.AnsweredAt.IsZero() {
		r.reported.answered = true
		r.events.Answered(r)
	}
	if m.State == call.StateConnected && !r.reported.connected {
		r.events.Connected(r)
	}
	r.reported.connected = m.State == call.StateConnected
	if audio, video := m.PeerMuted(); audio != r.reported.muteAudio || video != r.reported.muteVideo {
		r.reported.muteAudio, r.reported.muteVideo = audio, video
		r.events.PeerMuted(r, audio, video)
	}
	if m.State == call.StateEnded {
		r.events.Ended(r, endOf(m))
	}
}

// endOf says how a call ended in the conversation's terms.
func endOf(m *call.Machine) leg.End {
	e := leg.End{By: leg.ByBot, Detail: m.Reason}
	if m.HangupBy == call.ByRemote {
		e.By = leg.ByPeer
	}
	answered := !m.AnsweredAt.IsZero()
	switch m.HangupReason {
	case callevent.ReasonUserBusy:
		e.Reason = leg.Busy
	case callevent.ReasonInviteTimeout:
		e.Reason = leg.NoAnswer
	case callevent.ReasonICEFailed, callevent.ReasonICETimeout, callevent.ReasonUserMediaFailed, callevent.ReasonUnknownError:
		e.Reason = leg.Failed
	default:
		e.Reason = leg.Hangup
		if !answered && e.By == leg.ByPeer && m.Direction == call.Outbound {
			// A reject, or the invitee's hangup before answering (a
			// caller that gives up is a plain hangup).
			e.Reason = leg.Declined
		}
	}
	return e
}

// hangupInput is how the machine ends a call for a conversation's reason:
// a call that rings here is declined with the Matrix reason that says it
// (user_busy, invite_timeout, unknown_error; a plain reject for a decline),
// anything else is hung up with it.
func hangupInput(m *call.Machine, r leg.Reason, detail string) ([]call.Effect, error) {
	reason := matrixReason(r)
	if m.State == call.StateRinging && m.Direction == call.Inbound {
		if r == leg.Declined || r == leg.Hangup {
			return m.Hangup("", detail)
		}
		return m.Decline(reason, detail)
	}
	return m.Hangup(reason, detail)
}

// matrixReason is the Matrix hangup reason for a conversation's reason.
func matrixReason(r leg.Reason) callevent.HangupReason {
	switch r {
	case leg.Busy:
		return callevent.ReasonUserBusy
	case leg.NoAnswer:
		return callevent.ReasonInviteTimeout
	case leg.Failed:
		return callevent.ReasonUnknownError
	}
	return callevent.ReasonUserHangup
}

// describe says what the call is, in a line, for the status command.
func (r *Leg) describe(now time.Time) string {
	v := r.snapshot()
	kind := "voice"
	if v.video {
		kind = "video"
	}
	peer := v.peer.User
	if peer == "" {
		peer = r.m.Invitee
	}
	if peer == "" {
		peer = "the room"
	}
	line := fmt.Sprintf("%s %s call with %s: %s", r.m.Direction, kind, peer, v.state)
	if !v.connectedAt.IsZero() {
		line += fmt.Sprintf(" for %s", now.Sub(v.connectedAt).Round(time.Second))
	}
	if v.remoteHold {
		line += ", on hold"
	}
	if v.peerMutedAudio {
		line += ", peer's microphone muted"
	}
	if v.peerMutedVideo && v.video {
		line += ", peer's camera off"
	}
	return line
}
