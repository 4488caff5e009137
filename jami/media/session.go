package media

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
)

// Options are what a session offers or accepts, and where it listens.
type Options struct {
	Audio, Video bool
	// IPs restricts the host candidates to these addresses (a loopback
	// one brings loopback in); empty: every address of every interface,
	// loopback only with IncludeLoopback.
	IPs []netip.Addr
	// Interfaces restricts the candidates to these interface names.
	Interfaces      []string
	IncludeLoopback bool
	// PortMin and PortMax bound the UDP ports (0: any).
	PortMin, PortMax uint16
	// RTCPMux offers a=rtcp-mux too (jamid does not, and ignores it).
	RTCPMux bool
	// Suite is the SDES suite of our offers (AES_CM_128_HMAC_SHA1_80 if
	// empty, as jamid's).
	Suite string
	// SRTCP protects the RTCP we send (RFC 3711), and then takes only
	// RTCP that authenticates. Off by default, because jami-daemon
	// neither sends nor reads SRTCP: its SocketPair encrypts and decrypts
	// RTP only (socket_pair.cpp, writeCallback and readCallback skip
	// packets of an RTCP type), so it would take our SRTCP's encrypted
	// report blocks for plain ones, and its reports fail authentication
	// here. Without SRTCP, RTCP goes out in the clear and what arrives is
	// taken as SRTCP when it authenticates, else as plain RTCP: what any
	// Jami peer sends. RTP is SRTP either way.
	SRTCP bool
	Log   zerolog.Logger
}

// ErrNewSession is returned for a re-offer (or answer) that changes more
// than a session can follow: the number of sections, a format, the crypto
// suite. New ICE credentials (jamid restarts ICE on most re-INVITEs it
// sends, a media change among them) are followed: see NeedsConnect.
var ErrNewSession = errors.New("the new description needs a new media session")

// Session is one Jami call's media: the offer/answer, then ICE and SRTP
// on each stream. Offer, Answer, SetAnswer and Connect are called in the
// order of the signalling, not concurrently; Streams' I/O may run
// concurrently with all of them after Connect.
type Session struct {
	opts       Options
	log        zerolog.Logger
	ufrag, pwd string
	originID   uint64
	suite      suite

	mu          sync.Mutex
	streams     []*Stream
	controlling bool
	state       state
	version     uint64
	remoteUfrag string
	remotePwd   string
	// pending is the ICE session a re-offer of ours brings (see Offer),
	// taken by SetAnswer, dropped by AbandonOffer.
	pending *iceGeneration
	closed  bool
	pumps   sync.WaitGroup // the streams' component readers
}

type state int

const (
	stateNew        state = iota
	stateOffered          // our offer is out, the answer not in
	stateNegotiated       // offer and answer done
)

// NewSession makes a session. Candidates are gathered when a description
// needs them (Offer or Answer), as the sections are known only then.
func NewSession(opts Options) (*Session, error) {
	ufrag, pwd, err := iceCredentials()
	if err != nil {
		return nil, err
	}
	name := opts.Suite
	if name == "" {
		name = suites[0].name
	}
	su, ok := suiteByName(name)
	if !ok {
		return nil, fmt.Errorf("making a media session: crypto suite %q not supported", name)
	}
	return &Session{
		opts: opts, log: opts.Log, ufrag: ufrag, pwd: pwd, suite: su,
		originID: uint64(time.Now().Unix()) + 2208988800, // an NTP time, as jamid's
	}, nil
}

// Streams are the sections of the negotiation, in SDP order (rejected
// ones included, see Stream.Rejected).
func (s *Session) Streams() []*Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Stream(nil), s.streams...)
}

// SetDirection sets what we ask for on a stream in the next offer or
// answer: SendOnly to hold the peer, SendRecv to resume.
func (s *Session) SetDirection(st *Stream, d Direction) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.want = d
}

// iceGeneration is a set of components under one pair of credentials:
// comps[i] are stream i's (nil for a rejected one).
type iceGeneration struct {
	ufrag, pwd string
	comps      [][]*component
}

// Offer makes our offer: the first, with a section per kind of Options,
// or a re-offer of the same sections and keys with the directions
// SetDirection set. A re-offer keeps the ICE session and says so the way
// jamid does to a peer of 11.0.2 or later: no credentials, no candidates
// (SIPCall::isNewIceMediaRequired); jamid then answers on the same
// session too. OfferICERestart is the re-offer for older peers.
func (s *Session) Offer(ctx context.Context) ([]byte, error) {
	return s.offer(ctx, false)
}

// OfferICERestart makes a re-offer that restarts ICE, for a peer older
// than 11.0.2 (which answers every re-INVITE with a new ICE session of
// its own: new credentials, ports and candidates), or to recover from a
// network change. The new components are gathered here while the old
// ones carry the call; SetAnswer swaps them and the next Connect
// connects them, or AbandonOffer drops them.
func (s *Session) OfferICERestart(ctx context.Context) ([]byte, error) {
	return s.offer(ctx, true)
}

func (s *Session) offer(ctx context.Context, restart bool) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("making an offer: the session is closed")
	}
	withICE := true
	switch s.state {
	case stateOffered:
		return nil, errors.New("making an offer: the previous one has no answer yet")
	case stateNegotiated:
		if !restart {
			withICE = false
			break
		}
		g, err := s.gather(ctx, func(st *Stream) bool { return st.Mux })
		if err != nil {
			return nil, fmt.Errorf("making a re-offer: %w", err)
		}
		s.pending = g
	case stateNew:
		s.controlling = true
		var kinds []webrtc.RTPCodecType
		if s.opts.Audio {
			kinds = append(kinds, webrtc.RTPCodecTypeAudio)
		}
		if s.opts.Video {
			kinds = append(kinds, webrtc.RTPCodecTypeVideo)
		}
		if len(kinds) == 0 {
			return nil, errors.New("making an offer: neither audio nor video")
		}
		for _, k := range kinds {
			st, err := s.newStream(ctx, k, 2)
			if err != nil {
				return nil, fmt.Errorf("making an offer: %w", err)
			}
			st.local, err = newKey("1", s.suite)
			if err != nil {
				return nil, err
			}
		}
	}
	s.state = stateOffered
	s.version++
	return s.writeOffer(withICE), nil
}

// newStream adds a section of a kind with n components, gathered.
func (s *Session) newStream(ctx context.Context, kind webrtc.RTPCodecType, n int) (*Stream, error) {
	idx := 0
	for _, st := range s.streams {
		if st.Kind == kind {
			idx++
		}
	}
	st := &Stream{
		Index: len(s.streams), Kind: kind, Label: kind.String() + "_" + strconv.Itoa(idx),
		inRTP: make(chan *inPacket, 128), inRTCP: make(chan *inPacket, 32), gone: make(chan struct{}),
		srtcp: s.opts.SRTCP,
	}
	st.log = s.log.With().Str("stream", st.Label).Logger()
	s.streams = append(s.streams, st)
	for id := 1; id <= n; id++ {
		c, err := s.newComponent(ctx, uint16(id), s.ufrag, s.pwd)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", st.Label, err)
		}
		st.comps = append(st.comps, c)
	}
	return st, nil
}

// SetAnswer takes the peer's answer to our offer.
func (s *Session) SetAnswer(answer []byte) error {
	r, err := parseRemote(answer)
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateOffered {
		return errors.New("reading the answer: no offer is out")
	}
	if len(r.sections) != len(s.streams) {
		return fmt.Errorf("reading the answer: %d sections for our %d", len(r.sections), len(s.streams))
	}
	renegotiation := s.remoteUfrag != ""
	if !r.hasICE() && (!renegotiation || s.pending != nil) {
		return fmt.Errorf("reading the answer: %w: no ICE credentials (a=ice-ufrag, a=ice-pwd) for our new ICE session", errSDP)
	}
	for i, st := range s.streams {
		if err := s.takeAnswer(st, &r.sections[i], renegotiation, r.hasICE()); err != nil {
			return fmt.Errorf("reading the answer: %w", err)
		}
	}
	if s.pending != nil {
		// Our re-offer restarted ICE: the answer's session (new, from
		// jamid) is checked against our new components, as offerer and
		// so controlling (RFC 8445 9).
		s.switchTo(s.pending)
		s.pending = nil
		s.controlling = true
		s.log.Info().Msg("Our re-offer restarted ICE: connecting the new components")
	}
	if r.hasICE() {
		s.remoteUfrag, s.remotePwd = r.ufrag, r.pwd
	}
	s.state = stateNegotiated
	return nil
}

// AbandonOffer drops an offer that got no answer (the peer refused the
// re-INVITE, or it timed out): the call stays on its ICE session, and a
// re-offer's gathered components are closed. After a first offer the
// session has nothing to go back to: close it instead.
func (s *Session) AbandonOffer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateOffered || s.remoteUfrag == "" {
		return
	}
	if s.pending != nil {
		s.pending.close()
		s.pending = nil
	}
	s.state = stateNegotiated
}

// takeAnswer applies one answered section to its stream.
// Without ICE credentials (the same ICE session) its candidates stay.
func (s *Session) takeAnswer(st *Stream, rs *remoteSection, renegotiation, withICE bool) error {
	if st.rejected {
		return nil
	}
	if rs.port == 0 || rs.kind != st.Kind {
		return s.reject(st)
	}
	offered := ourFormats(st.Kind, s.opts)
	if renegotiation {
		offered = []Codec{st.Codec} // what the re-offer had (writeOffer)
	}
	var codec Codec
	var found bool
	for _, f := range rs.formats {
		for _, o := range offered {
			if o.Name == f.Name && o.ClockRate == f.ClockRate {
				codec, found = f, true
				codec.PayloadType = o.PayloadType
				codec.Name, codec.Channels = o.Name, o.Channels
				if codec.Fmtp == "" {
					codec.Fmtp = o.Fmtp
				}
				break
			}
		}
		if found {
			break
		}
	}
	if !found {
		return fmt.Errorf("stream %s: the answer has none of our formats", st.Label)
	}
	if len(rs.keys) == 0 {
		return fmt.Errorf("stream %s: the answer has no a=crypto we can use", st.Label)
	}
	if renegotiation {
		if codec.PayloadType != st.Codec.PayloadType || codec.Name != st.Codec.Name {
			return fmt.Errorf("stream %s: %w (codec changed)", st.Label, ErrNewSession)
		}
	} else {
		st.Codec = codec
		st.SendPayloadType = rs.formats[indexOfName(rs.formats, codec.Name)].PayloadType
		if d, ok := pickDTMF(rs.dtmf, codec.ClockRate); ok {
			st.DTMFPayloadType, st.SendDTMFPayloadType, st.DTMFClockRate = telephoneEvent.PayloadType, d.PayloadType, d.ClockRate
		}
		st.Mux = s.opts.RTCPMux && rs.mux
	}
	if err := st.rekeyRemote(rs.keys[0]); err != nil {
		return err
	}
	if withICE {
		st.remoteIn = rs
	}
	st.dir.Store(int32(makeDirection(st.want.Sends() && rs.dir.Receives(), st.want.Receives() && rs.dir.Sends())))
	return nil
}

func indexOfName(fs []Codec, name string) int {
	for i, f := range fs {
		if strings.EqualFold(f.Name, name) {
			return i
		}
	}
	return 0
}

// pickDTMF is the telephone-event at the codec's clock rate if offered,
// else the first one (jamid's is at 8000 Hz whatever the codec).
func pickDTMF(ds []Codec, clock uint32) (Codec, bool) {
	for _, d := range ds {
		if d.ClockRate == clock {
			return d, true
		}
	}
	if len(ds) > 0 {
		return ds[0], true
	}
	return Codec{}, false
}

// reject refuses a section: its components are closed.
func (s *Session) reject(st *Stream) error {
	st.rejected = true
	var errs []error
	for _, c := range st.comps {
		errs = append(errs, c.close())
	}
	st.comps = nil
	return errors.Join(errs...)
}

// Close ends the session: the agents and their sockets are closed, and
// readers of the streams get errors.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var errs []error
	if s.pending != nil {
		s.pending.close()
		s.pending = nil
	}
	for _, st := range s.streams {
		for _, c := range st.comps {
			errs = append(errs, c.close())
		}
	}
	s.mu.Unlock()
	s.pumps.Wait()
	for _, st := range s.streams {
		if st.gone != nil {
			close(st.gone)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing the media session: %w", err)
	}
	return nil
}
