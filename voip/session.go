package voip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/internal/opqueue"
)

// Handler receives a session's events. Calls come one at a time, in order,
// from a goroutine of the session's own (never from a pion callback), so a
// handler may call the session's methods.
type Handler interface {
	// OnLocalCandidates hands out local ICE candidates not yet in a
	// description the session returned, in batches (see SetCandidateBatch);
	// done marks the end of gathering and may come with an empty batch.
	OnLocalCandidates(candidates []webrtc.ICECandidateInit, done bool)
	// OnTrack reports a new inbound track.
	OnTrack(track *InboundTrack)
	// OnConnectionState reports the connection state.
	OnConnectionState(state webrtc.PeerConnectionState)
	// OnNegotiationNeeded says a local change needs a new offer.
	OnNegotiationNeeded()
}

// UnimplementedHandler ignores every event; embed it to handle only some.
type UnimplementedHandler struct{}

// OnLocalCandidates implements Handler.
func (UnimplementedHandler) OnLocalCandidates([]webrtc.ICECandidateInit, bool) {}

// OnTrack implements Handler.
func (UnimplementedHandler) OnTrack(*InboundTrack) {}

// OnConnectionState implements Handler.
func (UnimplementedHandler) OnConnectionState(webrtc.PeerConnectionState) {}

// OnNegotiationNeeded implements Handler.
func (UnimplementedHandler) OnNegotiationNeeded() {}

// Session is one WebRTC PeerConnection. Every change to it (descriptions,
// candidates, tracks, ICE restarts) runs on one ordered operation queue, so
// signalling that arrives out of order from several goroutines is applied in
// the order it was posted. A Session is a Leg.
type Session struct {
	id      string
	log     zerolog.Logger
	pc      *webrtc.PeerConnection
	ops     *opqueue.Queue
	events  *opqueue.Queue
	handler Handler
	stats   atomic.Pointer[stats.Getter]

	// Touched only on the op queue.
	remoteSet bool
	// setup is our DTLS role as the first negotiation settled it, in
	// a=setup terms ("active": client, "passive": server); "" before.
	setup          string
	pendingRemote  []webrtc.ICECandidateInit
	described      map[string]bool // local candidates already in a returned description
	localReleased  bool            // a local description was returned: trickle may start
	localPending   []webrtc.ICECandidateInit
	gatheringDone  bool
	batchDelay     time.Duration
	batchTimer     *time.Timer
	gatherComplete chan struct{}
	untilHosts     bool          // GatherHosts: a description waits for hostsIn
	hosts          int           // host candidates of this gathering so far
	hostsWanted    int           // how many hostsIn waits for (0: not waiting)
	hostsIn        chan struct{} // closed once hostsWanted host candidates came

	mu        sync.Mutex // guards the fields below, read by other goroutines
	inbound   []*InboundTrack
	outbound  []*OutboundTrack
	listeners []func(*InboundTrack)
	closed    bool
	done      chan struct{}
	routines  sync.WaitGroup

	lastPLI     sync.Map // SSRC -> time.Time of the last keyframe request sent
	pliInterval time.Duration

	engine     *Engine
	lastSRs    sync.Map // remote SSRC -> lastSR
	reportSSRC uint32   // sender SSRC of receiver reports when nothing is sent
	reportSlot int      // which tenth of the report interval the session reports in
}

// defaultPLIInterval bounds keyframe requests per stream: a forwarder passes on
// every receiver's request, and one keyframe serves them all.
const defaultPLIInterval = 250 * time.Millisecond

var _ Leg = (*Session)(nil)

// NewSession creates a PeerConnection with the engine's settings and opts.
// Events go to h (which may be nil).
func (e *Engine) NewSession(id string, h Handler, opts SessionOptions) (*Session, error) {
	if h == nil {
		h = UnimplementedHandler{}
	}
	s := &Session{
		id:             id,
		log:            e.log.With().Str("leg", id).Logger(),
		ops:            opqueue.New(),
		events:         opqueue.New(),
		handler:        h,
		described:      map[string]bool{},
		gatherComplete: make(chan struct{}),
		untilHosts:     opts.GatherUntil == GatherHosts,
		hostsIn:        make(chan struct{}),
		done:           make(chan struct{}),
		pliInterval:    defaultPLIInterval,
		engine:         e,
		reportSSRC:     rand.Uint32(),
		reportSlot:     randomSlot(),
	}
	api, err := e.newAPI(opts, func(g stats.Getter) { s.stats.Store(&g) })
	if err != nil {
		s.ops.CloseAndWait()
		s.events.CloseAndWait()
		return nil, err
	}
	s.pc, err = api.NewPeerConnection(webrtc.Configuration{ICEServers: opts.ICEServers})
	if err != nil {
		s.ops.CloseAndWait()
		s.events.CloseAndWait()
		return nil, fmt.Errorf("creating peer connection: %w", err)
	}
	// pion callbacks only post to the queues: they must never block.
	s.pc.OnICECandidate(func(c *webrtc.ICECandidate) { s.ops.Post(func() { s.localCandidate(c) }) })
	s.pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) { s.ops.Post(func() { s.addInbound(t, r) }) })
	s.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		s.events.Post(func() { s.handler.OnConnectionState(st) })
		if st == webrtc.PeerConnectionStateClosed || st == webrtc.PeerConnectionStateFailed {
			s.markDone()
		}
	})
	s.pc.OnNegotiationNeeded(func() { s.events.Post(s.handler.OnNegotiationNeeded) })
	e.reporter.add(s)
	return s, nil
}

// ID implements Leg.
func (s *Session) ID() string { return s.id }

// PeerConnection is the underlying connection, for tests and stats.
func (s *Session) PeerConnection() *webrtc.PeerConnection { return s.pc }

// SetCandidateBatch sets how long local candidates collect before they are
// handed out together (0: each as it is found). Matrix trickles in batches.
func (s *Session) SetCandidateBatch(ctx context.Context, d time.Duration) error {
	return s.ops.Do(ctx, func() error {
		s.batchDelay = d
		return nil
	})
}

// OfferOptions change an offer.
type OfferOptions struct {
	ICERestart bool
	// GatherWait is how long to let candidates gather into the description
	// before returning it (less once what SessionOptions.GatherUntil waits
	// for is in); the rest trickle.
	GatherWait time.Duration
}

// CreateOffer makes an offer, sets it as the local description and returns
// it, with the candidates gathered within opts.GatherWait.
func (s *Session) CreateOffer(ctx context.Context, opts OfferOptions) (webrtc.SessionDescription, error) {
	var desc webrtc.SessionDescription
	err := s.ops.Do(ctx, func() error {
		offer, err := s.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: opts.ICERestart})
		if err != nil {
			return fmt.Errorf("creating offer: %w", err)
		}
		if err = s.pc.SetLocalDescription(offer); err != nil {
			return fmt.Errorf("setting local offer: %w", err)
		}
		return nil
	})
	if err != nil {
		return desc, err
	}
	return s.describeLocal(ctx, opts.GatherWait)
}

// CreateAnswer answers the remote offer, sets the answer as the local
// description and returns it, with the candidates gathered within
// gatherWait (returning sooner once what SessionOptions.GatherUntil waits
// for is in).
func (s *Session) CreateAnswer(ctx context.Context, gatherWait time.Duration) (webrtc.SessionDescription, error) {
	var offer, setup string
	err := s.ops.Do(ctx, func() error {
		answer, err := s.pc.CreateAnswer(nil)
		if err != nil {
			return fmt.Errorf("creating answer: %w", err)
		}
		if err = s.pc.SetLocalDescription(answer); err != nil {
			return fmt.Errorf("setting local answer: %w", err)
		}
		if remote := s.pc.RemoteDescription(); remote != nil {
			offer = remote.SDP
		}
		if s.setup == "" {
			s.setup = setupOf(answer.SDP)
		}
		setup = s.setup
		return nil
	})
	if err != nil {
		return webrtc.SessionDescription{}, err
	}
	desc, err := s.describeLocal(ctx, gatherWait)
	if err == nil && offer != "" {
		desc.SDP = fitDirections(offer, desc.SDP)
	}
	if err == nil && setup != "" {
		desc.SDP = withSetup(desc.SDP, setup)
	}
	return desc, err
}

// setupOf is a description's first a=setup value.
func setupOf(sdp string) string {
	for l := range strings.Lines(sdp) {
		if v, ok := strings.CutPrefix(strings.TrimRight(l, "\r\n"), "a=setup:"); ok {
			return v
		}
	}
	return ""
}

// withSetup makes every a=setup of an answer say our DTLS role. pion
// answers a re-offer's a=setup:actpass (browsers always offer actpass) as
// it would a first offer, with active, whatever role the DTLS transport
// already has; when the first offer was ours and the peer took active, a
// browser refuses that answer ("Failed to set SSL role for the
// transport"). pion's own DTLS transport is not restarted by a
// renegotiation, so the role in the answer we send is the one that holds.
func withSetup(sdp, setup string) string {
	var b strings.Builder
	for l := range strings.Lines(sdp) {
		if strings.HasPrefix(l, "a=setup:") {
			eol := l[len(strings.TrimRight(l, "\r\n")):]
			l = "a=setup:" + setup + eol
		}
		b.WriteString(l)
	}
	return b.String()
}

// fitDirections makes each media section of an answer say a direction the
// offer allows: pion answers a sendonly offer (a peer putting us on hold,
// as matrix-js-sdk does) with sendrecv, which browsers refuse ("Incompatible
// receive direction"). What pion keeps locally is unchanged: it sends into
// a section the peer does not receive, which the peer drops (and the call
// sends nothing while on hold anyway).
func fitDirections(offer, answer string) string {
	offered := sectionDirections(offer)
	lines := strings.SplitAfter(answer, "\n")
	section := -1
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(t, "m=") {
			section++
			continue
		}
		if section < 0 || section >= len(offered) || !isDirection(t) {
			continue
		}
		if fitted := fitDirection(offered[section], strings.TrimPrefix(t, "a=")); fitted != strings.TrimPrefix(t, "a=") {
			lines[i] = strings.Replace(l, t, "a="+fitted, 1)
		}
	}
	return strings.Join(lines, "")
}

// sectionDirections lists each media section's direction (sendrecv when
// it has none).
func sectionDirections(sdp string) []string {
	var out []string
	for line := range strings.SplitSeq(sdp, "\n") {
		t := strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(t, "m="):
			out = append(out, "sendrecv")
		case len(out) > 0 && isDirection(t):
			out[len(out)-1] = strings.TrimPrefix(t, "a=")
		}
	}
	return out
}

func isDirection(line string) bool {
	switch line {
	case "a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive":
		return true
	}
	return false
}

// fitDirection is the answer's direction within what the offer allows:
// we may receive only what the peer sends, send only what it receives.
func fitDirection(offer, answer string) string {
	peerSends := offer == "sendrecv" || offer == "sendonly"
	peerReceives := offer == "sendrecv" || offer == "recvonly"
	weSend := (answer == "sendrecv" || answer == "sendonly") && peerReceives
	weReceive := (answer == "sendrecv" || answer == "recvonly") && peerSends
	switch {
	case weSend && weReceive:
		return "sendrecv"
	case weSend:
		return "sendonly"
	case weReceive:
		return "recvonly"
	}
	return "inactive"
}

// describeLocal waits up to wait for gathering to complete (or, with
// GatherHosts, for the host candidates), then returns the local
// description and releases later candidates to trickle.
func (s *Session) describeLocal(ctx context.Context, wait time.Duration) (webrtc.SessionDescription, error) {
	if wait > 0 {
		deadline := time.Now().Add(wait)
		want := 0
		if s.untilHosts {
			hctx, cancel := context.WithDeadline(ctx, deadline)
			want = s.engine.hostCandidates(hctx)
			cancel()
		}
		var complete, hostsIn chan struct{}
		if err := s.ops.Do(ctx, func() error {
			complete = s.gatherComplete
			if want > 0 {
				s.hostsWanted = want
				s.checkHosts()
				hostsIn = s.hostsIn
			}
			return nil
		}); err != nil {
			return webrtc.SessionDescription{}, err
		}
		timer := time.NewTimer(time.Until(deadline))
		select {
		case <-complete:
		case <-hostsIn: // nil unless waiting for the host candidates
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
	var desc webrtc.SessionDescription
	err := s.ops.Do(ctx, func() error {
		local := s.pc.LocalDescription()
		if local == nil {
			return errors.New("no local description")
		}
		desc = *local
		for line := range strings.SplitSeq(desc.SDP, "\n") {
			if c, ok := strings.CutPrefix(strings.TrimSpace(line), "a="); ok && strings.HasPrefix(c, "candidate:") {
				s.described[c] = true
			}
		}
		s.localPending = slices.DeleteFunc(s.localPending, func(c webrtc.ICECandidateInit) bool { return s.described[c.Candidate] })
		s.localReleased = true
		s.scheduleLocal()
		return nil
	})
	return desc, err
}

// SetRemoteDescription applies the remote offer or answer, then the remote
// candidates that arrived before it.
func (s *Session) SetRemoteDescription(ctx context.Context, desc webrtc.SessionDescription) error {
	return s.ops.Do(ctx, func() error {
		before := s.pc.SignalingState()
		if err := s.pc.SetRemoteDescription(desc); err != nil {
			// pion takes a description in before it checks much of what it
			// carries (ICE credentials, candidates), and cannot roll a remote
			// offer back: such a session takes no further offer or answer.
			// CheckSDP refuses what pion would refuse that late.
			if s.pc.SignalingState() != before {
				return fmt.Errorf("setting remote %s: %w: %w", desc.Type, ErrNegotiationStuck, err)
			}
			return fmt.Errorf("setting remote %s: %w", desc.Type, err)
		}
		s.remoteSet = true
		if desc.Type == webrtc.SDPTypeAnswer && s.setup == "" {
			switch setupOf(desc.SDP) { // the answerer's role; ours is the other
			case "active":
				s.setup = "passive"
			case "passive":
				s.setup = "active"
			}
		}
		pending := s.pendingRemote
		s.pendingRemote = nil
		for _, c := range pending {
			if err := s.pc.AddICECandidate(c); err != nil {
				s.log.Debug().Err(err).Str("candidate", c.Candidate).Msg("Ignoring remote candidate")
			}
		}
		return nil
	})
}

// ErrNegotiationStuck is a remote description that failed after the session
// took it in: the session cannot negotiate any more.
var ErrNegotiationStuck = errors.New("the media session is stuck halfway through a negotiation")

// Rollback abandons a local offer (glare: the other side's offer wins).
func (s *Session) Rollback(ctx context.Context) error {
	return s.ops.Do(ctx, func() error {
		return s.pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
	})
}

// AddRemoteCandidates adds remote candidates, keeping them until the remote
// description is set. An empty candidate (end of candidates) is skipped.
func (s *Session) AddRemoteCandidates(ctx context.Context, candidates []webrtc.ICECandidateInit) error {
	return s.ops.Do(ctx, func() error {
		for _, c := range candidates {
			if strings.TrimSpace(c.Candidate) == "" {
				continue
			}
			if !s.remoteSet {
				s.pendingRemote = append(s.pendingRemote, c)
				continue
			}
			if err := s.pc.AddICECandidate(c); err != nil {
				// A bad candidate must not fail the others.
				s.log.Debug().Err(err).Str("candidate", c.Candidate).Msg("Ignoring remote candidate")
			}
		}
		return nil
	})
}

// RestartICE makes an offer with new ICE credentials.
func (s *Session) RestartICE(ctx context.Context, gatherWait time.Duration) (webrtc.SessionDescription, error) {
	s.ops.Post(func() {
		s.gatheringDone = false
		s.described = map[string]bool{}
		s.localReleased = false
		s.gatherComplete = make(chan struct{})
		s.hosts, s.hostsWanted = 0, 0
		s.hostsIn = make(chan struct{})
	})
	return s.CreateOffer(ctx, OfferOptions{ICERestart: true, GatherWait: gatherWait})
}

// HoldOffer makes an offer that puts the peer on hold, or resumes it (hold
// false), as matrix-js-sdk's setRemoteOnHold does: every section sendonly
// while on hold. pion has no way to set a transceiver's direction, so the
// session's own offer stays sendrecv and the offer returned for the peer
// says sendonly; the peer's answer (recvonly) then stops what it sends,
// which is what hold is, and our side keeps sending what the forwarder
// gives it (nothing, while the other party holds).
func (s *Session) HoldOffer(ctx context.Context, hold bool, gatherWait time.Duration) (webrtc.SessionDescription, error) {
	desc, err := s.CreateOffer(ctx, OfferOptions{GatherWait: gatherWait})
	if err != nil || !hold {
		return desc, err
	}
	desc.SDP = sdpHold(desc.SDP)
	return desc, nil
}

// sdpHold turns every audio and video section's sendrecv into sendonly and
// recvonly into inactive.
func sdpHold(sdp string) string {
	lines := strings.SplitAfter(sdp, "\n")
	media := false
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		switch {
		case strings.HasPrefix(t, "m="):
			media = strings.HasPrefix(t, "m=audio") || strings.HasPrefix(t, "m=video")
		case media && t == "a=sendrecv":
			lines[i] = strings.Replace(l, "a=sendrecv", "a=sendonly", 1)
		case media && t == "a=recvonly":
			lines[i] = strings.Replace(l, "a=recvonly", "a=inactive", 1)
		}
	}
	return strings.Join(lines, "")
}

// localCandidate runs on the op queue for each gathered candidate, and once
// with nil when gathering completes.
func (s *Session) localCandidate(c *webrtc.ICECandidate) {
	if c == nil {
		s.gatheringDone = true
		select {
		case <-s.gatherComplete:
		default:
			close(s.gatherComplete)
			// What this machine yields now, for the next calls' wait.
			s.engine.noteHosts(s.hosts)
		}
	} else {
		if c.Typ == webrtc.ICECandidateTypeHost {
			s.hosts++
			s.checkHosts()
		}
		if init := c.ToJSON(); !s.described[init.Candidate] {
			s.localPending = append(s.localPending, init)
		}
	}
	s.scheduleLocal()
}

// checkHosts releases a description waiting for the host candidates once
// they are in.
func (s *Session) checkHosts() {
	if s.hostsWanted == 0 || s.hosts < s.hostsWanted {
		return
	}
	select {
	case <-s.hostsIn:
	default:
		close(s.hostsIn)
	}
}

// scheduleLocal hands out pending local candidates once a description was
// returned: at once at the end of gathering or without batching, else when
// the batch interval has passed.
func (s *Session) scheduleLocal() {
	switch {
	case !s.localReleased:
	case s.gatheringDone:
		s.handOutLocal(true)
	case len(s.localPending) == 0:
	case s.batchDelay == 0:
		s.handOutLocal(false)
	case s.batchTimer == nil:
		s.batchTimer = time.AfterFunc(s.batchDelay, func() {
			s.ops.Post(func() {
				s.batchTimer = nil
				if s.localReleased && len(s.localPending) > 0 {
					s.handOutLocal(false)
				}
			})
		})
	}
}

func (s *Session) handOutLocal(done bool) {
	batch := s.localPending
	s.localPending = nil
	for _, c := range batch {
		s.described[c.Candidate] = true
	}
	if done {
		// The end of candidates is reported once per gathering.
		s.gatheringDone = false
		s.localReleased = false
		if s.batchTimer != nil {
			s.batchTimer.Stop()
			s.batchTimer = nil
		}
	}
	s.events.Post(func() { s.handler.OnLocalCandidates(batch, done) })
}

// AddOutbound adds a track the session sends. Before an offer it adds a
// new transceiver; after a remote offer it takes the offer's transceiver of
// the same kind.
func (s *Session) AddOutbound(ctx context.Context, track *OutboundTrack) error {
	return s.ops.Do(ctx, func() error {
		sender, err := s.pc.AddTrack(track)
		if err != nil {
			return fmt.Errorf("adding %s track: %w", track.Kind(), err)
		}
		s.mu.Lock()
		s.outbound = append(s.outbound, track)
		s.mu.Unlock()
		s.routines.Add(1)
		go s.drainRTCP(sender, track)
		return nil
	})
}

// AddReceiver asks to receive a kind of media without sending any (a
// recvonly transceiver), for offers from a leg that only listens.
func (s *Session) AddReceiver(ctx context.Context, kind webrtc.RTPCodecType) error {
	return s.ops.Do(ctx, func() error {
		_, err := s.pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		return err
	})
}

// NegotiatedCodecs returns the formats negotiated for the session's
// receivers of a kind, in the remote side's order of preference.
func (s *Session) NegotiatedCodecs(kind webrtc.RTPCodecType) []webrtc.RTPCodecParameters {
	var out []webrtc.RTPCodecParameters
	for _, t := range s.pc.GetTransceivers() {
		if t.Kind() != kind || t.Receiver() == nil {
			continue
		}
		for _, c := range t.Receiver().GetParameters().Codecs {
			if !strings.EqualFold(c.MimeType, MimeTypeTelephoneEvent) && !strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) {
				out = append(out, c)
			}
		}
	}
	return out
}

// drainRTCP reads the RTCP a sender receives (pion's interceptors, NACK
// among them, act on it only when it is read): keyframe requests and the
// peer's reception reports.
func (s *Session) drainRTCP(sender *webrtc.RTPSender, track *OutboundTrack) {
	defer s.routines.Done()
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		s.handleOutboundRTCP(track, pkts, time.Now())
	}
}

// addInbound runs on the op queue for each remote track.
func (s *Session) addInbound(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	codec := t.Codec()
	if !codecOfKind(codec, t.Kind()) {
		// pion looks the first packet's payload type up among every
		// negotiated codec, audio and video: a video stream whose first
		// packet bore an audio payload type (seen once: PCMU on a
		// browser's video) would otherwise be taken for audio in video.
		// The receiver's own codecs say what the stream carries.
		for _, c := range r.GetParameters().Codecs {
			if codecOfKind(c, t.Kind()) && !strings.EqualFold(c.MimeType, "video/rtx") {
				s.log.Warn().Str("kind", t.Kind().String()).Str("pion_codec", codec.MimeType).Str("codec", c.MimeType).
					Msg("An inbound track's codec is of another kind; taking its receiver's")
				codec = c
				break
			}
		}
	}
	in := &InboundTrack{
		Kind:     t.Kind(),
		Codec:    codec,
		ID:       t.ID(),
		StreamID: t.StreamID(),
		Leg:      s.id,
		ssrc:     uint32(t.SSRC()),
		read: func(b []byte) (int, error) {
			n, _, err := t.Read(b)
			return n, err
		},
	}
	in.keyframe = func() { s.requestKeyframe(in.ssrc) }
	if slices.ContainsFunc(in.Codec.RTCPFeedback, func(fb webrtc.RTCPFeedback) bool { return fb.Type == webrtc.TypeRTCPFBNACK && fb.Parameter == "" }) {
		in.nack = newNackTracker(in.ssrc, s.sendNACK, s.rtt, in.jitter)
	}
	for _, c := range r.GetParameters().Codecs {
		if strings.EqualFold(c.MimeType, MimeTypeTelephoneEvent) && c.ClockRate == in.Codec.ClockRate {
			in.DTMFPayloadType = uint8(c.PayloadType)
		}
	}
	// The receiver's RTCP must be read too, or its buffer fills; it brings
	// the sender's reports that our receiver reports refer to.
	s.routines.Add(1)
	go func() {
		defer s.routines.Done()
		for {
			pkts, _, err := r.ReadRTCP()
			if err != nil {
				return
			}
			s.handleInboundRTCP(pkts, time.Now())
		}
	}()
	s.mu.Lock()
	s.inbound = append(s.inbound, in)
	listeners := slices.Clone(s.listeners)
	s.mu.Unlock()
	for _, fn := range listeners {
		fn(in)
	}
	s.events.Post(func() { s.handler.OnTrack(in) })
}

// codecOfKind says whether a codec carries media of kind.
func codecOfKind(c webrtc.RTPCodecParameters, kind webrtc.RTPCodecType) bool {
	mime := strings.ToLower(c.MimeType)
	switch kind {
	case webrtc.RTPCodecTypeAudio:
		return strings.HasPrefix(mime, "audio/")
	case webrtc.RTPCodecTypeVideo:
		return strings.HasPrefix(mime, "video/")
	}
	return false
}

// requestKeyframe sends a PLI, at most one per pliInterval per stream.
func (s *Session) requestKeyframe(ssrc uint32) {
	now := time.Now()
	if last, ok := s.lastPLI.Load(ssrc); ok && now.Sub(last.(time.Time)) < s.pliInterval {
		return
	}
	s.lastPLI.Store(ssrc, now)
	if err := s.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		s.log.Debug().Err(err).Uint32("ssrc", ssrc).Msg("Failed to send keyframe request")
	}
}

func (s *Session) sendNACK(n *rtcp.TransportLayerNack) error {
	n.SenderSSRC = s.reportSSRC
	return s.pc.WriteRTCP([]rtcp.Packet{n})
}

// rtt is the round-trip time the peer's reports show, 0 before any.
func (s *Session) rtt() time.Duration {
	s.mu.Lock()
	outbound := s.outbound
	s.mu.Unlock()
	for _, o := range outbound {
		if d := o.remote.rttNanos.Load(); d > 0 {
			return time.Duration(d)
		}
	}
	return 0
}

// OnInbound implements Leg.
func (s *Session) OnInbound(fn func(*InboundTrack)) {
	s.mu.Lock()
	s.listeners = append(s.listeners, fn)
	existing := slices.Clone(s.inbound)
	s.mu.Unlock()
	for _, t := range existing {
		fn(t)
	}
}

// Outbound implements Leg.
func (s *Session) Outbound(kind webrtc.RTPCodecType) *OutboundTrack {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.outbound {
		if t.Kind() == kind {
			return t
		}
	}
	return nil
}

// Done implements Leg: closed when the session is closed or failed.
func (s *Session) Done() <-chan struct{} { return s.done }

func (s *Session) markDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
}

// Close implements Leg: it closes the connection and waits for the
// session's goroutines.
func (s *Session) Close() error {
	s.engine.reporter.remove(s)
	s.markDone()
	err := s.pc.Close()
	s.ops.Post(func() {
		if s.batchTimer != nil {
			s.batchTimer.Stop()
		}
	})
	s.ops.CloseAndWait()
	s.events.CloseAndWait()
	s.routines.Wait()
	s.mu.Lock()
	for _, t := range s.inbound {
		if t.nack != nil {
			t.nack.close()
		}
	}
	s.mu.Unlock()
	return err
}
