package jsclient_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/jsclient"
)

// binHz is the page analyser's bin at 48 kHz (an FFT of 16384 samples).
const binHz = 48000.0 / 16384

// synthPeak is a peak of a synthetic spectrum: at Hz, DB at its top, and
// falling by Curve dB per bin² away from it (a parabola in dB, as a
// Gaussian window's main lobe is: the page's interpolation finds its top
// exactly).
type synthPeak struct{ Hz, DB, Curve float64 }

// synthSpectrum is a spectrum from 0 Hz to just above 8 kHz, as the page
// returns it: a noise floor of floorDB ± 3 dB (the same every run) under
// the peaks.
func synthSpectrum(floorDB float64, peaks ...synthPeak) jsclient.Spectrum {
	rng := rand.New(rand.NewPCG(1, 2))
	db := make([]float64, int(math.Floor(8000/binHz))+2)
	for i := range db {
		db[i] = floorDB + 6*(rng.Float64()-0.5)
		for _, p := range peaks {
			d := float64(i) - p.Hz/binHz
			db[i] = max(db[i], p.DB-p.Curve*d*d)
		}
	}
	return jsclient.Spectrum{BinHz: binHz, DB: db, Track: true, TrackID: "synthetic", ContextState: "running"}
}

func TestFindTones(t *testing.T) {
	two := synthSpectrum(-110, synthPeak{660, -30, 6}, synthPeak{880.7, -33, 6})

	t.Run("both", func(t *testing.T) {
		m := two.FindTones([]float64{660, 880}, 15)
		require.True(t, m.OK(), "%s", m)
		require.InDelta(t, 660, m.Tones[0].Hz, 0.01)
		require.InDelta(t, -30, m.Tones[0].DB, 1)
		require.InDelta(t, 880.7, m.Tones[1].Hz, 0.01)
		require.InDelta(t, 660, m.Dominant.Hz, 0.01)
		require.InDelta(t, -110, m.FloorDB, 1)
		require.Contains(t, m.String(), "660 Hz: 660.0 Hz at -30.")
	})
	t.Run("one of them is absent", func(t *testing.T) {
		m := two.FindTones([]float64{660, 1200}, 15)
		require.False(t, m.OK(), "%s", m)
		require.True(t, m.Tones[0].OK)
		require.False(t, m.Tones[1].OK)
		require.NotEmpty(t, m.Tones[1].Why)
	})
	t.Run("outside the tolerance", func(t *testing.T) {
		m := two.FindTones([]float64{660, 900}, 15)
		require.False(t, m.Tones[1].OK, "%s", m)
	})
	t.Run("a tolerance narrower than a bin", func(t *testing.T) {
		// The peaks' strongest bins are 0.3 and 1.1 Hz from them; their
		// interpolated frequencies are exact.
		m := two.FindTones([]float64{660, 880.7}, 0.5)
		require.True(t, m.OK(), "%s", m)
		m = two.FindTones([]float64{660, 880}, 0.5)
		require.False(t, m.OK(), "%s", m)
		require.Equal(t, "0.7 Hz off", m.Tones[1].Why)
	})
	t.Run("too far under the dominant tone", func(t *testing.T) {
		s := synthSpectrum(-110, synthPeak{660, -30, 6}, synthPeak{880, -51, 6})
		m := s.FindTones([]float64{660, 880}, 15)
		require.False(t, m.OK(), "%s", m)
		require.Contains(t, m.Tones[1].Why, "under the dominant")
		// 19 dB under it is a tone of the mix.
		s = synthSpectrum(-110, synthPeak{660, -30, 6}, synthPeak{880, -49, 6})
		require.True(t, s.FindTones([]float64{660, 880}, 15).OK())
	})
	t.Run("too close to the noise floor", func(t *testing.T) {
		s := synthSpectrum(-60, synthPeak{660, -40, 6}, synthPeak{880, -41, 6})
		m := s.FindTones([]float64{660, 880}, 15)
		require.False(t, m.OK(), "%s", m)
		require.Contains(t, m.Tones[0].Why, "above the floor")
	})
	t.Run("too quiet", func(t *testing.T) {
		s := synthSpectrum(-160, synthPeak{660, -80, 6}, synthPeak{880, -81, 6})
		m := s.FindTones([]float64{660, 880}, 15)
		require.False(t, m.OK(), "%s", m)
		require.Contains(t, m.Tones[0].Why, "dBFS")
	})
	t.Run("the skirt of a peak beyond the tolerance", func(t *testing.T) {
		// A broad peak at 690 Hz is still loud 15 Hz from 660 Hz, but
		// rising towards 690 Hz there: no tone of 660 Hz.
		s := synthSpectrum(-110, synthPeak{690, -30, 0.2}, synthPeak{880, -31, 6})
		m := s.FindTones([]float64{660, 880}, 15)
		require.False(t, m.OK(), "%s", m)
		require.Equal(t, "not a local maximum", m.Tones[0].Why)
		require.Greater(t, m.Tones[0].DB, -40.0, "loud enough but for its shape")
		require.True(t, m.Tones[1].OK)
	})
	t.Run("silence", func(t *testing.T) {
		db := make([]float64, int(math.Floor(8000/binHz))+2)
		for i := range db {
			db[i] = -200
		}
		m := jsclient.Spectrum{BinHz: binHz, DB: db, Track: true}.FindTones([]float64{660}, 15)
		require.False(t, m.OK(), "%s", m)
		require.Equal(t, -200.0, m.FloorDB)
	})
	t.Run("no track", func(t *testing.T) {
		m := jsclient.Spectrum{}.FindTones([]float64{660, 880}, 15)
		require.False(t, m.OK())
		require.Len(t, m.Tones, 2)
		require.Equal(t, "no remote audio track", m.String())
	})
	t.Run("outside the band", func(t *testing.T) {
		m := synthSpectrum(-110, synthPeak{40, -30, 6}).FindTones([]float64{40}, 15)
		require.False(t, m.OK())
		require.Contains(t, m.Tones[0].Why, "outside the band")
	})
	t.Run("nothing asked for", func(t *testing.T) {
		require.False(t, two.FindTones(nil, 15).OK())
	})
}

func TestTonesWAV(t *testing.T) {
	path := t.TempDir() + "/mix.wav"
	require.NoError(t, jsclient.TonesWAV(path, []float64{660, 880}, 2))
	samples := wavSamples(t, path)
	n := len(samples)
	require.Equal(t, 2*jsclient.ToneRate, n)
	// The mix is the two sines at a quarter of full scale each: its
	// correlation with each is a quarter, with a tone not in it none.
	peak := 0.0
	for _, v := range samples {
		peak = max(peak, math.Abs(v))
	}
	require.LessOrEqual(t, peak, 0.5+1e-4)
	require.Greater(t, peak, 0.45)
	for hz, want := range map[float64]float64{660: 0.25, 880: 0.25, 1200: 0, 770: 0} {
		var re, im float64
		for i, v := range samples {
			re += v * math.Cos(2*math.Pi*hz*float64(i)/jsclient.ToneRate)
			im += v * math.Sin(2*math.Pi*hz*float64(i)/jsclient.ToneRate)
		}
		require.InDelta(t, want, 2*math.Hypot(re, im)/float64(n), 1e-3, "%g Hz", hz)
	}
	// Whole cycles of each: the loop's last sample leads into the first
	// as any other sample into the next.
	require.InDelta(t, samples[1]-samples[0], samples[0]-samples[n-1], 2e-3)

	require.Error(t, jsclient.TonesWAV(path, nil, 1))
	require.Error(t, jsclient.TonesWAV(path, []float64{660, 30000}, 1))
	require.Error(t, jsclient.TonesWAV(path, []float64{660}, 0))
}
