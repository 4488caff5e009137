package guestclient

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/voipbot/voipbot/internal/testbed/jsclient"
)

const (
	// spectrumMaxHz is how far up the page sends the spectrum (jsclient
	// judges tones between 50 Hz and 8 kHz).
	spectrumMaxHz = 8000
	// silenceDB is the level at or under which the dominant bin counts as
	// silence, as jsclient's RemoteTone has it.
	silenceDB = -75
	// toneReadings is how many readings in a row, 100 ms apart, must agree.
	toneReadings = 3
	// readingEvery is the time between readings: the spectrum has no event.
	readingEvery = 100 * time.Millisecond
)

// RemoteAudio is one reading of the remote audio the page plays.
type RemoteAudio struct {
	jsclient.Spectrum
	// Playing says that the page's <audio> element plays it (not paused,
	// not muted).
	Playing bool `json:"playing"`
}

// RemoteSpectrum reads the spectrum of the remote audio now: a WebAudio
// analyser of the harness's own on the audio track of the page's
// <audio id="remote-audio"> (an FFT of 16384 samples, as jsclient's). The
// analyser is made at the first reading, so that one may be silence.
func (g *Guest) RemoteSpectrum(ctx context.Context) (RemoteAudio, error) {
	var res struct {
		RemoteAudio
		T float64 `json:"t"`
	}
	if err := g.do(ctx, "spectrum", map[string]any{"maxHz": spectrumMaxHz}, &res); err != nil {
		return RemoteAudio{}, err
	}
	res.At = browserTime(res.T)
	return res.RemoteAudio, nil
}

// heard is a reading's verdict: the dominant frequency, and whether it is
// the tone wanted and plays.
func heard(a RemoteAudio, hz, tolerance float64) (jsclient.ToneMix, bool) {
	mix := a.FindTones([]float64{hz}, tolerance)
	ok := a.Playing && mix.Track && mix.Dominant.DB > silenceDB && math.Abs(mix.Dominant.Hz-hz) <= tolerance
	return mix, ok
}

// WaitRemoteTone waits until the dominant frequency of the remote audio
// that the page plays is hz (within tolerance Hz, above -75 dBFS) in three
// readings in a row, 100 ms apart, and returns the last verdict. When ctx
// ends first the error says what was heard last.
func (g *Guest) WaitRemoteTone(ctx context.Context, hz, tolerance float64) (jsclient.ToneMix, error) {
	return g.waitAudio(ctx, fmt.Sprintf("a tone of %g ± %g Hz", hz, tolerance), func(a RemoteAudio) (jsclient.ToneMix, bool) {
		return heard(a, hz, tolerance)
	})
}

// WaitRemoteQuiet waits until the remote audio is silent (its strongest
// bin at or under -75 dBFS, or no remote audio track) in three readings in
// a row, 100 ms apart.
func (g *Guest) WaitRemoteQuiet(ctx context.Context) (jsclient.ToneMix, error) {
	return g.waitAudio(ctx, "quiet", func(a RemoteAudio) (jsclient.ToneMix, bool) {
		mix := a.FindTones(nil, 0)
		return mix, !mix.Track || mix.Dominant.DB <= silenceDB
	})
}

func (g *Guest) waitAudio(ctx context.Context, what string, judge func(RemoteAudio) (jsclient.ToneMix, bool)) (jsclient.ToneMix, error) {
	var last jsclient.ToneMix
	var playing bool
	timedOut := func() error {
		return fmt.Errorf("guestclient: %s: the remote audio is not %s (last: %s; playing %t): %w", g.name, what, last, playing, ctx.Err())
	}
	good := 0
	for {
		a, err := g.RemoteSpectrum(ctx)
		if err != nil {
			// A reading that ctx cut short: say what the last one heard.
			if ctx.Err() != nil && !last.At.IsZero() {
				return last, timedOut()
			}
			return last, err
		}
		var ok bool
		last, ok = judge(a)
		playing = a.Playing
		if ok {
			if good++; good == toneReadings {
				return last, nil
			}
		} else {
			good = 0
		}
		select {
		case <-ctx.Done():
			return last, timedOut()
		case <-g.gone:
			return last, fmt.Errorf("guestclient: %s: %w", g.name, g.goneError())
		case <-time.After(readingEvery):
		}
	}
}
