package voip

import (
	"testing"

	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/assert"
)

func TestSDPHold(t *testing.T) {
	in := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sendrecv\r\n"
	want := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sendrecv\r\n"
	assert.Equal(t, want, sdpHold(in))
}

func TestFitDirections(t *testing.T) {
	offer := "v=0\r\nm=audio 9 X 111\r\na=sendonly\r\nm=video 9 X 96\r\na=inactive\r\nm=audio 9 X 111\r\na=recvonly\r\nm=audio 9 X 111\r\n"
	answer := "v=0\r\nm=audio 9 X 111\r\na=sendrecv\r\nm=video 9 X 96\r\na=sendrecv\r\nm=audio 9 X 111\r\na=sendrecv\r\nm=audio 9 X 111\r\na=sendrecv\r\n"
	want := "v=0\r\nm=audio 9 X 111\r\na=recvonly\r\nm=video 9 X 96\r\na=inactive\r\nm=audio 9 X 111\r\na=sendonly\r\nm=audio 9 X 111\r\na=sendrecv\r\n"
	assert.Equal(t, want, fitDirections(offer, answer))
}

func TestCodecOfKind(t *testing.T) {
	vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}}
	pcmu := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU}}
	assert.True(t, codecOfKind(vp8, webrtc.RTPCodecTypeVideo))
	assert.False(t, codecOfKind(pcmu, webrtc.RTPCodecTypeVideo), "PCMU is no video codec")
	assert.True(t, codecOfKind(pcmu, webrtc.RTPCodecTypeAudio))
}
