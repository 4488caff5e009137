//go:build opus

package opuscodec

import (
	"math"
	"math/cmplx"
	"testing"

	"github.com/stretchr/testify/require"
)

// A tone survives encoding and decoding: its frequency is still the
// strongest.
func TestRoundTrip(t *testing.T) {
	enc, err := NewEncoder(1, 32000)
	require.NoError(t, err)
	defer enc.Close()
	dec, err := NewDecoder(1)
	require.NoError(t, err)
	defer dec.Close()

	var decoded []int16
	pcm, out, back := make([]int16, FrameSamples), make([]byte, 1500), make([]int16, FrameSamples)
	for f := range 50 {
		for i := range pcm {
			n := f*FrameSamples + i
			pcm[i] = int16(8000 * math.Sin(2*math.Pi*660*float64(n)/SampleRate))
		}
		n, err := enc.Encode(pcm, out)
		require.NoError(t, err)
		require.Positive(t, n)
		got, err := dec.Decode(out[:n], back)
		require.NoError(t, err)
		require.Equal(t, FrameSamples, got)
		decoded = append(decoded, back...)
	}
	// Concealment of a lost packet still yields a frame.
	got, err := dec.Decode(nil, back)
	require.NoError(t, err)
	require.Equal(t, FrameSamples, got)

	require.InDelta(t, 660, dominant(decoded[len(decoded)-8192:]), 10)
}

func TestBadInput(t *testing.T) {
	dec, err := NewDecoder(1)
	require.NoError(t, err)
	defer dec.Close()
	_, err = dec.Decode([]byte{0xff, 0xff, 0xff}, make([]int16, FrameSamples))
	require.Error(t, err, "garbage is not a packet")
	_, err = dec.Decode([]byte{1}, nil)
	require.Error(t, err)
	_, err = NewEncoder(3, 32000)
	require.Error(t, err, "three channels")
}

// dominant is the strongest frequency of samples (a plain DFT around the
// audible band, enough for a test).
func dominant(samples []int16) float64 {
	best, bestHz := 0.0, 0.0
	for hz := 100.0; hz < 2000; hz += 2 {
		var sum complex128
		for i, s := range samples {
			sum += complex(float64(s), 0) * cmplx.Exp(complex(0, -2*math.Pi*hz*float64(i)/SampleRate))
		}
		if a := cmplx.Abs(sum); a > best {
			best, bestHz = a, hz
		}
	}
	return bestHz
}
