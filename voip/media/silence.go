package media

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/voipbot/voipbot/voip"
)

// Silence makes a source leg sending silence in an audio format: keeps a
// call's media flowing (and NAT bindings open) with nothing to say.
func Silence(id string, codec webrtc.RTPCodecParameters) (*voip.SourceLeg, error) {
	samples := uint32(int(codec.ClockRate) * int(frameDuration.Milliseconds()) / 1000)
	var payload []byte
	switch strings.ToLower(codec.MimeType) {
	case strings.ToLower(webrtc.MimeTypeOpus):
		payload = opusSilence
	case strings.ToLower(webrtc.MimeTypePCMU):
		payload = bytes.Repeat([]byte{0xff}, int(samples)) // mu-law zero
	case strings.ToLower(webrtc.MimeTypePCMA):
		payload = bytes.Repeat([]byte{0xd5}, int(samples)) // A-law zero
	default:
		return nil, fmt.Errorf("no silence in %s: silence comes in Opus, PCMU or PCMA", codec.MimeType)
	}
	stream := voip.NewPacketized(webrtc.RTPCodecTypeAudio, codec, id+"-silence", id)
	return play(id, stream, nil, func(done <-chan struct{}) error {
		p := newPacer()
		for p.wait(frameDuration, done) {
			if stream.Write(payload, false, samples) != nil {
				return nil
			}
		}
		return nil
	}), nil
}
