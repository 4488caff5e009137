//go:build linux

package jamid

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"
)

// playbackRate is the recording's format: 48 kHz mono S16_LE (alsaConfig).
const playbackRate = 48000

func (d *Daemon) playbackPath() string { return filepath.Join(d.dir, "playback.raw") }

// Heard is what jamid played over a window: its level and its dominant
// frequency.
type Heard struct {
	Hz   float64 // dominant frequency, 50 Hz–8 kHz
	DBFS float64 // RMS level; -inf for digital silence
}

func (h Heard) String() string { return fmt.Sprintf("%.1f Hz at %.0f dBFS", h.Hz, h.DBFS) }

// PlaybackMark is a point in what jamid played, for WaitHears: what was
// played before it does not count.
type PlaybackMark int64

// MarkPlayback marks how much jamid has played so far (zero before it
// played anything).
func (d *Daemon) MarkPlayback() PlaybackMark {
	fi, err := os.Stat(d.playbackPath())
	if err != nil {
		return 0
	}
	return PlaybackMark(fi.Size() &^ 1)
}

// Playback analyses the last window of what jamid played (Options.
// RecordPlayback). It fails while less than a window has been played
// since the device was last opened.
func (d *Daemon) Playback(window time.Duration) (Heard, error) {
	return d.playbackAfter(0, window)
}

// playbackAfter is Playback that fails while less than a window has been
// played after mark.
func (d *Daemon) playbackAfter(mark PlaybackMark, window time.Duration) (Heard, error) {
	if !d.opts.RecordPlayback {
		return Heard{}, errors.New("jamid's playback is not recorded: set Options.RecordPlayback")
	}
	n := int(window.Seconds() * playbackRate)
	f, err := os.Open(d.playbackPath())
	if err != nil {
		return Heard{}, fmt.Errorf("reading jamid's playback: %w", err)
	}
	defer f.Close()
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return Heard{}, fmt.Errorf("reading jamid's playback: %w", err)
	}
	end &^= 1 // a sample being written
	if played := end - int64(mark); played < int64(2*n) {
		return Heard{}, fmt.Errorf("jamid has played %v (since the mark), less than %v", time.Duration(played/2)*time.Second/playbackRate, window)
	}
	b := make([]byte, 2*n)
	if _, err := f.ReadAt(b, end-int64(len(b))); err != nil {
		return Heard{}, fmt.Errorf("reading jamid's playback: %w", err)
	}
	x := make([]float64, n)
	for i := range x {
		x[i] = float64(int16(binary.LittleEndian.Uint16(b[2*i:]))) / math.MaxInt16
	}
	return analyse(x, playbackRate), nil
}

// WaitHears waits until the last second jamid played, all of it after
// mark, has hz (within tol) as its dominant frequency, above -50 dBFS,
// checking twice a second (the file grows with no event to wait on). It
// returns what it heard last.
func (d *Daemon) WaitHears(ctx context.Context, mark PlaybackMark, hz, tol float64) (Heard, error) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var last Heard
	var lastErr error
	for {
		h, err := d.playbackAfter(mark, time.Second)
		if err == nil && math.Abs(h.Hz-hz) <= tol && h.DBFS > -50 {
			return h, nil
		}
		last, lastErr = h, err
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("jamid did not play %.0f Hz: %w", hz, lastErr)
			}
			return last, fmt.Errorf("jamid did not play %.0f Hz: it played %v", hz, last)
		case <-t.C:
		}
	}
}

// WaitQuiet waits until the last second jamid played, all of it after
// mark, is below -50 dBFS (nothing, or silence, decoded), checking twice
// a second as WaitHears does.
func (d *Daemon) WaitQuiet(ctx context.Context, mark PlaybackMark) (Heard, error) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var last Heard
	var lastErr error
	for {
		h, err := d.playbackAfter(mark, time.Second)
		if err == nil && h.DBFS <= -50 {
			return h, nil
		}
		last, lastErr = h, err
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("jamid did not go quiet: %w", lastErr)
			}
			return last, fmt.Errorf("jamid did not go quiet: it played %v", last)
		case <-t.C:
		}
	}
}

// analyse finds the RMS level and the dominant frequency of x (rate Hz):
// a Goertzel scan every 10 Hz from 50 Hz to 8 kHz, then every 0.5 Hz
// around the best.
func analyse(x []float64, rate float64) Heard {
	var sum float64
	for _, v := range x {
		sum += v * v
	}
	h := Heard{DBFS: 10 * math.Log10(sum/float64(len(x)))}
	best, bestPow := 0.0, -1.0
	scan := func(from, to, step float64) {
		for f := from; f <= to; f += step {
			if p := goertzel(x, f, rate); p > bestPow {
				best, bestPow = f, p
			}
		}
	}
	scan(50, 8000, 10)
	scan(best-10, best+10, 0.5)
	h.Hz = best
	return h
}

// goertzel is the power of x at frequency f.
func goertzel(x []float64, f, rate float64) float64 {
	c := 2 * math.Cos(2*math.Pi*f/rate)
	var s1, s2 float64
	for _, v := range x {
		s1, s2 = v+c*s1-s2, s1
	}
	return s1*s1 + s2*s2 - c*s1*s2
}
