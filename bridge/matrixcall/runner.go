package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/call"
	"github.com/voipbot/voipbot/internal/opqueue"
	"github.com/voipbot/voipbot/matrix/callevent"
	"github.com/voipbot/voipbot/store"
	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/voip/media"
)

// Candidate batching and the wait for candidates to go into an SDP, as the
// spec recommends (MSC2746): ~200 ms of gathering in the description, then
// batches every 500 ms after an answer and every 2 s after an invite.
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

// callRunner runs one call: its state machine, its media session and its
// timers, all on one ordered queue. Everything that happens to the call —
// a Matrix event, a media callback, a timer, a command — is posted to the
// queue, so none of them blocks its caller and none races another.
type callRunner struct {
	calls *callManager
	m     *call.Machine
	q     *opqueue.Queue
	log   zerolog.Logger
	// ctx is cancelled when the call has ended and its queue drained.
	ctx    context.Context
	cancel context.CancelFunc

	inviteEvent id.EventID
	sess        *voip.Session
	source      MediaMode
	media       *voip.Bridge
	sources     []*voip.SourceLeg
	tracks      []*voip.InboundTrack // the peer's, as they came
	timers      map[call.Timer]*time.Timer
	// settled is closed when the call reaches connected or ends, for
	// whoever waits on it (the place-call command, tests).
	settled chan struct{}
	// retired: the call has ended and been stored as ended; effects that
	// an earlier input asked for before it ended change nothing more.
	retired bool

	// view is what other goroutines may read of the machine (which only
	// the queue touches); Room, CallID, Direction and Invitee never change.
	viewMu sync.Mutex
	view   callView
}

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

func newCallRunner(cm *callManager, m *call.Machine) *callRunner {
	ctx, cancel := context.WithCancel(context.WithoutCancel(cm.ctx))
	return &callRunner{
		source:  cm.sourceFor(ctx, m.Room),
		view:    viewOf(m),
		calls:   cm,
		m:       m,
		q:       opqueue.New(),
		log:     cm.log.With().Stringer("room_id", m.Room).Str("call_id", m.CallID).Logger(),
		ctx:     ctx,
		cancel:  cancel,
		timers:  map[call.Timer]*time.Timer{},
		settled: make(chan struct{}),
	}
}

// post runs fn on the call's queue.
func (r *callRunner) post(fn func()) {
	if !r.q.Post(fn) {
		r.log.Debug().Msg("Call input after the call's queue closed")
	}
}

// input applies what the machine returned for one input.
func (r *callRunner) input(effects []call.Effect, err error) {
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

func (r *callRunner) apply(e call.Effect) {
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
	case call.AcceptNegotiation:
		r.acceptNegotiation(e)
	case call.SetSending:
		if r.media != nil && r.sess != nil {
			r.media.SetReceiving(r.sess, e.On)
		}
	case call.Changed:
		r.changed(e.From)
	default:
		r.log.Error().Type("effect", e).Msg("Unknown call effect")
	}
}

// send sends a call event (retrying what may succeed later). The call's
// queue waits meanwhile: later events of the call must not overtake it.
func (r *callRunner) send(t callevent.Type, c callevent.Content) error {
	evtID, err := r.calls.sendCallEvent(r.ctx, r.log, r.m.Room, t, c)
	if err == nil && t == callevent.TypeInvite {
		r.inviteEvent = evtID
	}
	return err
}

// newSession makes the call's media session and connects it to the call's
// media source.
func (r *callRunner) newSession(candidateWait time.Duration) error {
	sess, err := r.calls.media.NewSession(r.m.CallID, sessionEvents{r}, voip.SessionOptions{ICEServers: r.calls.ice.current()})
	if err != nil {
		return fmt.Errorf("creating media session: %w", err)
	}
	r.sess = sess
	if err = sess.SetCandidateBatch(r.ctx, candidateWait); err != nil {
		return err
	}
	return nil
}

// attachSource adds an outbound track for each kind the session negotiated
// (or will offer) and connects the call's source to it: the caller's own
// media (echo), or source legs in a bridge (tone, pattern, silence, files).
func (r *callRunner) attachSource(kinds map[webrtc.RTPCodecType]webrtc.RTPCodecParameters) error {
	for kind, codec := range kinds {
		id := fmt.Sprintf("%s-%s", r.m.CallID, kind)
		if err := r.sess.AddOutbound(r.ctx, voip.NewOutboundTrack(codec.RTPCodecCapability, id, "voipbot")); err != nil {
			return fmt.Errorf("adding %s track: %w", kind, err)
		}
	}
	opts := []voip.BridgeOption{voip.OnError(func(err error) {
		r.log.Warn().Err(err).Str("source", string(r.source)).Msg("The call's source cannot send media")
	})}
	if r.source == MediaEcho {
		opts = append(opts, voip.Echo())
	}
	r.media = voip.NewBridge(r.m.CallID, r.log, opts...)
	if err := r.media.Add(r.sess); err != nil {
		return err
	}
	for kind, codec := range kinds {
		leg, err := r.newSourceLeg(kind, codec)
		if err != nil {
			return fmt.Errorf("starting the %s source for %s: %w", r.source, kind, err)
		}
		if leg == nil {
			continue
		}
		r.sources = append(r.sources, leg)
		if err = r.media.Add(leg); err != nil {
			return err
		}
	}
	return nil
}

// newSourceLeg makes the source of one kind of media; nil when the source
// sends nothing of that kind.
func (r *callRunner) newSourceLeg(kind webrtc.RTPCodecType, codec webrtc.RTPCodecParameters) (*voip.SourceLeg, error) {
	id := fmt.Sprintf("%s-%s-%s", r.m.CallID, r.source, kind)
	cfg := r.calls.cfg
	switch {
	case r.source == MediaEcho:
		return nil, nil
	case kind == webrtc.RTPCodecTypeAudio && r.source == MediaTone:
		return media.Tone(id, codec, 440)
	case kind == webrtc.RTPCodecTypeAudio && r.source == MediaSilence:
		return media.Silence(id, codec)
	case kind == webrtc.RTPCodecTypeAudio && r.source == MediaFile && cfg.AudioFile != "":
		return media.PlayFile(id, cfg.AudioFile)
	case kind == webrtc.RTPCodecTypeVideo && r.source == MediaTone:
		if !strings.EqualFold(codec.MimeType, webrtc.MimeTypeVP8) {
			r.log.Warn().Str("codec", codec.MimeType).Msg("The test pattern is VP8; the call negotiated another video format, so it gets no video")
			return nil, nil
		}
		return media.Pattern(id)
	case kind == webrtc.RTPCodecTypeVideo && r.source == MediaFile && cfg.VideoFile != "":
		return media.PlayFile(id, cfg.VideoFile)
	}
	return nil, nil
}

func (r *callRunner) acceptOffer(sdp string) {
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
		return r.attachSource(kinds)
	}()
	if err != nil {
		r.input(r.m.MediaError(err))
		return
	}
	r.describe("making the answer", r.sess.CreateAnswer, r.m.LocalDescription)
}

// describe makes a local description off the queue (it waits up to
// gatherWait for candidates) and hands the result back to the machine on
// the queue: to done, or as a media error.
func (r *callRunner) describe(what string, describeFn func(context.Context, time.Duration) (webrtc.SessionDescription, error),
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
func (r *callRunner) acceptNegotiation(e call.AcceptNegotiation) {
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
	r.describe("answering the peer's negotiate offer", r.sess.CreateAnswer, r.m.NegotiationAnswer)
}

func (r *callRunner) makeOffer() {
	err := func() error {
		if err := r.newSession(inviteCandidateWait); err != nil {
			return err
		}
		kinds := map[webrtc.RTPCodecType]webrtc.RTPCodecParameters{webrtc.RTPCodecTypeAudio: voip.AudioCodecs[0]}
		if r.m.Video {
			kinds[webrtc.RTPCodecTypeVideo] = voip.VideoCodecs[0]
		}
		return r.attachSource(kinds)
	}()
	if err != nil {
		r.input(r.m.MediaError(err))
		return
	}
	sess := r.sess
	offer := func(ctx context.Context, wait time.Duration) (webrtc.SessionDescription, error) {
		return sess.CreateOffer(ctx, voip.OfferOptions{GatherWait: wait})
	}
	r.describe("making the offer", offer, r.m.LocalDescription)
}

// closeMedia closes the session and the sources, then their bridge: a
// bridge stops once its legs' tracks have ended.
func (r *callRunner) closeMedia() {
	if r.sess != nil {
		if err := r.sess.Close(); err != nil {
			r.log.Debug().Err(err).Msg("Closing the media session")
		}
	}
	for _, leg := range r.sources {
		if err := leg.Close(); err != nil {
			r.log.Debug().Err(err).Msg("Closing a media source")
		}
	}
	if r.media != nil {
		if err := r.media.Close(); err != nil {
			r.log.Debug().Err(err).Msg("Closing the call's media bridge")
		}
	}
}

// inboundTrack applies the peer's stream metadata to a track it sends: with
// metadata, only user-media streams are the call's media (a screen share
// or an unlisted stream is not echoed); without, the first stream is.
func (r *callRunner) inboundTrack(t *voip.InboundTrack) {
	r.tracks = append(r.tracks, t)
	streams := r.m.RemoteStreams()
	if streams == nil || r.media == nil {
		return
	}
	info, listed := streams[t.StreamID]
	log := r.log.Debug().Str("stream", t.StreamID).Str("kind", t.Kind.String())
	switch {
	case !listed || !info.Known():
		log.Msg("Ignoring a stream the peer's metadata does not list")
	case info.Purpose == callevent.PurposeUserMedia:
		if err := r.media.Select(t); err != nil {
			r.log.Warn().Err(err).Msg("Selecting the peer's user-media stream")
		}
	default:
		log.Str("purpose", string(info.Purpose)).Msg("Not echoing a screen share")
		// Keep a user-media stream of the same kind selected.
		for _, other := range r.tracks {
			if other.Kind == t.Kind && streams[other.StreamID].Purpose == callevent.PurposeUserMedia {
				_ = r.media.Select(other)
			}
		}
	}
}

// snapshot reads the call's view from any goroutine.
func (r *callRunner) snapshot() callView {
	r.viewMu.Lock()
	defer r.viewMu.Unlock()
	return r.view
}

// changed persists the call and, once it has ended, retires the runner.
func (r *callRunner) changed(from call.State) {
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
	if m.State == call.StateConnected || m.State == call.StateEnded {
		select {
		case <-r.settled:
		default:
			close(r.settled)
		}
	}
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
		RoomID: m.Room, CallID: m.CallID, OurPartyID: m.Us.PartyID,
		PeerUserID: m.Peer.User, PeerPartyID: m.Peer.PartyID,
		Direction: dir, Version: string(m.Version), Video: m.Video,
		State: string(m.State), StateReason: m.Reason,
		HangupReason: string(m.HangupReason), HangupBy: string(m.HangupBy), Missed: m.Missed,
		InviteEventID: inviteEvent, Lifetime: m.Lifetime,
		CreatedAt: m.CreatedAt, AnsweredAt: m.AnsweredAt, ConnectedAt: m.ConnectedAt, EndedAt: m.EndedAt,
	}
}

// sessionEvents turns media session callbacks into inputs on the call's
// queue; it never blocks.
type sessionEvents struct{ r *callRunner }

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
