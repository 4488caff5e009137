//go:build opus

package media

import (
	"fmt"
	"math"

	"github.com/pion/mediadevices/pkg/codec/opus"
	"github.com/pion/mediadevices/pkg/io/audio"
	"github.com/pion/mediadevices/pkg/prop"
	"github.com/pion/mediadevices/pkg/wave"
)

// LiveOpus says whether this build encodes Opus itself (-tags opus).
const LiveOpus = true

// opusTone encodes the sine live.
func opusTone(gen *sine, _ float64, samples int) (frame func() ([]byte, error), stop func() error, err error) {
	enc, err := newOpusEncoder(gen, samples)
	if err != nil {
		return nil, nil, err
	}
	return func() ([]byte, error) {
		data, release, err := enc.Read()
		if err != nil {
			return nil, fmt.Errorf("encoding tone: %w", err)
		}
		out := append([]byte(nil), data...)
		release()
		return out, nil
	}, enc.Close, nil
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

// EncodeTone encodes n 20 ms Opus frames of a sine of freq Hz (for gentone).
func EncodeTone(freq float64, n int) ([][]byte, error) {
	gen := &sine{step: 2 * math.Pi * freq / 48000, amplitude: 0.3 * math.MaxInt16}
	frame, stop, err := opusTone(gen, freq, 960)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stop() }()
	out := make([][]byte, 0, n)
	for range n {
		p, err := frame()
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
