package media

import (
	"strings"

	"github.com/pion/webrtc/v4"
)

// Codec is a payload format negotiated for a section.
type Codec struct {
	Name        string // as in rtpmap: "opus", "PCMU", "VP8", "H264"
	ClockRate   uint32
	Channels    uint16 // 0 for video and mono formats written without it
	Fmtp        string
	PayloadType uint8
}

// MimeType is the codec's type as pion names it ("audio/opus").
func (c Codec) MimeType(kind webrtc.RTPCodecType) string { return kind.String() + "/" + c.Name }

// Parameters is the codec as pion describes it.
func (c Codec) Parameters(kind webrtc.RTPCodecType) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: c.MimeType(kind), ClockRate: c.ClockRate, Channels: c.Channels, SDPFmtpLine: c.Fmtp},
		PayloadType:        webrtc.PayloadType(c.PayloadType),
	}
}

// Payload types of our offers. jamid gives opus 104 and telephone-event
// 101; it accepts other numbers (111 was seen accepted), and its answers
// keep the offer's.
const (
	ptOpus = 111
	ptDTMF = 101
	ptVP8  = 96
	ptH264 = 97
)

// audioCodecs and videoCodecs are what we take, in order of preference
// for our offers and our answers alike.
var (
	audioCodecs = []Codec{
		{Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1", PayloadType: ptOpus},
		{Name: "PCMU", ClockRate: 8000, PayloadType: 0},
		{Name: "PCMA", ClockRate: 8000, PayloadType: 8},
	}
	videoCodecs = []Codec{
		{Name: "VP8", ClockRate: 90000, PayloadType: ptVP8},
		// Packetization mode 1 (FU-A): what jamid's libav packetizer sends
		// whatever its fmtp says.
		{Name: "H264", ClockRate: 90000, Fmtp: "profile-level-id=42e01f;packetization-mode=1", PayloadType: ptH264},
	}
	// offered is how many of each list an offer carries: jamid's default
	// audio is opus alone (its G.711 is optional), video both.
	offeredAudio = 1
)

// telephoneEvent is RFC 4733 DTMF at 8000 Hz, as jamid offers it (even
// beside opus at 48000).
var telephoneEvent = Codec{Name: "telephone-event", ClockRate: 8000, Fmtp: "0-15", PayloadType: ptDTMF}

// staticPayload names the static payload types a section may list without
// an rtpmap (RFC 3551).
var staticPayload = map[uint8]Codec{
	0: {Name: "PCMU", ClockRate: 8000},
	8: {Name: "PCMA", ClockRate: 8000},
	9: {Name: "G722", ClockRate: 8000},
}

// preferred is our list of a kind's codecs, best first.
func preferred(kind webrtc.RTPCodecType) []Codec {
	if kind == webrtc.RTPCodecTypeVideo {
		return videoCodecs
	}
	return audioCodecs
}

// sameFormat says whether a remote format is our codec ours.
func sameFormat(ours, c Codec) bool {
	if !strings.EqualFold(ours.Name, c.Name) || ours.ClockRate != c.ClockRate {
		return false
	}
	return ours.Name != "opus" || c.Channels == 0 || c.Channels == 2
}

// offeredFormat finds ours among a section's formats.
func offeredFormat(formats []Codec, ours Codec) (Codec, bool) {
	for _, f := range formats {
		if sameFormat(ours, f) {
			return f, true
		}
	}
	return Codec{}, false
}
