package jsclient_test

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/jsclient"
)

// launchWithTone starts a browser of the test's own whose clients'
// microphone plays a tone of hz.
func launchWithTone(t *testing.T, hz float64) *jsclient.Browser {
	t.Helper()
	wav := filepath.Join(t.TempDir(), "tone.wav")
	require.NoError(t, jsclient.ToneWAV(wav, hz, 2))
	br, err := jsclient.Launch(ctxFor(t), jsclient.Options{FakeAudioCapture: wav})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, br.Close()) })
	return br
}

// TestToneCall: two js-sdk clients, each in a browser whose fake microphone
// plays a tone of its own (A 880 Hz, B 660 Hz), call each other through
// Dendrite; each hears the other's tone, not its own, in the remote audio.
func TestToneCall(t *testing.T) {
	brA, brB := launchWithTone(t, 880), launchWithTone(t, 660)
	a, b, room, _ := pairOn(t, brA, brB, false, jsclient.IncomingNotify)
	ca, cb := connect(t, a, b, room, false)
	ctx := ctxFor(t)
	heardByA, err := ca.WaitRemoteTone(ctx, 660, 15)
	require.NoError(t, err)
	heardByB, err := cb.WaitRemoteTone(ctx, 880, 15)
	require.NoError(t, err)
	t.Logf("A hears %s; B hears %s", heardByA, heardByB)
	hangup(t, ca, cb)
}

// TestTonesCall: a js-sdk client whose fake microphone plays 660 Hz and
// 880 Hz mixed (as the bot's mix of two Element Call participants sounds)
// calls another through Dendrite; the callee hears both tones at once, and
// no tone of 1200 Hz beside the 660 Hz one.
func TestTonesCall(t *testing.T) {
	wav := filepath.Join(t.TempDir(), "mix.wav")
	require.NoError(t, jsclient.TonesWAV(wav, []float64{660, 880}, 2))
	brA, err := jsclient.Launch(ctxFor(t), jsclient.Options{FakeAudioCapture: wav})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, brA.Close()) })
	// The callee's own microphone (the shared browser's beep) plays no
	// part: only what it receives is analysed.
	a, b, room, _ := pairOn(t, brA, browser, false, jsclient.IncomingNotify)
	ca, cb := connect(t, a, b, room, false)
	ctx := ctxFor(t)
	mix, err := cb.WaitRemoteTones(ctx, []float64{660, 880}, 15)
	require.NoError(t, err, "%s", mix)
	t.Logf("B hears the mix: %s", mix)
	for _, tone := range mix.Tones {
		require.InDelta(t, tone.Want, tone.Hz, 15)
	}
	require.InDelta(t, nearest(mix.Dominant.Hz, 660, 880), mix.Dominant.Hz, 15, "%s", mix)

	// A tone that is not in the mix: not heard however long one waits, so
	// a short wait (long enough for tens of readings) ends with the
	// context, and its last reading says what was heard.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	mix, err = cb.WaitRemoteTones(short, []float64{660, 1200}, 15)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	t.Logf("B does not hear 1200 Hz: %v", err)
	require.Len(t, mix.Tones, 2)
	require.True(t, mix.Tones[0].OK, "%s", mix)
	require.False(t, mix.Tones[1].OK, "%s", mix)

	// The dominant tone, as before, is one of the two.
	tone, err := cb.RemoteTone(ctx)
	require.NoError(t, err)
	require.InDelta(t, nearest(tone.Hz, 660, 880), tone.Hz, 15, "%s", tone)
	hangup(t, ca, cb)
}

// nearest is whichever of hzs is nearest to hz.
func nearest(hz float64, hzs ...float64) float64 {
	best := hzs[0]
	for _, h := range hzs[1:] {
		if math.Abs(h-hz) < math.Abs(best-hz) {
			best = h
		}
	}
	return best
}

// wavSamples reads a WAV file of ToneWAV's format (the header checked by
// TestToneWAV) as samples from -1 to 1.
func wavSamples(t *testing.T, path string) []float64 {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Greater(t, len(data), 44)
	require.Equal(t, "data", string(data[36:40]))
	raw := data[44:]
	out := make([]float64, len(raw)/2)
	for i := range out {
		out[i] = float64(int16(binary.LittleEndian.Uint16(raw[2*i:]))) / math.MaxInt16
	}
	return out
}

func TestToneWAV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.wav")
	require.NoError(t, jsclient.ToneWAV(path, 880, 0.5))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	le := binary.LittleEndian
	require.Equal(t, "RIFF", string(data[0:4]))
	require.Equal(t, uint32(len(data)-8), le.Uint32(data[4:]))
	require.Equal(t, "WAVEfmt ", string(data[8:16]))
	require.Equal(t, uint16(1), le.Uint16(data[20:]), "PCM")
	require.Equal(t, uint16(1), le.Uint16(data[22:]), "mono")
	require.Equal(t, uint32(jsclient.ToneRate), le.Uint32(data[24:]))
	require.Equal(t, uint16(16), le.Uint16(data[34:]))
	require.Equal(t, "data", string(data[36:40]))
	samples := data[44:]
	require.Equal(t, int(le.Uint32(data[40:])), len(samples))
	n := len(samples) / 2
	require.InDelta(t, 0.5*jsclient.ToneRate, n, 100, "about half a second")
	// 440 whole cycles: 880 rising zero crossings a second, and a peak of
	// half of full scale.
	crossings, peak := 0, 0
	prev := int16(le.Uint16(samples[2*(n-1):])) // the loop's last sample leads into the first
	for i := range n {
		v := int16(le.Uint16(samples[2*i:]))
		if prev < 0 && v >= 0 {
			crossings++
		}
		peak = max(peak, int(math.Abs(float64(v))))
		prev = v
	}
	require.Equal(t, 440, crossings)
	require.InDelta(t, math.MaxInt16/2, peak, 2)

	require.Error(t, jsclient.ToneWAV(path, 0, 1))
	require.Error(t, jsclient.ToneWAV(path, 30000, 1))
}
