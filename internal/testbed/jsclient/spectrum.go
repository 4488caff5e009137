package jsclient

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The band in which tones are looked for, as RemoteTone does: above mains
// hum and below what a narrowband codec leg (8 kHz G.711 on the bot's
// legacy side) can carry anyway.
const (
	spectrumMinHz = 50
	spectrumMaxHz = 8000
)

// What makes a bin a tone of a mix (see Spectrum.FindTones).
const (
	// mixMaxBelowDominantDB: the participants of a mix need not be equally
	// loud (their microphones, the mixer's gains), but a real one is not
	// 20 dB (a tenth in amplitude) under the loudest; what is that far
	// under it is more likely the codec's artefacts or the window's
	// leakage around the loudest tone than a second person.
	mixMaxBelowDominantDB = 20
	// mixMinAboveFloorDB: the median bin of the band is the noise floor (a
	// few tones fill a few dozen of its ~2700 bins), and a tone stands
	// well clear of it; 25 dB is far beyond the floor's bin-to-bin spread,
	// so that noise alone never passes.
	mixMinAboveFloorDB = 25
)

// Spectrum is one reading of the spectrum of a call's remote audio, as the
// page's analyser has it (the analyser of RemoteTone: an FFT of 16384
// samples with a Blackman window, without smoothing, about 2.9 Hz a bin
// at 48 kHz), from 0 Hz to just above 8 kHz.
type Spectrum struct {
	// BinHz is the width of a bin: bin i is centred on i·BinHz.
	BinHz float64 `json:"binHz"`
	// DB is each bin's level in dB full scale, -200 for silence.
	DB []float64 `json:"db"`
	// Track is false while the call has no remote audio track (DB is
	// empty then).
	Track bool `json:"track"`
	// TrackID is the analysed track's id (Stats.AudioTracks names theirs).
	TrackID string `json:"trackId"`
	// ContextState is the AudioContext's state (running, suspended …).
	ContextState string `json:"state"`
	// At is the browser's time of the reading.
	At time.Time `json:"-"`
}

// Peak is a peak of a spectrum: its frequency, interpolated between bins
// (a parabola through its bin's dB and its neighbours'), and its bin's
// level.
type Peak struct {
	Hz float64
	DB float64
}

func (p Peak) String() string { return fmt.Sprintf("%.1f Hz at %.1f dB", p.Hz, p.DB) }

// WantedTone is what a spectrum has within tolerance of a frequency asked
// for.
type WantedTone struct {
	// Want is the frequency asked for.
	Want float64
	// Peak is the strongest bin within tolerance of Want (zero when there
	// is none to look at).
	Peak
	// OK says that Peak is a tone of the mix; Why, if not, says why not.
	OK  bool
	Why string
}

// ToneMix is the verdict of Spectrum.FindTones: each wanted tone as
// measured, and what they were measured against.
type ToneMix struct {
	Tones []WantedTone
	// Dominant is the strongest bin of the band (50 Hz to 8 kHz).
	Dominant Peak
	// FloorDB is the median level of the band's bins.
	FloorDB float64
	// Track, TrackID, ContextState and At are the spectrum's.
	Track        bool
	TrackID      string
	ContextState string
	At           time.Time
}

// OK reports whether every wanted tone is a tone of the mix.
func (m ToneMix) OK() bool {
	if len(m.Tones) == 0 {
		return false
	}
	for _, t := range m.Tones {
		if !t.OK {
			return false
		}
	}
	return true
}

func (m ToneMix) String() string {
	if !m.Track {
		return "no remote audio track"
	}
	var b strings.Builder
	for _, t := range m.Tones {
		fmt.Fprintf(&b, "%g Hz: %s", t.Want, t.Peak)
		if t.OK {
			b.WriteString(" ok; ")
		} else {
			fmt.Fprintf(&b, " (%s); ", t.Why)
		}
	}
	fmt.Fprintf(&b, "dominant %s, floor %.1f dB (track %s, audio context %s)", m.Dominant, m.FloorDB, m.TrackID, m.ContextState)
	return b.String()
}

// band is the range of bins analysed, both ends included; lo > hi when
// the spectrum has none.
func (s Spectrum) band() (lo, hi int) {
	if s.BinHz <= 0 || len(s.DB) < 3 {
		return 1, 0
	}
	// Every bin of the band has both neighbours, for the local maximum
	// and the interpolation.
	lo = max(1, int(math.Ceil(spectrumMinHz/s.BinHz)))
	hi = min(len(s.DB)-2, int(math.Floor(spectrumMaxHz/s.BinHz)))
	return lo, hi
}

// peak is bin i as a peak, interpolated between its neighbours.
func (s Spectrum) peak(i int) Peak {
	hz := float64(i) * s.BinHz
	l, m, r := s.DB[i-1], s.DB[i], s.DB[i+1]
	if d := l - 2*m + r; d != 0 {
		if p := 0.5 * (l - r) / d; math.Abs(p) <= 1 {
			hz = (float64(i) + p) * s.BinHz
		}
	}
	return Peak{Hz: hz, DB: m}
}

// FindTones judges whether every frequency of hzs is a tone of the audio
// at once, each within tolerance Hz. A wanted frequency is a tone when the
// strongest bin within tolerance of it (and half a bin: where a tone's
// strongest bin can lie)
//   - is a local maximum of the spectrum (not the skirt of a peak beyond
//     the tolerance),
//   - peaks (interpolated) within tolerance of it,
//   - is within 20 dB of the strongest bin of the band (50 Hz to 8 kHz),
//   - is 25 dB above the band's median bin (the noise floor), and
//   - is above -75 dBFS (RemoteTone's silence).
//
// Frequencies outside the band, or a spectrum without a track, find no
// tone.
func (s Spectrum) FindTones(hzs []float64, tolerance float64) ToneMix {
	m := ToneMix{Track: s.Track, TrackID: s.TrackID, ContextState: s.ContextState, At: s.At}
	lo, hi := s.band()
	if lo <= hi {
		top := lo
		for i := lo + 1; i <= hi; i++ {
			if s.DB[i] > s.DB[top] {
				top = i
			}
		}
		m.Dominant = s.peak(top)
		m.FloorDB = median(s.DB[lo : hi+1])
	}
	for _, hz := range hzs {
		t := WantedTone{Want: hz}
		switch {
		case !s.Track:
			t.Why = "no remote audio track"
		case lo > hi:
			t.Why = "an empty spectrum"
		case hz < spectrumMinHz || hz > spectrumMaxHz:
			t.Why = fmt.Sprintf("outside the band of %d to %d Hz", spectrumMinHz, spectrumMaxHz)
		default:
			// A tone's strongest bin is within half a bin of it: look
			// that much further (at the band's edges, at least at the
			// nearest bin of the band).
			reach := tolerance + s.BinHz/2
			from := max(lo, int(math.Ceil((hz-reach)/s.BinHz)))
			to := min(hi, int(math.Floor((hz+reach)/s.BinHz)))
			if from > to {
				from = min(hi, max(lo, int(math.Round(hz/s.BinHz))))
				to = from
			}
			best := from
			for i := from + 1; i <= to; i++ {
				if s.DB[i] > s.DB[best] {
					best = i
				}
			}
			t.Peak = s.peak(best)
			db := s.DB[best]
			switch {
			case db < s.DB[best-1] || db < s.DB[best+1]:
				t.Why = "not a local maximum"
			case math.Abs(t.Hz-hz) > tolerance:
				t.Why = fmt.Sprintf("%.1f Hz off", math.Abs(t.Hz-hz))
			case db < m.Dominant.DB-mixMaxBelowDominantDB:
				t.Why = fmt.Sprintf("%.1f dB under the dominant tone, more than %d", m.Dominant.DB-db, mixMaxBelowDominantDB)
			case db < m.FloorDB+mixMinAboveFloorDB:
				t.Why = fmt.Sprintf("%.1f dB above the floor, less than %d", db-m.FloorDB, mixMinAboveFloorDB)
			case db <= toneFloorDB:
				t.Why = fmt.Sprintf("at or under %d dBFS", toneFloorDB)
			default:
				t.OK = true
			}
		}
		m.Tones = append(m.Tones, t)
	}
	return m
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// RemoteTones reads the spectrum of the call's remote audio now (for
// Spectrum.FindTones). Like RemoteTone's, the page's analyser is made at
// the first reading, so the first reading of a call may be silence.
func (call *Call) RemoteTones(ctx context.Context) (Spectrum, error) {
	var res struct {
		Spectrum
		T float64 `json:"t"`
	}
	if err := call.c.invoke(ctx, "remoteSpectrum", &res, call.id, spectrumMaxHz); err != nil {
		return Spectrum{}, err
	}
	res.At = browserTime(res.T)
	return res.Spectrum, nil
}

// WaitRemoteTones waits until every frequency of hzs is a tone of the
// call's remote audio at the same time (Spectrum.FindTones, each within
// tolerance Hz) in three readings in a row, 100 ms apart, as a mix of
// several people's audio has: and returns the last verdict. When ctx ends
// first the error says what was measured last. The frequencies must lie in
// 50 Hz to 8 kHz and more than twice the tolerance apart, so that each is
// a peak of its own.
func (call *Call) WaitRemoteTones(ctx context.Context, hzs []float64, tolerance float64) (ToneMix, error) {
	if len(hzs) == 0 {
		return ToneMix{}, errors.New("jsclient: WaitRemoteTones: no frequency asked for")
	}
	if tolerance < 0 || math.IsNaN(tolerance) {
		return ToneMix{}, fmt.Errorf("jsclient: WaitRemoteTones: a tolerance of %g Hz", tolerance)
	}
	for i, hz := range hzs {
		if !(hz >= spectrumMinHz && hz <= spectrumMaxHz) {
			return ToneMix{}, fmt.Errorf("jsclient: WaitRemoteTones: %g Hz is outside %d to %d Hz", hz, spectrumMinHz, spectrumMaxHz)
		}
		for _, other := range hzs[:i] {
			if math.Abs(hz-other) <= 2*tolerance {
				return ToneMix{}, fmt.Errorf("jsclient: WaitRemoteTones: %g and %g Hz are within twice the tolerance of %g Hz: one peak could pass for both", other, hz, tolerance)
			}
		}
	}
	const inARow = 3
	var last ToneMix
	timedOut := func() error {
		return fmt.Errorf("jsclient: call %s of %s: the tones %v ± %g Hz not all heard at once (last: %s): %w", call.id, call.c.UserID, hzs, tolerance, last, ctx.Err())
	}
	good := 0
	for {
		s, err := call.RemoteTones(ctx)
		if err != nil {
			// A reading that ctx cut short: say what the last one heard.
			if ctx.Err() != nil && last.Tones != nil {
				return last, timedOut()
			}
			return last, err
		}
		last = s.FindTones(hzs, tolerance)
		if last.OK() {
			if good++; good == inARow {
				return last, nil
			}
		} else {
			good = 0
		}
		select {
		case <-ctx.Done():
			return last, timedOut()
		case <-call.c.closed:
			return last, call.c.closedErr()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
