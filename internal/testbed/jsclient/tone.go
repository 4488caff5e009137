package jsclient

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"time"
)

// ToneRate is the sample rate of the files ToneWAV and TonesWAV write.
const ToneRate = 48000

// ToneWAV writes a WAV file (PCM, 16-bit, mono, 48 kHz) of a sine of hz at
// half of full scale, about seconds long: rounded to a whole number of
// cycles, so that Chromium, which loops the file as its fake microphone
// (Options.FakeAudioCapture), plays it without a click.
func ToneWAV(path string, hz, seconds float64) error {
	if hz <= 0 || hz >= ToneRate/2 || seconds <= 0 || math.IsNaN(hz) || math.IsNaN(seconds) {
		return fmt.Errorf("jsclient: a tone of %g Hz for %g s cannot be written at %d Hz", hz, seconds, ToneRate)
	}
	cycles := max(1, math.Round(hz*seconds))
	n := int(math.Round(cycles * ToneRate / hz))
	if n > 1<<30 {
		return errors.New("jsclient: the tone is too long for a WAV file")
	}
	// The phase is exact at every sample (cycles·i/n), so that the last
	// sample leads into the first.
	return writeWAV(path, n, func(i int) float64 {
		return 0.5 * math.Sin(2*math.Pi*cycles*float64(i)/float64(n))
	})
}

// TonesWAV writes a WAV file like ToneWAV's of the sines of hzs mixed, as
// one microphone would pick up several people: each at an equal share of
// half of full scale (so that the mix, too, peaks at half of full scale at
// most), about seconds long. A loop of n samples holds a whole number of
// cycles of every tone only if each is a multiple of 48000/n Hz: each tone
// is moved to the nearest such frequency (at most 0.25 Hz away for a loop
// of 2 s), so that the loop still plays without a click.
func TonesWAV(path string, hzs []float64, seconds float64) error {
	if len(hzs) == 0 {
		return errors.New("jsclient: TonesWAV: no tone")
	}
	if seconds <= 0 || math.IsNaN(seconds) {
		return fmt.Errorf("jsclient: tones for %g s cannot be written", seconds)
	}
	if seconds*ToneRate > 1<<30 {
		return errors.New("jsclient: the tones are too long for a WAV file")
	}
	n := int(math.Round(max(1, seconds*ToneRate)))
	cycles := make([]float64, len(hzs))
	for k, hz := range hzs {
		if !(hz > 0 && hz < ToneRate/2) {
			return fmt.Errorf("jsclient: a tone of %g Hz cannot be written at %d Hz", hz, ToneRate)
		}
		cycles[k] = max(1, math.Round(hz*float64(n)/ToneRate))
	}
	amp := 0.5 / float64(len(hzs))
	return writeWAV(path, n, func(i int) float64 {
		v := 0.0
		for _, c := range cycles {
			v += amp * math.Sin(2*math.Pi*c*float64(i)/float64(n))
		}
		return v
	})
}

// writeWAV writes n samples (-1..1) of sample as a WAV file: PCM, 16-bit,
// mono, ToneRate.
func writeWAV(path string, n int, sample func(i int) float64) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("jsclient: %w", err)
	}
	w := bufio.NewWriter(f)
	le := binary.LittleEndian
	data := uint32(2 * n)
	hdr := make([]byte, 0, 44)
	hdr = append(hdr, "RIFF"...)
	hdr = le.AppendUint32(hdr, 36+data)
	hdr = append(hdr, "WAVEfmt "...)
	hdr = le.AppendUint32(hdr, 16)         // fmt chunk size
	hdr = le.AppendUint16(hdr, 1)          // PCM
	hdr = le.AppendUint16(hdr, 1)          // mono
	hdr = le.AppendUint32(hdr, ToneRate)   // sample rate
	hdr = le.AppendUint32(hdr, ToneRate*2) // byte rate
	hdr = le.AppendUint16(hdr, 2)          // block align
	hdr = le.AppendUint16(hdr, 16)         // bits per sample
	hdr = append(hdr, "data"...)
	hdr = le.AppendUint32(hdr, data)
	_, _ = w.Write(hdr)
	var s [2]byte
	for i := range n {
		le.PutUint16(s[:], uint16(int16(math.Round(sample(i)*math.MaxInt16))))
		_, _ = w.Write(s[:])
	}
	if err = w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("jsclient: writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("jsclient: writing %s: %w", path, err)
	}
	return nil
}

// Tone is one reading of a call's remote audio, as the page hears it: the
// strongest frequency of its spectrum (a WebAudio AnalyserNode on the
// remote audio track, an FFT of 16384 samples without smoothing, about
// 3 Hz a bin at 48 kHz, interpolated between bins) and that bin's level.
type Tone struct {
	// Hz is the dominant frequency between 50 Hz and 8 kHz (0 without a
	// remote audio track).
	Hz float64 `json:"hz"`
	// DB is its level in dB full scale (-200 for silence).
	DB float64 `json:"db"`
	// Track is false while the call has no remote audio track.
	Track bool `json:"track"`
	// TrackID is the analysed track's id (Stats.AudioTracks names theirs).
	TrackID string `json:"trackId"`
	// ContextState is the AudioContext's state (running, suspended …).
	ContextState string `json:"state"`
	// At is the browser's time of the reading.
	At time.Time `json:"-"`
}

func (t Tone) String() string {
	if !t.Track {
		return "no remote audio track"
	}
	return fmt.Sprintf("%.1f Hz at %.1f dB (track %s, audio context %s)", t.Hz, t.DB, t.TrackID, t.ContextState)
}

// toneFloorDB is the level under which a reading counts as silence.
const toneFloorDB = -75

// RemoteTone reads the dominant frequency of the call's remote audio now.
// The page's analyser for the call is made at the first reading (and made
// again when the remote audio track changes), so the first reading of a
// call may be silence.
func (call *Call) RemoteTone(ctx context.Context) (Tone, error) {
	var res struct {
		Tone
		T float64 `json:"t"`
	}
	if err := call.c.invoke(ctx, "remoteTone", &res, call.id); err != nil {
		return Tone{}, err
	}
	res.At = browserTime(res.T)
	return res.Tone, nil
}

// WaitRemoteTone waits until the call's remote audio is a tone of hz (the
// dominant frequency within tolerance Hz, above -75 dBFS) in three
// readings in a row, 100 ms apart, and returns the last one. When ctx ends
// first the error says what was heard last.
func (call *Call) WaitRemoteTone(ctx context.Context, hz, tolerance float64) (Tone, error) {
	const inARow = 3
	var last Tone
	good := 0
	for {
		t, err := call.RemoteTone(ctx)
		if err != nil {
			return last, err
		}
		last = t
		if t.Track && t.DB > toneFloorDB && math.Abs(t.Hz-hz) <= tolerance {
			if good++; good == inARow {
				return t, nil
			}
		} else {
			good = 0
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("jsclient: call %s of %s: no tone of %g ± %g Hz heard (last: %s): %w", call.id, call.c.UserID, hz, tolerance, last, ctx.Err())
		case <-call.c.closed:
			return last, call.c.closedErr()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitRemoteQuiet waits until the call's remote audio is silent (below
// -75 dBFS at its strongest frequency, or no remote audio track) in three
// readings in a row, 100 ms apart, and returns the last one.
func (call *Call) WaitRemoteQuiet(ctx context.Context) (Tone, error) {
	const inARow = 3
	var last Tone
	good := 0
	for {
		t, err := call.RemoteTone(ctx)
		if err != nil {
			return last, err
		}
		last = t
		if !t.Track || t.DB <= toneFloorDB {
			if good++; good == inARow {
				return t, nil
			}
		} else {
			good = 0
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("jsclient: call %s of %s: the remote audio did not go quiet (last: %s): %w", call.id, call.c.UserID, last, ctx.Err())
		case <-call.c.closed:
			return last, call.c.closedErr()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
