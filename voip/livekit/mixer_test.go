//go:build opus

package livekit

import (
	"math"
	"math/cmplx"
	"strconv"
	"testing"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/voip/media/opuscodec"
)

// toneFrames encodes n 20 ms frames of a sine of hz.
func toneFrames(t testing.TB, hz float64, n int) [][]byte {
	enc, err := opuscodec.NewEncoder(1, 32000)
	require.NoError(t, err)
	defer enc.Close()
	var out [][]byte
	pcm, buf := make([]int16, opuscodec.FrameSamples), make([]byte, 1500)
	for f := range n {
		for i := range pcm {
			pcm[i] = int16(6000 * math.Sin(2*math.Pi*hz*float64(f*opuscodec.FrameSamples+i)/opuscodec.SampleRate))
		}
		m, err := enc.Encode(pcm, buf)
		require.NoError(t, err)
		out = append(out, append([]byte(nil), buf[:m]...))
	}
	return out
}

// Two participants' tones come out of the mixer together; a participant
// that may not be heard (no membership) is left out; the packets are one
// stream, numbered in order.
func TestMixerMixesEveryoneAccepted(t *testing.T) {
	var got [][]byte
	accept := func(id string) bool { return id != "stranger" }
	x, err := newMixer(func(pkt []byte) { got = append(got, pkt) }, accept)
	require.NoError(t, err)
	defer x.close()
	a, b, c := toneFrames(t, 660, 60), toneFrames(t, 880, 60), toneFrames(t, 1200, 60)
	for i := range 60 {
		x.push("alice", a[i])
		x.push("bob", b[i])
		x.push("stranger", c[i])
		x.tick()
	}
	require.Len(t, got, 60)

	dec, err := opuscodec.NewDecoder(1)
	require.NoError(t, err)
	defer dec.Close()
	var pcm []int16
	frame := make([]int16, opuscodec.FrameSamples*6)
	var prev rtp.Header
	for i, pkt := range got {
		var h rtp.Header
		n, err := h.Unmarshal(pkt)
		require.NoError(t, err)
		if i > 0 {
			require.Equal(t, prev.SequenceNumber+1, h.SequenceNumber)
			require.Equal(t, prev.Timestamp+opuscodec.FrameSamples, h.Timestamp)
			require.Equal(t, prev.SSRC, h.SSRC)
		}
		prev = h
		m, err := dec.Decode(pkt[n:], frame)
		require.NoError(t, err)
		pcm = append(pcm, frame[:m]...)
	}
	tail := pcm[len(pcm)-16384:]
	l660, l880, l1200 := level(tail, 660), level(tail, 880), level(tail, 1200)
	t.Logf("levels: 660 Hz %.0f, 880 Hz %.0f, 1200 Hz %.0f", l660, l880, l1200)
	require.Greater(t, l660, 20*l1200, "alice is heard, the stranger is not")
	require.Greater(t, l880, 20*l1200, "bob is heard, the stranger is not")
	require.InDelta(t, 1, l660/l880, 0.5, "both about as loud")
}

// A participant whose packets stop is concealed for a few frames, then
// counts as silent: nothing is sent while nobody speaks.
func TestMixerIsQuietWhenNobodySpeaks(t *testing.T) {
	n := 0
	x, err := newMixer(func([]byte) { n++ }, nil)
	require.NoError(t, err)
	defer x.close()
	for _, f := range toneFrames(t, 660, 3) {
		x.push("alice", f)
		x.tick()
	}
	for range 20 {
		x.tick()
	}
	require.Equal(t, 3+concealFrames, n)
	x.drop("alice")
	x.drop("nobody")
	x.tick()
	require.Equal(t, 3+concealFrames, n)
}

// level is the magnitude of one frequency in samples.
func level(samples []int16, hz float64) float64 {
	var sum complex128
	for i, s := range samples {
		sum += complex(float64(s), 0) * cmplx.Exp(complex(0, -2*math.Pi*hz*float64(i)/opuscodec.SampleRate))
	}
	return cmplx.Abs(sum) / float64(len(samples))
}

// BenchmarkMixPerParticipant: the mixer's CPU for one mixed leg, per
// participant and 20 ms frame (decode each, sum, one encode shared), for
// 2, 4 and 8 participants; against the baseline of forwarding the same
// frames (parsing and copying, as the active-speaker path does).
func BenchmarkMixPerParticipant(b *testing.B) {
	frames := map[int][][]byte{}
	for _, hz := range []float64{440, 550, 660, 770, 880, 990, 1100, 1210} {
		frames[int(hz)] = toneFrames(b, hz, 50)
	}
	for _, n := range []int{2, 4, 8} {
		b.Run("mix-"+strconv.Itoa(n), func(b *testing.B) {
			x, err := newMixer(func([]byte) {}, nil)
			require.NoError(b, err)
			defer x.close()
			ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}[:n]
			i := 0
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				k := 0
				for _, f := range frames {
					if k == n {
						break
					}
					x.push(ids[k], f[i%50])
					k++
				}
				x.tick()
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/participant-frame")
		})
	}
	b.Run("forward-baseline", func(b *testing.B) {
		f := frames[660]
		h := rtp.Header{Version: 2, PayloadType: 111, SSRC: 1}
		b.ReportAllocs()
		for i := range b.N {
			h.SequenceNumber = uint16(i)
			pkt, _ := (&rtp.Packet{Header: h, Payload: f[i%50]}).Marshal()
			var back rtp.Packet
			_ = back.Unmarshal(pkt)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/participant-frame")
	})
}
