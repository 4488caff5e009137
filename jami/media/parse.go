package media

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// remoteDesc is what we take from the peer's SDP.
type remoteDesc struct {
	ufrag, pwd string
	sections   []remoteSection
}

// remoteSection is one m= section of the peer's SDP.
type remoteSection struct {
	kind     webrtc.RTPCodecType // 0: neither audio nor video
	media    string
	port     int
	proto    string
	rawFmts  []string
	formats  []Codec // in the order listed, telephone-event excluded
	dtmf     []Codec
	keys     []sdesKey // the a=crypto lines we can use, in order
	cands    [2][]ice.Candidate
	addr     netip.Addr // c=
	rtcpPort int        // a=rtcp, 0 if none
	rtcpAddr netip.Addr
	dir      Direction
	mux      bool
	mid      string
}

var errSDP = errors.New("invalid SDP")

// parseRemote reads an offer or answer leniently: unknown attributes and
// sections are kept out of the way, not refused. A description may carry
// no ICE credentials: jamid's re-offers to a peer of version 11.0.2 or
// later keep the call's ICE session and say so by leaving them out
// (SIPCall::isNewIceMediaRequired); whether that is allowed is the
// session's to say. Half a pair is an error.
func parseRemote(b []byte) (*remoteDesc, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(string(b)); err != nil {
		return nil, fmt.Errorf("%w: %w", errSDP, err)
	}
	r := &remoteDesc{}
	sessionDir := SendRecv
	for _, a := range d.Attributes {
		switch a.Key {
		case "ice-ufrag":
			r.ufrag = a.Value
		case "ice-pwd":
			r.pwd = a.Value
		default:
			if dir, ok := parseDirection(a.Key); ok {
				sessionDir = dir
			}
		}
	}
	var sessionAddr netip.Addr
	if d.ConnectionInformation != nil && d.ConnectionInformation.Address != nil {
		sessionAddr, _ = netip.ParseAddr(d.ConnectionInformation.Address.Address)
	}
	for i, m := range d.MediaDescriptions {
		s, ufrag, pwd := parseSection(i, m, sessionAddr, sessionDir)
		// Media-level credentials (RFC 8839) when the session has none.
		if r.ufrag == "" {
			r.ufrag, r.pwd = ufrag, pwd
		}
		r.sections = append(r.sections, s)
	}
	if len(r.sections) == 0 {
		return nil, fmt.Errorf("%w: no media section", errSDP)
	}
	if (r.ufrag == "") != (r.pwd == "") {
		return nil, fmt.Errorf("%w: half an ICE credential pair (a=ice-ufrag, a=ice-pwd)", errSDP)
	}
	return r, nil
}

func parseSection(idx int, m *sdp.MediaDescription, sessionAddr netip.Addr, dir Direction) (s remoteSection, ufrag, pwd string) {
	s = remoteSection{media: m.MediaName.Media, port: m.MediaName.Port.Value, proto: strings.Join(m.MediaName.Protos, "/"),
		rawFmts: m.MediaName.Formats, addr: sessionAddr, dir: dir}
	switch strings.ToLower(s.media) {
	case "audio":
		s.kind = webrtc.RTPCodecTypeAudio
	case "video":
		s.kind = webrtc.RTPCodecTypeVideo
	}
	if m.ConnectionInformation != nil && m.ConnectionInformation.Address != nil {
		if a, err := netip.ParseAddr(m.ConnectionInformation.Address.Address); err == nil {
			s.addr = a
		}
	}
	rtpmap := map[uint8]Codec{}
	fmtp := map[uint8]string{}
	for _, a := range m.Attributes {
		switch a.Key {
		case "rtpmap":
			if pt, c, ok := parseRtpmap(a.Value); ok {
				rtpmap[pt] = c
			}
		case "fmtp":
			if pt, rest, ok := strings.Cut(a.Value, " "); ok {
				if n, err := strconv.ParseUint(pt, 10, 7); err == nil {
					fmtp[uint8(n)] = strings.TrimSpace(rest)
				}
			}
		case "crypto":
			if k, err := parseCrypto(a.Value); err == nil {
				s.keys = append(s.keys, k)
			}
		case "candidate":
			if c, ok := parseCandidate(idx, a.Value); ok {
				s.cands[c.Component()-1] = append(s.cands[c.Component()-1], c)
			}
		case "rtcp":
			s.rtcpPort, s.rtcpAddr = parseRTCPAttr(a.Value)
		case "rtcp-mux":
			s.mux = true
		case "mid":
			s.mid = a.Value
		case "ice-ufrag":
			ufrag = a.Value
		case "ice-pwd":
			pwd = a.Value
		default:
			if d, ok := parseDirection(a.Key); ok {
				s.dir = d
			}
		}
	}
	for _, f := range s.rawFmts {
		n, err := strconv.ParseUint(f, 10, 7)
		if err != nil {
			continue
		}
		pt := uint8(n)
		c, ok := rtpmap[pt]
		if !ok {
			if c, ok = staticPayload[pt]; !ok {
				continue
			}
		}
		c.PayloadType = pt
		c.Fmtp = fmtp[pt]
		if strings.EqualFold(c.Name, telephoneEvent.Name) {
			s.dtmf = append(s.dtmf, c)
		} else {
			s.formats = append(s.formats, c)
		}
	}
	return s, ufrag, pwd
}

// parseRtpmap reads "96 VP8/90000" or "111 opus/48000/2".
func parseRtpmap(v string) (uint8, Codec, bool) {
	pt, rest, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok {
		return 0, Codec{}, false
	}
	n, err := strconv.ParseUint(pt, 10, 7)
	if err != nil {
		return 0, Codec{}, false
	}
	parts := strings.Split(strings.TrimSpace(rest), "/")
	if len(parts) < 2 || parts[0] == "" {
		return 0, Codec{}, false
	}
	clock, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil {
		return 0, Codec{}, false
	}
	c := Codec{Name: parts[0], ClockRate: uint32(clock)}
	if len(parts) > 2 {
		ch, err := strconv.ParseUint(parts[2], 10, 16)
		if err != nil {
			return 0, Codec{}, false
		}
		c.Channels = uint16(ch)
	}
	return uint8(n), c, true
}

// parseCandidate reads one a=candidate of section idx. Only UDP is kept
// (we gather nothing else). jamid's default numbering is global to the
// session (2·idx+1, 2·idx+2): it is brought back to 1 and 2.
func parseCandidate(idx int, v string) (ice.Candidate, bool) {
	c, err := ice.UnmarshalCandidate(v)
	if err != nil || c.NetworkType().IsTCP() {
		return nil, false
	}
	comp := int(c.Component())
	if comp > 2 {
		comp -= 2 * idx
	}
	if comp != 1 && comp != 2 {
		return nil, false
	}
	c.SetComponent(uint16(comp))
	return c, true
}

// parseRTCPAttr reads "port [IN IP4 addr]" (RFC 3605).
func parseRTCPAttr(v string) (int, netip.Addr) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0, netip.Addr{}
	}
	port, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return 0, netip.Addr{}
	}
	var addr netip.Addr
	if len(f) >= 4 {
		addr, _ = netip.ParseAddr(f[3])
	}
	return int(port), addr
}

// hasICE: the description carries ICE credentials (see parseRemote).
func (r *remoteDesc) hasICE() bool { return r.ufrag != "" }
