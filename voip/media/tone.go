// Package media holds the bot's own media: sources (test tone and pattern,
// files played in a loop, silence) as legs of a forwarder, and sinks
// (recorders) as taps on it.
package media

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/voipbot/voipbot/voip"
)

// frameDuration is the audio packetization interval.
const frameDuration = 20 * time.Millisecond

// Tone makes a source leg playing a sine tone of freq Hz in the given audio
// format: Opus, or PCMU/PCMA (G.711, encoded in Go). Opus is encoded live by
// libopus (linked statically by mediadevices) when built with -tags opus
// (cgo); the default, pure-Go build plays tones encoded by that same code
// and embedded (EmbeddedToneFrequencies).
func Tone(id string, codec webrtc.RTPCodecParameters, freq float64) (*voip.SourceLeg, error) {
	if freq <= 0 || freq >= float64(codec.ClockRate)/2 {
		return nil, fmt.Errorf("tone frequency %.0f Hz is outside 0–%d Hz", freq, codec.ClockRate/2)
	}
	stream := voip.NewPacketized(webrtc.RTPCodecTypeAudio, codec, id+"-tone", id)
	samples := int(codec.ClockRate) * int(frameDuration) / int(time.Second)
	gen := &sine{step: 2 * math.Pi * freq / float64(codec.ClockRate), amplitude: 0.3 * math.MaxInt16}
	var frame func() ([]byte, error)
	var stop func() error
	switch strings.ToLower(codec.MimeType) {
	case strings.ToLower(webrtc.MimeTypeOpus):
		var err error
		if frame, stop, err = opusTone(gen, freq, samples); err != nil {
			return nil, err
		}
	case strings.ToLower(webrtc.MimeTypePCMU), strings.ToLower(webrtc.MimeTypePCMA):
		encode := linearToMuLaw
		if strings.EqualFold(codec.MimeType, webrtc.MimeTypePCMA) {
			encode = linearToALaw
		}
		buf := make([]byte, samples)
		frame = func() ([]byte, error) {
			for i := range buf {
				buf[i] = encode(gen.next())
			}
			return buf, nil
		}
	default:
		return nil, fmt.Errorf("no tone in %s: the test tone comes in Opus, PCMU or PCMA", codec.MimeType)
	}
	return play(id, stream, stop, func(done <-chan struct{}) error {
		p := newPacer()
		for p.wait(frameDuration, done) {
			payload, err := frame()
			if err != nil {
				return err
			}
			if err = stream.Write(payload, false, uint32(samples)); err != nil {
				return nil // closed
			}
		}
		return nil
	}), nil
}

// play runs produce on its own goroutine until the leg is closed.
func play(id string, stream *voip.Packetized, stop func() error, produce func(done <-chan struct{}) error) *voip.SourceLeg {
	done := make(chan struct{})
	finished := make(chan error, 1)
	go func() {
		err := produce(done)
		stream.Close()
		finished <- err
	}()
	return voip.NewSourceLeg(id, func() error {
		close(done)
		stream.Close()
		err := <-finished
		if stop != nil {
			if stopErr := stop(); err == nil {
				err = stopErr
			}
		}
		return err
	}, stream)
}

// sine generates a sine wave, one sample at a time.
type sine struct {
	phase, step, amplitude float64
}

func (s *sine) next() int16 {
	v := int16(math.Sin(s.phase) * s.amplitude)
	s.phase += s.step
	if s.phase > 2*math.Pi {
		s.phase -= 2 * math.Pi
	}
	return v
}
