package voip

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Limits of what the bot takes from a peer's SDP before handing it to pion.
// A Matrix event is at most 64 KiB, and so is any SDP it carries; the media
// sections are bounded because the answer has one for each (400 sections
// made a 98 KB answer, which no homeserver takes). Browsers offer 2 (audio,
// video) to 4 (with a screen share and its audio).
const (
	MaxSDPBytes      = 64 << 10
	MaxMediaSections = 16
)

// SDPProblem says what is wrong with an SDP the bot cannot use.
type SDPProblem string

// The problems CheckSDP finds.
const (
	SDPMalformed     SDPProblem = "malformed"      // not SDP pion can parse
	SDPTooLarge      SDPProblem = "too_large"      // over MaxSDPBytes
	SDPTooManyMedia  SDPProblem = "too_many_media" // over MaxMediaSections
	SDPNoMedia       SDPProblem = "no_media"       // no audio or video section
	SDPNoCommonCodec SDPProblem = "no_common_codec"
	SDPIncomplete    SDPProblem = "incomplete" // lacks what WebRTC requires (mid, ICE credentials, fingerprint)
)

// SDPError is an SDP the bot will not use, and why (the detail is safe to
// show to the sender).
type SDPError struct {
	Problem SDPProblem
	Detail  string
}

func (e *SDPError) Error() string { return e.Detail }

// SDPInfo is what CheckSDP learned of an SDP.
type SDPInfo struct {
	// Sections counts the media sections of every kind (application ones
	// too); Audio and Video the audio and video sections that are not
	// rejected (port 0).
	Sections, Audio, Video int
	// Usable lists the kinds the bot has a format for.
	Usable []webrtc.RTPCodecType
}

// CheckSDP is the intake check of an SDP a peer sent: it parses it and
// enforces the limits above. With offer set it also requires an audio or
// video format the bot takes, so that a call it cannot carry is declined
// before anything is built for it.
func CheckSDP(raw string, offer bool) (*SDPInfo, error) {
	if len(raw) > MaxSDPBytes {
		return nil, &SDPError{SDPTooLarge, fmt.Sprintf("the SDP is %d bytes (at most %d)", len(raw), MaxSDPBytes)}
	}
	// Count sections before parsing: a huge offer is refused without the
	// cost of parsing all of it.
	if n := countSections(raw); n > MaxMediaSections {
		return nil, &SDPError{SDPTooManyMedia, fmt.Sprintf("the SDP has %d media sections (the bot takes at most %d)", n, MaxMediaSections)}
	}
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(raw); err != nil {
		return nil, &SDPError{SDPMalformed, "the SDP cannot be parsed: " + err.Error()}
	}
	if err := checkJSEP(&desc); err != nil {
		return nil, err
	}
	info := &SDPInfo{Sections: len(desc.MediaDescriptions)}
	var offered []string
	for _, m := range desc.MediaDescriptions {
		kind := webrtc.NewRTPCodecType(m.MediaName.Media)
		if kind == 0 || m.MediaName.Port.Value == 0 {
			continue
		}
		if kind == webrtc.RTPCodecTypeAudio {
			info.Audio++
		} else {
			info.Video++
		}
		formats := sectionFormats(m)
		if slices.ContainsFunc(formats, func(f sectionFormat) bool { return f.takenAs(kind) }) {
			if !slices.Contains(info.Usable, kind) {
				info.Usable = append(info.Usable, kind)
			}
			continue
		}
		for _, f := range formats {
			offered = append(offered, f.String())
		}
	}
	switch {
	case info.Audio+info.Video == 0:
		return nil, &SDPError{SDPNoMedia, "the SDP has no audio or video"}
	case offer && len(info.Usable) == 0:
		slices.Sort(offered)
		return nil, &SDPError{SDPNoCommonCodec, fmt.Sprintf("the bot takes none of the formats offered (%s)", strings.Join(slices.Compact(offered), ", "))}
	}
	return info, nil
}

// checkJSEP checks what every WebRTC description has and pion requires,
// but checks only after it has taken the description in (so that a session
// given one without would be left half-changed): a mid for every section,
// and ICE credentials and a DTLS fingerprint, for the session or in a
// section.
func checkJSEP(desc *sdp.SessionDescription) error {
	has := func(key string) bool {
		if _, ok := desc.Attribute(key); ok {
			return true
		}
		for _, m := range desc.MediaDescriptions {
			if v, ok := m.Attribute(key); ok && v != "" {
				return true
			}
		}
		return false
	}
	for i, m := range desc.MediaDescriptions {
		if mid, ok := m.Attribute("mid"); !ok || mid == "" {
			return &SDPError{SDPIncomplete, fmt.Sprintf("media section %d has no mid", i)}
		}
	}
	if len(desc.MediaDescriptions) == 0 {
		return nil // no media: reported as such
	}
	for _, key := range []string{"ice-ufrag", "ice-pwd", "fingerprint"} {
		if !has(key) {
			return &SDPError{SDPIncomplete, "the SDP has no " + key}
		}
	}
	return nil
}

// countSections counts "m=" lines.
func countSections(raw string) int {
	n := 0
	if strings.HasPrefix(raw, "m=") {
		n++
	}
	return n + strings.Count(raw, "\nm=")
}

// sectionFormat is one payload format of a media section.
type sectionFormat struct {
	name string
	rate uint32
}

func (f sectionFormat) String() string {
	if f.rate == 0 {
		return f.name
	}
	return fmt.Sprintf("%s/%d", f.name, f.rate)
}

// takenAs says whether the bot has this format for kind (the RTX and DTMF
// formats that ride along do not count).
func (f sectionFormat) takenAs(kind webrtc.RTPCodecType) bool {
	codecs := AudioCodecs
	if kind == webrtc.RTPCodecTypeVideo {
		codecs = VideoCodecs
	}
	for _, c := range codecs {
		mime := strings.ToLower(c.MimeType)
		if mime == strings.ToLower(webrtc.MimeTypeRTX) {
			continue
		}
		if _, name, _ := strings.Cut(mime, "/"); name == strings.ToLower(f.name) && c.ClockRate == f.rate {
			return true
		}
	}
	return false
}

// staticFormats are the RTP/AVP payload types that need no rtpmap (RFC
// 3551) among those the bot takes.
var staticFormats = map[string]sectionFormat{"0": {"PCMU", 8000}, "8": {"PCMA", 8000}}

// sectionFormats lists a section's formats by their rtpmap (or static
// payload type); a format without either is listed by its number.
func sectionFormats(m *sdp.MediaDescription) []sectionFormat {
	mapped := map[string]sectionFormat{}
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		pt, enc, ok := strings.Cut(a.Value, " ")
		if !ok {
			continue
		}
		name, rest, _ := strings.Cut(strings.TrimSpace(enc), "/")
		rateText, _, _ := strings.Cut(rest, "/")
		rate, err := strconv.ParseUint(rateText, 10, 32)
		if err != nil {
			continue
		}
		mapped[pt] = sectionFormat{name: name, rate: uint32(rate)}
	}
	out := make([]sectionFormat, 0, len(m.MediaName.Formats))
	for _, pt := range m.MediaName.Formats {
		if f, ok := mapped[pt]; ok {
			out = append(out, f)
		} else if f, ok := staticFormats[pt]; ok {
			out = append(out, f)
		} else {
			out = append(out, sectionFormat{name: "payload type " + pt})
		}
	}
	return out
}

// IsSDPError says whether err is an SDP the bot will not use.
func IsSDPError(err error) bool {
	var e *SDPError
	return errors.As(err, &e)
}
