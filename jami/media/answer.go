package media

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// plan is what we answer to one offered section, decided from the offer
// alone (no sockets): parse and plan are what the fuzz target runs.
type plan struct {
	reject  bool
	why     string
	codec   Codec // ours, with the offer's payload type
	dtmf    Codec // PayloadType 0: none
	key     sdesKey
	mux     bool
	kind    webrtc.RTPCodecType
	offered Direction
}

// planAnswer decides each section of an offer.
func planAnswer(r *remoteDesc, opts Options) []plan {
	plans := make([]plan, len(r.sections))
	for i := range r.sections {
		plans[i] = planSection(&r.sections[i], opts)
	}
	return plans
}

func planSection(rs *remoteSection, opts Options) plan {
	p := plan{kind: rs.kind, offered: rs.dir, mux: rs.mux}
	switch {
	case rs.port == 0:
		return plan{reject: true, why: "disabled by the offer"}
	case rs.kind == webrtc.RTPCodecTypeAudio && !opts.Audio, rs.kind == webrtc.RTPCodecTypeVideo && !opts.Video:
		return plan{reject: true, why: "kind not wanted"}
	case rs.kind == 0:
		return plan{reject: true, why: "neither audio nor video"}
	case !strings.Contains(strings.ToUpper(rs.proto), "SAVP"):
		return plan{reject: true, why: "not SRTP (" + rs.proto + ")"}
	case len(rs.keys) == 0:
		return plan{reject: true, why: "no a=crypto we support"}
	}
	// Our order, not the offer's: jamid lists H.264 first, but VP8 (and
	// Opus) is what every WebRTC peer of a bridge shares, and the media is
	// forwarded, never transcoded.
	for _, pref := range preferred(rs.kind) {
		if f, ok := offeredFormat(rs.formats, pref); ok {
			p.codec = pref
			p.codec.PayloadType = f.PayloadType
			if f.Fmtp != "" && rs.kind == webrtc.RTPCodecTypeVideo {
				p.codec.Fmtp = f.Fmtp // H.264's profile is the offerer's to say
			}
			break
		}
	}
	if p.codec.Name == "" {
		return plan{reject: true, why: "no format we support"}
	}
	if rs.kind == webrtc.RTPCodecTypeAudio {
		if d, ok := pickDTMF(rs.dtmf, p.codec.ClockRate); ok {
			p.dtmf = d
		}
	}
	p.key = rs.keys[0]
	return p
}

// Answer answers the peer's offer: the first, or a re-offer on the same
// ICE session that changes directions or keys (else ErrNewSession).
func (s *Session) Answer(ctx context.Context, offer []byte) ([]byte, error) {
	r, err := parseRemote(offer)
	if err != nil {
		return nil, fmt.Errorf("reading the offer: %w", err)
	}
	plans := planAnswer(r, s.opts)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("answering: the session is closed")
	}
	switch s.state {
	case stateOffered:
		return nil, errors.New("answering: our own offer is out (glare)")
	case stateNew:
		if !r.hasICE() {
			return nil, fmt.Errorf("answering: %w: no ICE credentials (a=ice-ufrag, a=ice-pwd) in a first offer", errSDP)
		}
		if err := s.acceptOffer(ctx, r, plans); err != nil {
			return nil, fmt.Errorf("answering: %w", err)
		}
	case stateNegotiated:
		if err := s.acceptReoffer(ctx, r, plans); err != nil {
			return nil, fmt.Errorf("answering: %w", err)
		}
	}
	if r.hasICE() {
		s.remoteUfrag, s.remotePwd = r.ufrag, r.pwd
	}
	s.state = stateNegotiated
	s.version++
	return s.writeAnswer(r), nil
}

func (s *Session) acceptOffer(ctx context.Context, r *remoteDesc, plans []plan) error {
	s.controlling = false
	accepted := 0
	for i, p := range plans {
		rs := &r.sections[i]
		if p.reject {
			s.log.Debug().Int("section", i).Str("media", rs.media).Str("why", p.why).Msg("Rejecting a media section")
			kind := rs.kind
			st := &Stream{Index: i, Kind: kind, rejected: true, mid: rs.mid}
			if kind != 0 {
				st.Label = kind.String() + "_" + fmt.Sprint(s.countKind(kind))
			}
			s.streams = append(s.streams, st)
			continue
		}
		n := 2
		if p.mux {
			n = 1
		}
		st, err := s.newStream(ctx, p.kind, n)
		if err != nil {
			return err
		}
		st.mid, st.Mux, st.remoteIn = rs.mid, p.mux, rs
		st.Codec, st.SendPayloadType = p.codec, p.codec.PayloadType
		if p.dtmf.PayloadType != 0 {
			st.DTMFPayloadType, st.SendDTMFPayloadType, st.DTMFClockRate = p.dtmf.PayloadType, p.dtmf.PayloadType, p.dtmf.ClockRate
		}
		st.remote = p.key
		st.local, err = newKey(p.key.tag, p.key.suite)
		if err != nil {
			return err
		}
		st.dir.Store(int32(st.want.answerTo(p.offered)))
		accepted++
	}
	if accepted == 0 {
		return errors.New("no media section we can take")
	}
	return nil
}

func (s *Session) countKind(kind webrtc.RTPCodecType) int {
	n := 0
	for _, st := range s.streams {
		if st.Kind == kind {
			n++
		}
	}
	return n
}

// acceptReoffer takes a re-INVITE. On the same ICE session, directions
// and the peer's keys may change. With new ICE credentials (an ICE
// restart) each stream also gets new components, gathered here and
// connected by the next Connect, while its readers wait; rtcp-mux may
// change then. Formats, the suite and the sections may not.
func (s *Session) acceptReoffer(ctx context.Context, r *remoteDesc, plans []plan) error {
	// No credentials: the same ICE session (see parseRemote).
	restart := r.hasICE() && (r.ufrag != s.remoteUfrag || r.pwd != s.remotePwd)
	if len(r.sections) != len(s.streams) {
		return fmt.Errorf("%w (%d sections, we have %d)", ErrNewSession, len(r.sections), len(s.streams))
	}
	for i, st := range s.streams {
		p := plans[i]
		if st.rejected || p.reject {
			continue
		}
		if p.codec.Name != st.Codec.Name || p.codec.PayloadType != st.Codec.PayloadType {
			return fmt.Errorf("%w (stream %s changed format)", ErrNewSession, st.Label)
		}
		if p.mux != st.Mux && !restart {
			return fmt.Errorf("%w (stream %s changed rtcp-mux without an ICE restart)", ErrNewSession, st.Label)
		}
		if p.key.suite != st.local.suite {
			return fmt.Errorf("%w (stream %s changed crypto suite)", ErrNewSession, st.Label)
		}
	}
	if restart {
		if err := s.restartICE(ctx, plans); err != nil {
			return err
		}
	}
	for i, st := range s.streams {
		p := plans[i]
		if st.rejected {
			continue
		}
		if p.reject {
			if err := s.reject(st); err != nil {
				return err
			}
			continue
		}
		if err := st.rekeyRemote(p.key); err != nil {
			return err
		}
		if r.hasICE() { // else its candidates stay those of the session
			st.remoteIn = &r.sections[i]
		}
		st.dir.Store(int32(st.want.answerTo(p.offered)))
	}
	return nil
}

// restartICE gives every stream that stays new components with new
// credentials. Until all are gathered nothing changes, so a failure
// leaves the call on its old session.
func (s *Session) restartICE(ctx context.Context, plans []plan) error {
	g, err := s.gather(ctx, func(st *Stream) bool { return plans[st.Index].mux }, func(st *Stream) bool { return plans[st.Index].reject })
	if err != nil {
		return fmt.Errorf("restarting ICE: %w", err)
	}
	s.switchTo(g)
	for i, st := range s.streams {
		if g.comps[i] != nil {
			st.Mux = plans[i].mux
		}
	}
	s.controlling = false // the offerer controls
	s.log.Info().Msg("The peer restarted ICE: new components gathered")
	return nil
}

// gather makes a new ICE generation: new credentials, and new components
// for every stream not rejected (nor skipped), one if mux says so, else
// two. On failure nothing is left open.
func (s *Session) gather(ctx context.Context, mux func(*Stream) bool, skip ...func(*Stream) bool) (*iceGeneration, error) {
	ufrag, pwd, err := iceCredentials()
	if err != nil {
		return nil, err
	}
	g := &iceGeneration{ufrag: ufrag, pwd: pwd, comps: make([][]*component, len(s.streams))}
	for i, st := range s.streams {
		if st.rejected || (len(skip) > 0 && skip[0](st)) {
			continue
		}
		n := 2
		if mux(st) {
			n = 1
		}
		for id := 1; id <= n; id++ {
			c, err := s.newComponent(ctx, uint16(id), ufrag, pwd)
			if err != nil {
				g.close()
				return nil, fmt.Errorf("gathering stream %s: %w", st.Label, err)
			}
			g.comps[i] = append(g.comps[i], c)
		}
	}
	return g, nil
}

// switchTo makes g the session's ICE: each stream it has components for
// drops its old ones (their pumps end) and sends nothing until Connect.
func (s *Session) switchTo(g *iceGeneration) {
	s.ufrag, s.pwd = g.ufrag, g.pwd
	for i, st := range s.streams {
		if g.comps[i] == nil {
			continue
		}
		if st.rejected { // by the answer to the re-offer
			for _, c := range g.comps[i] {
				_ = c.close()
			}
			continue
		}
		st.tx.Store(nil) // sends are dropped until Connect
		for _, c := range st.comps {
			if err := c.close(); err != nil {
				st.log.Debug().Err(err).Msg("Closing a component the ICE restart replaced")
			}
		}
		st.comps = g.comps[i]
	}
}

func (g *iceGeneration) close() {
	for _, cs := range g.comps {
		for _, c := range cs {
			_ = c.close()
		}
	}
}

// offerICE is what our next description shows: the re-offer's new ICE
// while one is out, else the session's.
func (s *Session) offerICE() (ufrag, pwd string) {
	if s.pending != nil {
		return s.pending.ufrag, s.pending.pwd
	}
	return s.ufrag, s.pwd
}

// compsToShow are a stream's components as offerICE shows them.
func (s *Session) compsToShow(st *Stream) []*component {
	if s.pending != nil && s.pending.comps[st.Index] != nil {
		return s.pending.comps[st.Index]
	}
	return st.comps
}
