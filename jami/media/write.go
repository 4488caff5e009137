package media

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/webrtc/v4"
)

// The descriptions are written by hand, in pjmedia's order (v o s c t,
// session attributes, then per section m c a), so that they read as
// jamid's own.

// ourFormats are the formats our offer lists for a kind.
func ourFormats(kind webrtc.RTPCodecType, opts Options) []Codec {
	if kind == webrtc.RTPCodecTypeVideo {
		return videoCodecs
	}
	return audioCodecs[:offeredAudio]
}

func (s *Session) writeOffer(withICE bool) []byte {
	var b strings.Builder
	s.writeHeader(&b, withICE)
	for _, st := range s.streams {
		if st.rejected {
			fmt.Fprintf(&b, "m=%s 0 RTP/SAVP %d\r\n", st.Kind, ourFormats(st.Kind, s.opts)[0].PayloadType)
			continue
		}
		formats := ourFormats(st.Kind, s.opts)
		mux := s.opts.RTCPMux
		if st.Codec.Name != "" { // a re-offer keeps what was negotiated
			formats, mux = []Codec{st.Codec}, st.Mux
		}
		var dtmf *Codec
		if st.Kind == webrtc.RTPCodecTypeAudio {
			dtmf = &telephoneEvent
		}
		s.writeSection(&b, st, formats, dtmf, mux, st.want, withICE)
	}
	return []byte(b.String())
}

// writeAnswer answers r. A re-offer that kept the ICE session (no
// credentials) is answered the same way, as jamid answers one
// (SIPCall::answerMediaChangeRequest): jamid takes credentials in an
// answer as a call to start ICE checks again.
func (s *Session) writeAnswer(r *remoteDesc) []byte {
	var b strings.Builder
	withICE := r.hasICE()
	s.writeHeader(&b, withICE)
	for i, st := range s.streams {
		rs := &r.sections[i]
		if st.rejected {
			fmts := strings.Join(rs.rawFmts, " ")
			if fmts == "" {
				fmts = "0"
			}
			proto := rs.proto
			if proto == "" {
				proto = "RTP/SAVP"
			}
			fmt.Fprintf(&b, "m=%s 0 %s %s\r\n", rs.media, proto, fmts)
			continue
		}
		var dtmf *Codec
		if st.DTMFPayloadType != 0 {
			dtmf = &Codec{Name: telephoneEvent.Name, ClockRate: st.DTMFClockRate, Fmtp: telephoneEvent.Fmtp, PayloadType: st.DTMFPayloadType}
		}
		s.writeSection(&b, st, []Codec{st.Codec}, dtmf, st.Mux, st.Direction(), withICE)
	}
	return []byte(b.String())
}

func (s *Session) writeHeader(b *strings.Builder, withICE bool) {
	addr := netip.IPv4Unspecified()
	for _, st := range s.streams {
		if cs := s.compsToShow(st); !st.rejected && len(cs) > 0 {
			addr = candAddr(cs[0])
			break
		}
	}
	fmt.Fprintf(b, "v=0\r\no=- %d %d IN %s %s\r\ns=-\r\nc=IN %s %s\r\nt=0 0\r\n",
		s.originID, s.version, ipVersion(addr), addr, ipVersion(addr), addr)
	if withICE {
		ufrag, pwd := s.offerICE()
		fmt.Fprintf(b, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", ufrag, pwd)
	}
}

func (s *Session) writeSection(b *strings.Builder, st *Stream, formats []Codec, dtmf *Codec, mux bool, dir Direction, withICE bool) {
	comps := s.compsToShow(st)
	rtp := comps[0].defaultCandidate()
	pts := make([]string, 0, len(formats)+1)
	for _, f := range formats {
		pts = append(pts, strconv.Itoa(int(f.PayloadType)))
	}
	if dtmf != nil {
		pts = append(pts, strconv.Itoa(int(dtmf.PayloadType)))
	}
	fmt.Fprintf(b, "m=%s %d RTP/SAVP %s\r\n", st.Kind, rtp.Port(), strings.Join(pts, " "))
	addr := candAddr(comps[0])
	fmt.Fprintf(b, "c=IN %s %s\r\n", ipVersion(addr), addr)
	for _, f := range append(formats, derefOr(dtmf)...) {
		if f.Channels > 1 {
			fmt.Fprintf(b, "a=rtpmap:%d %s/%d/%d\r\n", f.PayloadType, f.Name, f.ClockRate, f.Channels)
		} else {
			fmt.Fprintf(b, "a=rtpmap:%d %s/%d\r\n", f.PayloadType, f.Name, f.ClockRate)
		}
		if f.Fmtp != "" {
			fmt.Fprintf(b, "a=fmtp:%d %s\r\n", f.PayloadType, f.Fmtp)
		}
	}
	if len(comps) > 1 {
		c := comps[1].defaultCandidate()
		a, _ := netip.ParseAddr(c.Address())
		fmt.Fprintf(b, "a=rtcp:%d IN %s %s\r\n", c.Port(), ipVersion(a), a)
	}
	if mux {
		b.WriteString("a=rtcp-mux\r\n")
	}
	if st.mid != "" {
		fmt.Fprintf(b, "a=mid:%s\r\n", st.mid)
	}
	fmt.Fprintf(b, "a=%s\r\n", dir)
	fmt.Fprintf(b, "a=crypto:%s\r\n", st.local.attr())
	if !withICE {
		return
	}
	for _, c := range comps {
		for _, cand := range c.cands {
			fmt.Fprintf(b, "a=candidate:%s\r\n", candidateLine(cand, c.id))
		}
	}
}

func derefOr(c *Codec) []Codec {
	if c == nil {
		return nil
	}
	return []Codec{*c}
}

func candAddr(c *component) netip.Addr {
	a, err := netip.ParseAddr(c.defaultCandidate().Address())
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return a.Unmap()
}

func ipVersion(a netip.Addr) string {
	if a.Is6() {
		return "IP6"
	}
	return "IP4"
}
