// Package media holds the bot's own media: sources (test tone and pattern,
// files played in a loop, silence) as legs of a bridge, and sinks
// (recorders) as taps on it.
package media

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/pion/mediadevices/pkg/codec/opus"
	"github.com/pion/mediadevices/pkg/io/audio"
	"github.com/pion/mediadevices/pkg/prop"
	"github.com/pion/mediadevices/pkg/wave"
	"github.com/pion/webrtc/v4"

	"github.com/voipbot/voipbot/voip"
)

// frameDuration is the audio packetization interval.
const frameDuration = 20 * time.Millisecond

// Tone makes a source leg playing a sine tone of freq Hz in the given audio
// format: Opus (encoded by libopus, linked statically by mediadevices), or
// PCMU/PCMA (G.711).
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
		enc, err := newOpusEncoder(gen, samples)
		if err != nil {
			return nil, err
		}
		frame = func() ([]byte, error) {
			data, release, err := enc.Read()
			if err != nil {
				return nil, fmt.Errorf("encoding tone: %w", err)
			}
			out := append([]byte(nil), data...)
			release()
			return out, nil
		}
		stop = enc.Close
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

// newOpusEncoder encodes the sine as 20 ms mono frames at 48 kHz. The
// encoder pulls samples; pacing is the caller's.
func newOpusEncoder(gen *sine, samples int) (interface {
	Read() ([]byte, func(), error)
	Close() error
}, error) {
	reader := audio.ReaderFunc(func() (wave.Audio, func(), error) {
		chunk := wave.NewInt16Interleaved(wave.ChunkInfo{Len: samples, Channels: 1, SamplingRate: 48000})
		for i := range samples {
			chunk.SetInt16(i, 0, wave.Int16Sample(gen.next()))
		}
		return chunk, func() {}, nil
	})
	params, err := opus.NewParams()
	if err != nil {
		return nil, err
	}
	params.BitRate = 32000
	enc, err := params.BuildAudioEncoder(reader, prop.Media{Audio: prop.Audio{SampleRate: 48000, ChannelCount: 1, Latency: frameDuration}})
	if err != nil {
		return nil, fmt.Errorf("starting Opus encoder: %w", err)
	}
	return enc, nil
}
