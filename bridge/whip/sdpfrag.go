package whip

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// frag is a trickle-ice-sdpfrag body (RFC 8840 §9, as RFC 9725 §4.3.1
// sends it in a PATCH): the ICE credentials, then per media section its
// mid and candidates.
type frag struct {
	ufrag, pwd string
	candidates []webrtc.ICECandidateInit
	// end: a=end-of-candidates came.
	end bool
}

// maxFragCandidates bounds one PATCH: a client has a few dozen at most.
const maxFragCandidates = 64

// parseFrag reads a trickle-ice-sdpfrag. Candidates before any a=mid are
// for the first media section (mid ""): the session adds them there.
// Lines other than those it needs (m=, a=group, extensions) are skipped,
// as RFC 8840 lets a receiver do.
func parseFrag(body string) (frag, error) {
	var f frag
	mid := ""
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 4096), 4096)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if text == "" {
			continue
		}
		if len(text) < 2 || text[1] != '=' {
			return frag{}, fmt.Errorf("line %d is not an SDP line: %q", line, clip(text))
		}
		attr, ok := strings.CutPrefix(text, "a=")
		if !ok {
			if strings.HasPrefix(text, "m=") {
				mid = "" // a new section: its a=mid follows
			}
			continue
		}
		name, value, _ := strings.Cut(attr, ":")
		switch name {
		case "ice-ufrag":
			f.ufrag = value
		case "ice-pwd":
			f.pwd = value
		case "mid":
			mid = value
		case "candidate":
			if len(strings.Fields(value)) < 8 {
				return frag{}, fmt.Errorf("line %d: a candidate needs 8 fields: %q", line, clip(text))
			}
			if len(f.candidates) == maxFragCandidates {
				return frag{}, fmt.Errorf("more than %d candidates in one request", maxFragCandidates)
			}
			c := webrtc.ICECandidateInit{Candidate: "candidate:" + value}
			if mid != "" {
				m := mid
				c.SDPMid = &m
			} else {
				zero := uint16(0)
				c.SDPMLineIndex = &zero
			}
			f.candidates = append(f.candidates, c)
		case "end-of-candidates":
			f.end = true
		}
	}
	if err := sc.Err(); err != nil {
		return frag{}, fmt.Errorf("reading the fragment: %w", err)
	}
	return f, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// offerInfo is what Start checks of an offer before it makes a session.
type offerInfo struct {
	ufrag string
	// sends, receives: some audio or video section has the client
	// sending (sendonly, sendrecv), receiving (recvonly, sendrecv).
	sends, receives bool
	video           bool
}

// inspectOffer reads what Start needs of an offer; one that does not parse
// is ErrOffer.
func inspectOffer(offer string) (offerInfo, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(offer)); err != nil {
		return offerInfo{}, fmt.Errorf("%w: it does not parse as SDP: %s", ErrOffer, err.Error())
	}
	var info offerInfo
	sessionDir := "sendrecv"
	for _, a := range sd.Attributes {
		switch a.Key {
		case "ice-ufrag":
			info.ufrag = a.Value
		case "sendonly", "recvonly", "sendrecv", "inactive":
			sessionDir = a.Key
		}
	}
	media := 0
	for _, m := range sd.MediaDescriptions {
		kind := m.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		if m.MediaName.Port.Value == 0 {
			continue // rejected or stopped
		}
		media++
		dir := sessionDir
		for _, a := range m.Attributes {
			switch a.Key {
			case "ice-ufrag":
				if info.ufrag == "" {
					info.ufrag = a.Value
				}
			case "sendonly", "recvonly", "sendrecv", "inactive":
				dir = a.Key
			}
		}
		if dir == "sendonly" || dir == "sendrecv" {
			info.sends = true
		}
		if dir == "recvonly" || dir == "sendrecv" {
			info.receives = true
		}
		if kind == "video" {
			info.video = true
		}
	}
	if media == 0 {
		return offerInfo{}, fmt.Errorf("%w: no audio or video section", ErrOffer)
	}
	if info.ufrag == "" {
		return offerInfo{}, fmt.Errorf("%w: no a=ice-ufrag", ErrOffer)
	}
	return info, nil
}
