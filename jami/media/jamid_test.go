package media

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// testdata/jamid-offer.sdp is written the way jami-daemon 13.7.0 writes
// an offer (src/sip/sdp.cpp): session ICE credentials, opus at jamid's
// 104, telephone-event 101 at 8000 Hz, a=rtcp with an address, SDES _80
// with tag 1, and components numbered for the whole session (3 and 4 on
// the second section).
func TestJamidOfferIsAnswered(t *testing.T) {
	goroutineCheck(t)
	offer, err := os.ReadFile("testdata/jamid-offer.sdp")
	require.NoError(t, err)
	r, err := parseRemote(offer)
	require.NoError(t, err)
	require.Equal(t, "5a1d7c2e", r.ufrag)
	require.Len(t, r.sections, 2)
	require.Len(t, r.sections[0].cands[0], 2, "host and srflx of RTP")
	require.Len(t, r.sections[1].cands[0], 1, "component 3 is the second section's RTP")
	require.Len(t, r.sections[1].cands[1], 1, "component 4 is its RTCP")
	require.Equal(t, 18787, r.sections[0].rtcpPort)

	s := newTestSession(t, Options{Audio: true, Video: true})
	answer, err := s.Answer(testCtx(t), offer)
	require.NoError(t, err)
	text := string(answer)
	st := s.Streams()
	require.Len(t, st, 2)
	require.Equal(t, "opus", st[0].Codec.Name)
	require.EqualValues(t, 104, st[0].Codec.PayloadType, "the answer keeps the offer's numbers")
	require.EqualValues(t, 104, st[0].SendPayloadType)
	require.EqualValues(t, 101, st[0].SendDTMFPayloadType)
	require.EqualValues(t, 8000, st[0].DTMFClockRate)
	require.Equal(t, "VP8", st[1].Codec.Name, "our first video format, though jamid lists H.264 first")
	require.EqualValues(t, 97, st[1].Codec.PayloadType, "at jamid's number")
	for _, want := range []string{
		"m=audio ", " RTP/SAVP 104 101\r\n", "a=rtpmap:104 opus/48000/2\r\n", "a=rtpmap:101 telephone-event/8000\r\n",
		"m=video ", " RTP/SAVP 97\r\n", "a=rtpmap:97 VP8/90000\r\n",
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:", "a=rtcp:", "a=sendrecv\r\n", " 2 UDP ", " typ host\r\n",
	} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, "rtcp-mux")
	require.Equal(t, 2, strings.Count(text, "a=crypto:"))
	require.True(t, strings.HasPrefix(text, "v=0\r\no=- "))

	// Our answer reads back as an answer would (to our own parser, as
	// lenient as pjmedia's).
	back, err := parseRemote(answer)
	require.NoError(t, err)
	require.Len(t, back.sections[1].cands[1], 1)
	require.Equal(t, back.sections[0].keys[0], st[0].local)
}

func TestMalformedSDPIsAnError(t *testing.T) {
	goroutineCheck(t)
	s := newTestSession(t, Options{Audio: true})
	for name, sdp := range map[string]string{
		"empty":          "",
		"garbage":        "hello\r\n",
		"no ice":         "v=0\r\no=- 1 0 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n",
		"no media":       "v=0\r\no=- 1 0 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n",
		"nothing usable": "v=0\r\no=- 1 0 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:short\r\n",
	} {
		_, err := s.Answer(testCtx(t), []byte(sdp))
		require.Error(t, err, name)
	}
	require.Error(t, s.SetAnswer([]byte("v=0\r\n")))
}

// An offer of H.264 alone is answered with H.264 and the offer's profile
// (jamid's encoder writes what the profile says).
func TestH264OnlyOfferIsAnswered(t *testing.T) {
	goroutineCheck(t)
	offer, err := os.ReadFile("testdata/jamid-offer.sdp")
	require.NoError(t, err)
	text := strings.ReplaceAll(string(offer), "RTP/SAVP 96 97", "RTP/SAVP 96")
	text = strings.ReplaceAll(text, "a=rtpmap:97 VP8/90000\r\n", "")
	s := newTestSession(t, Options{Audio: true, Video: true})
	answer, err := s.Answer(testCtx(t), []byte(text))
	require.NoError(t, err)
	st := s.Streams()
	require.Equal(t, "H264", st[1].Codec.Name)
	require.Equal(t, "profile-level-id=428029", st[1].Codec.Fmtp)
	require.Contains(t, string(answer), "a=fmtp:96 profile-level-id=428029\r\n")
}
