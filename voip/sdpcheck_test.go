package voip

import (
	"errors"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// browserOffer is Chromium's offer for a video call (trimmed of candidates).
const browserOffer = `v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=msid-semantic: WMS stream
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
a=setup:actpass
a=mid:0
a=sendrecv
a=msid:stream audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
a=setup:actpass
a=mid:1
a=sendrecv
a=rtcp-mux
a=rtpmap:96 VP8/90000
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
`

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// withAudioFormats is the browser offer's audio section with other formats.
func withAudioFormats(pts string, rtpmaps ...string) string {
	head, _, _ := strings.Cut(browserOffer, "m=audio")
	audio := "m=audio 9 UDP/TLS/RTP/SAVPF " + pts + "\nc=IN IP4 0.0.0.0\na=mid:0\na=sendrecv\n" +
		"a=ice-ufrag:abcd\na=ice-pwd:abcdefghijklmnopqrstuvwx\na=fingerprint:sha-256 00:11\n"
	for _, m := range rtpmaps {
		audio += "a=rtpmap:" + m + "\n"
	}
	return crlf(head + audio)
}

func TestCheckSDP(t *testing.T) {
	ok, err := CheckSDP(crlf(browserOffer), true)
	require.NoError(t, err)
	require.Equal(t, &SDPInfo{Sections: 2, Audio: 1, Video: 1, Usable: []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}}, ok)

	// Static payload types need no rtpmap.
	pcmu, err := CheckSDP(withAudioFormats("0"), true)
	require.NoError(t, err)
	require.Equal(t, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}, pcmu.Usable)

	// An answer need not carry a format the bot takes (pion decides).
	_, err = CheckSDP(withAudioFormats("9", "9 G722/8000"), false)
	require.NoError(t, err)

	many := crlf(browserOffer) + strings.Repeat("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:x\r\n", 400)
	without := func(attr string) string {
		var keep []string
		for line := range strings.SplitSeq(crlf(browserOffer), "\r\n") {
			if !strings.HasPrefix(line, "a="+attr+":") {
				keep = append(keep, line)
			}
		}
		return strings.Join(keep, "\r\n")
	}
	for name, tc := range map[string]struct {
		sdp     string
		problem SDPProblem
		detail  string
	}{
		"only G722":      {withAudioFormats("9 13", "9 G722/8000", "13 CN/8000"), SDPNoCommonCodec, "none of the formats offered (CN/8000, G722/8000)"},
		"unmapped":       {withAudioFormats("77"), SDPNoCommonCodec, "payload type 77"},
		"garbage":        {"hello, I am not an SDP", SDPMalformed, "cannot be parsed"},
		"v=0 only":       {"v=0\r\n", SDPNoMedia, "no audio or video"},
		"no media":       {"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", SDPNoMedia, "no audio or video"},
		"data only":      {"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\na=ice-ufrag:a\r\na=ice-pwd:b\r\na=fingerprint:sha-256 00\r\n", SDPNoMedia, "no audio or video"},
		"no mid":         {without("mid"), SDPIncomplete, "media section 0 has no mid"},
		"no ICE ufrag":   {without("ice-ufrag"), SDPIncomplete, "no ice-ufrag"},
		"no ICE pwd":     {without("ice-pwd"), SDPIncomplete, "no ice-pwd"},
		"no fingerprint": {without("fingerprint"), SDPIncomplete, "no fingerprint"},
		"rejected audio": {strings.Replace(withAudioFormats("111", "111 opus/48000/2"), "m=audio 9", "m=audio 0", 1), SDPNoMedia, "no audio or video"},
		"400 sections":   {many, SDPTooManyMedia, "402 media sections (the bot takes at most 16)"},
		"too large":      {crlf(browserOffer) + "a=x:" + strings.Repeat("y", MaxSDPBytes), SDPTooLarge, "at most 65536"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := CheckSDP(tc.sdp, true)
			var sdpErr *SDPError
			require.True(t, errors.As(err, &sdpErr), "%v", err)
			require.Equal(t, tc.problem, sdpErr.Problem)
			require.Contains(t, sdpErr.Error(), tc.detail)
			require.True(t, IsSDPError(err))
		})
	}
}

// FuzzCheckSDP: no input makes the intake check panic, and what it accepts
// as an offer pion can take as a remote description without panicking.
func FuzzCheckSDP(f *testing.F) {
	f.Add(crlf(browserOffer))
	f.Add(withAudioFormats("0"))
	f.Add(withAudioFormats("9", "9 G722/8000"))
	f.Add("v=0\r\n")
	f.Add("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		info, err := CheckSDP(raw, true)
		if err != nil {
			require.True(t, IsSDPError(err), "every refusal is an SDPError: %v", err)
			return
		}
		require.NotEmpty(t, info.Usable)
		require.LessOrEqual(t, info.Sections, MaxMediaSections)
	})
}
