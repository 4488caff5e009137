package voip

import (
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// Codec is one payload format a session may negotiate.
type Codec = webrtc.RTPCodecParameters

// videoFeedback is the RTCP feedback every video codec offers: NACK with
// per-hop retransmission, keyframe requests (PLI, FIR), and transport-wide
// congestion control reports.
var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}, {Type: webrtc.TypeRTCPFBTransportCC},
}

// MimeTypeTelephoneEvent is RFC 4733 DTMF.
const MimeTypeTelephoneEvent = "audio/telephone-event"

// AudioCodecs are the audio formats, in order of preference. Payload types
// are those browsers use, so that answers keep the offerer's numbers.
var AudioCodecs = []Codec{
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8},
}

// DTMFCodecs are RFC 4733 telephone events at the clock rates of the audio
// codecs above: an event shares its audio stream's clock.
var DTMFCodecs = []Codec{
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: MimeTypeTelephoneEvent, ClockRate: 48000, SDPFmtpLine: "0-16"}, PayloadType: 110},
	{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: MimeTypeTelephoneEvent, ClockRate: 8000, SDPFmtpLine: "0-16"}, PayloadType: 126},
}

// VideoCodecs are the video formats, in order of preference, each followed
// by its RTX (retransmission) format. The H.264 profiles are those browsers
// offer: constrained baseline, baseline, main and high, in both
// packetization modes.
var VideoCodecs = withRTX([]Codec{
	video(webrtc.MimeTypeVP8, "", 96),
	video(webrtc.MimeTypeVP9, "profile-id=0", 98),
	video(webrtc.MimeTypeVP9, "profile-id=2", 100),
	video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 102),
	video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f", 104),
	video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 106),
	video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f", 108),
	video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", 127),
	video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=4d001f", 39),
	video(webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f", 112),
}, map[webrtc.PayloadType]webrtc.PayloadType{96: 97, 98: 99, 100: 101, 102: 103, 104: 105, 106: 107, 108: 109, 127: 125, 39: 40, 112: 113})

func video(mime, fmtp string, pt webrtc.PayloadType) Codec {
	return Codec{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: videoFeedback}, PayloadType: pt}
}

func withRTX(codecs []Codec, rtx map[webrtc.PayloadType]webrtc.PayloadType) []Codec {
	out := make([]Codec, 0, 2*len(codecs))
	for _, c := range codecs {
		out = append(out, c, Codec{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", c.PayloadType)},
			PayloadType:        rtx[c.PayloadType],
		})
	}
	return out
}

// sameFormat reports whether two codecs carry the same payload format, so
// that RTP of one can be forwarded as the other without transcoding: the same
// MIME type and clock rate, and for H.264 the same profile and packetization
// mode, for VP9 the same profile.
func sameFormat(a, b webrtc.RTPCodecCapability) bool {
	if !strings.EqualFold(a.MimeType, b.MimeType) || a.ClockRate != b.ClockRate {
		return false
	}
	switch strings.ToLower(a.MimeType) {
	case strings.ToLower(webrtc.MimeTypeH264):
		return fmtpValue(a.SDPFmtpLine, "packetization-mode", "0") == fmtpValue(b.SDPFmtpLine, "packetization-mode", "0") &&
			strings.EqualFold(profileIDC(a.SDPFmtpLine), profileIDC(b.SDPFmtpLine))
	case strings.ToLower(webrtc.MimeTypeVP9):
		return fmtpValue(a.SDPFmtpLine, "profile-id", "0") == fmtpValue(b.SDPFmtpLine, "profile-id", "0")
	}
	return true
}

// profileIDC is the profile part of an H.264 profile-level-id: the level may
// differ between the two sides of a bridge.
func profileIDC(fmtp string) string {
	p := fmtpValue(fmtp, "profile-level-id", "42001f")
	if len(p) < 4 {
		return p
	}
	return p[:4]
}

func fmtpValue(fmtp, key, def string) string {
	for part := range strings.SplitSeq(fmtp, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && strings.EqualFold(k, key) {
			return v
		}
	}
	return def
}

// NoCommonCodecError says why two legs cannot be bridged without
// transcoding.
type NoCommonCodecError struct {
	Kind  webrtc.RTPCodecType
	Have  webrtc.RTPCodecCapability // what the source sends
	Leg   string                    // the leg that cannot take it
	Takes []webrtc.RTPCodecCapability
}

func (e *NoCommonCodecError) Error() string {
	takes := make([]string, 0, len(e.Takes))
	for _, c := range e.Takes {
		takes = append(takes, describe(c))
	}
	return fmt.Sprintf("no common %s codec: the source sends %s, leg %s takes only %s (transcoding is not supported)",
		e.Kind, describe(e.Have), e.Leg, strings.Join(takes, ", "))
}

func describe(c webrtc.RTPCodecCapability) string {
	s := fmt.Sprintf("%s/%d", strings.TrimPrefix(strings.TrimPrefix(c.MimeType, "audio/"), "video/"), c.ClockRate)
	if c.Channels > 1 {
		s += fmt.Sprintf("/%d", c.Channels)
	}
	if c.SDPFmtpLine != "" {
		s += " (" + c.SDPFmtpLine + ")"
	}
	return s
}

// ChooseCodec picks the first of the source's formats that the other side
// takes, in the source's order, so that no transcoding is needed.
func ChooseCodec(kind webrtc.RTPCodecType, source []webrtc.RTPCodecCapability, leg string, takes []webrtc.RTPCodecCapability) (webrtc.RTPCodecCapability, error) {
	for _, s := range source {
		for _, t := range takes {
			if sameFormat(s, t) {
				return s, nil
			}
		}
	}
	have := webrtc.RTPCodecCapability{}
	if len(source) > 0 {
		have = source[0]
	}
	return webrtc.RTPCodecCapability{}, &NoCommonCodecError{Kind: kind, Have: have, Leg: leg, Takes: takes}
}
