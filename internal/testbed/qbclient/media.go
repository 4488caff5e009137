package qbclient

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
	// toneReadings is how many readings in a row, 100 ms apart, must hear
	// the tone.
	toneReadings = 3
)

// MediaStats are the WebRTC statistics of one kind of media, summed over
// the session's RTP streams of that kind.
type MediaStats struct {
	PacketsReceived uint64 `json:"packetsReceived"`
	BytesReceived   uint64 `json:"bytesReceived"`
	PacketsLost     int64  `json:"packetsLost"`
	PacketsSent     uint64 `json:"packetsSent"`
	BytesSent       uint64 `json:"bytesSent"`
	// Video only (inbound).
	FramesDecoded uint64 `json:"framesDecoded"`
	FrameWidth    int    `json:"frameWidth"`
	FrameHeight   int    `json:"frameHeight"`
	// Audio only (inbound): the level now, 0..1.
	AudioLevel    float64 `json:"audioLevel"`
	InboundCodec  string  `json:"inboundCodec"`  // e.g. audio/opus, video/VP8
	OutboundCodec string  `json:"outboundCodec"` // e.g. audio/opus, video/VP8
}

// Stats are a session's WebRTC statistics (getStats() of its peer
// connections).
type Stats struct {
	Audio, Video MediaStats
	// Peers is how many peer connections the session has (the SDK drops a
	// closed one).
	Peers int `json:"peers"`
	// ICEState and ConnectionState are the (last) peer connection's.
	ICEState        string `json:"iceState"`
	ConnectionState string `json:"connectionState"`
	// At is the browser's time of the report.
	At time.Time `json:"-"`
}

// Stats reads the session's statistics now (zeros without a peer
// connection).
func (s *Session) Stats(ctx context.Context) (*Stats, error) {
	var res struct {
		Stats
		T float64 `json:"t"`
	}
	if err := s.c.invoke(ctx, "stats", &res, s.id); err != nil {
		return nil, err
	}
	res.At = browserTime(res.T)
	return &res.Stats, nil
}

// WaitStats polls the session's statistics (there is no event for them)
// until cond accepts them, and returns the accepted ones; or the last ones
// with an error when ctx ends.
func (s *Session) WaitStats(ctx context.Context, cond func(*Stats) bool) (*Stats, error) {
	var last *Stats
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		st, err := s.Stats(ctx)
		if err != nil {
			return last, err
		}
		last = st
		if cond(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("qbclient: %s session %s: statistics not reached (last: %+v): %w", s.c.name, s.id, *last, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// WaitMedia waits until the session receives media from now on: audio
// packets, and with video, video packets and decoded frames. It returns
// the first and the last statistics.
func (s *Session) WaitMedia(ctx context.Context, video bool) (first, last *Stats, err error) {
	if first, err = s.Stats(ctx); err != nil {
		return nil, nil, err
	}
	last, err = s.WaitStats(ctx, func(st *Stats) bool {
		ok := st.Audio.PacketsReceived > first.Audio.PacketsReceived+50 && st.Audio.PacketsSent > first.Audio.PacketsSent
		if video {
			ok = ok && st.Video.PacketsReceived > first.Video.PacketsReceived+50 && st.Video.FramesDecoded > first.Video.FramesDecoded+10
		}
		return ok
	})
	return first, last, err
}

// RemoteSpectrum reads the spectrum of the session's remote audio now (a
// WebAudio analyser on the remote audio track, while a muted media element
// plays it), for jsclient.Spectrum's judgements. The analyser is made at
// the first reading, so that one may be silence.
func (s *Session) RemoteSpectrum(ctx context.Context) (jsclient.Spectrum, error) {
	var res struct {
		jsclient.Spectrum
		T float64 `json:"t"`
	}
	if err := s.c.invoke(ctx, "remoteSpectrum", &res, s.id, spectrumMaxHz); err != nil {
		return jsclient.Spectrum{}, err
	}
	res.At = browserTime(res.T)
	return res.Spectrum, nil
}

// heard is a reading's verdict: the dominant frequency and whether it is
// the tone wanted.
func heard(sp jsclient.Spectrum, hz, tolerance float64) (jsclient.ToneMix, bool) {
	mix := sp.FindTones([]float64{hz}, tolerance)
	ok := mix.Track && mix.Dominant.DB > silenceDB && math.Abs(mix.Dominant.Hz-hz) <= tolerance
	return mix, ok
}

// WaitRemoteTone waits until the dominant frequency of the session's
// remote audio is hz (within tolerance Hz, above -75 dBFS) in three
// readings in a row, 100 ms apart, and returns the last verdict. When ctx
// ends first the error says what was heard last.
func (s *Session) WaitRemoteTone(ctx context.Context, hz, tolerance float64) (jsclient.ToneMix, error) {
	var last jsclient.ToneMix
	timedOut := func() error {
		return fmt.Errorf("qbclient: %s session %s: no tone of %g ± %g Hz heard (last: %s): %w", s.c.name, s.id, hz, tolerance, last, ctx.Err())
	}
	good := 0
	for {
		sp, err := s.RemoteSpectrum(ctx)
		if err != nil {
			// A reading that ctx cut short: say what the last one heard.
			if ctx.Err() != nil && last.Tones != nil {
				return last, timedOut()
			}
			return last, err
		}
		var ok bool
		if last, ok = heard(sp, hz, tolerance); ok {
			if good++; good == toneReadings {
				return last, nil
			}
		} else {
			good = 0
		}
		select {
		case <-ctx.Done():
			return last, timedOut()
		case <-s.c.gone:
			return last, fmt.Errorf("qbclient: %s: %w", s.c.name, s.c.goneError())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitRemoteQuiet waits until the session's remote audio is silent (its
// strongest bin at or under -75 dBFS, or no remote audio track) in three
// readings in a row, 100 ms apart: e.g. after the peer's Mute.
func (s *Session) WaitRemoteQuiet(ctx context.Context) (jsclient.ToneMix, error) {
	var last jsclient.ToneMix
	good := 0
	for {
		sp, err := s.RemoteSpectrum(ctx)
		if err != nil {
			return last, err
		}
		last = sp.FindTones(nil, 0)
		if !last.Track || last.Dominant.DB <= silenceDB {
			if good++; good == toneReadings {
				return last, nil
			}
		} else {
			good = 0
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("qbclient: %s session %s: the remote audio did not go quiet (last: dominant %s): %w", s.c.name, s.id, last.Dominant, ctx.Err())
		case <-s.c.gone:
			return last, fmt.Errorf("qbclient: %s: %w", s.c.name, s.c.goneError())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
