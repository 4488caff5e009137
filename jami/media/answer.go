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
	for _, f := range rs.formats {
		if ours, ok := supported(rs.kind, f); ok {
			p.codec = ours
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
// ICE session that changes directions or keys (else ErrICERestart).
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
		if err := s.acceptOffer(ctx, r, plans); err != nil {
			return nil, fmt.Errorf("answering: %w", err)
		}
	case stateNegotiated:
		if err := s.acceptReoffer(r, plans); err != nil {
			return nil, fmt.Errorf("answering: %w", err)
		}
	}
	s.remoteUfrag, s.remotePwd = r.ufrag, r.pwd
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

// acceptReoffer takes a re-INVITE on the same ICE session: directions
// and the peer's keys may change, nothing else.
func (s *Session) acceptReoffer(r *remoteDesc, plans []plan) error {
	if r.ufrag != s.remoteUfrag || r.pwd != s.remotePwd {
		return fmt.Errorf("%w (ICE restarted)", ErrICERestart)
	}
	if len(r.sections) != len(s.streams) {
		return fmt.Errorf("%w (%d sections, we have %d)", ErrICERestart, len(r.sections), len(s.streams))
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
		if p.codec.Name != st.Codec.Name || p.codec.PayloadType != st.Codec.PayloadType || p.mux != st.Mux {
			return fmt.Errorf("%w (stream %s changed format)", ErrICERestart, st.Label)
		}
		if p.key.suite != st.local.suite {
			return fmt.Errorf("%w (stream %s changed crypto suite)", ErrICERestart, st.Label)
		}
		if err := st.rekeyRemote(p.key); err != nil {
			return err
		}
		st.remoteIn = &r.sections[i]
		st.dir.Store(int32(st.want.answerTo(p.offered)))
	}
	return nil
}
