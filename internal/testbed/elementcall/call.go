package elementcall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"
)

// Joined is when the steps of a join happened (the browser's clock).
type Joined struct {
	// Lobby: EC showed its lobby ("Join call").
	Lobby time.Time
	// Clicked: "Join call" was clicked.
	Clicked time.Time
	// InCall: the call view (its "End call" button) was up.
	InCall time.Time
	// Connected: a peer connection to the SFU was connected.
	Connected time.Time
}

// Took is the time from the click to the connection.
func (j Joined) Took() time.Duration { return j.Connected.Sub(j.Clicked) }

// Join opens room roomID in EC as the session's user, waits for the lobby,
// sets the camera (Options.Video) and microphone (on), clicks "Join call",
// and returns once the call view is up and the page is connected to the
// SFU. password, if not "", is a shared media key (EC's ?password=);
// without one EC uses per-participant keys in rooms with m.room.encryption
// and no media encryption in others.
//
// The session must be a device of its own (see Session), the user a member
// of the room; and the room must let members send
// org.matrix.msc3401.call.member (power level 0, as EC's own rooms). A
// browser holds one user: Join may be called again (after Leave) with the
// same session only. When the join fails, a screenshot is saved in
// Options.ArtifactsDir and named in the error.
func (b *Browser) Join(ctx context.Context, roomID string, s Session, password string) (Joined, error) {
	if b.opts.AppURL == "" {
		return Joined{}, errors.New("elementcall: Options.AppURL is not set (the Server's URL)")
	}
	b.mu.Lock()
	if b.session != nil && *b.session != s {
		b.mu.Unlock()
		return Joined{}, fmt.Errorf("elementcall: %s: the browser holds %s's device %s; one user per browser", b.Name, b.session.UserID, b.session.DeviceID)
	}
	b.session = &s
	b.mu.Unlock()

	storage := map[string]string{
		// No analytics question in the way (it would also phone out).
		"matrix-setting-opt-in-analytics": "false",
	}
	if !b.opts.ProcessedAudio {
		for _, k := range []string{"echo-cancellation", "noise-suppression", "auto-gain-control"} {
			storage["matrix-setting-"+k] = "false"
		}
	}
	for k, v := range b.opts.LocalStorage {
		storage[k] = v
	}
	init := map[string]any{
		"session": map[string]any{
			"user_id": s.UserID, "device_id": s.DeviceID, "access_token": s.AccessToken, "passwordlessUser": false,
		},
		"localStorage": storage,
	}
	url := RoomURL(b.opts.AppURL, roomID, password)
	if err := b.call(ctx, "open", map[string]any{"url": url, "init": init, "timeoutMs": waitMillis(ctx)}, nil); err != nil {
		return Joined{}, b.failed(ctx, "join", err)
	}
	var marks struct{ Lobby, Clicked, InCall, Connected float64 }
	if err := b.call(ctx, "join", map[string]any{"video": b.opts.Video, "timeoutMs": waitMillis(ctx)}, &marks); err != nil {
		return Joined{}, b.failed(ctx, "join", err)
	}
	return Joined{
		Lobby: browserTime(marks.Lobby), Clicked: browserTime(marks.Clicked),
		InCall: browserTime(marks.InCall), Connected: browserTime(marks.Connected),
	}, nil
}

// failed saves a screenshot of the page after a failed step, and says
// where in the error.
func (b *Browser) failed(ctx context.Context, step string, err error) error {
	path := filepath.Join(b.opts.ArtifactsDir, fmt.Sprintf("%s-%s-failed-%s.png", b.Name, step, time.Now().Format("150405.000")))
	// The step's context may be what ran out: the screenshot gets its own.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if shotErr := b.Screenshot(sctx, path); shotErr != nil {
		return fmt.Errorf("%w (no screenshot: %w; console log %s)", err, shotErr, b.ConsoleLog)
	}
	return fmt.Errorf("%w (screenshot %s, console log %s)", err, path, b.ConsoleLog)
}

// Leave clicks "End call" and waits until the call view is gone and every
// peer connection closed. (EC then sends its empty membership, which the
// others see as the participant leaving.)
func (b *Browser) Leave(ctx context.Context) error {
	if err := b.call(ctx, "leave", map[string]any{"timeoutMs": waitMillis(ctx)}, nil); err != nil {
		return b.failed(ctx, "leave", err)
	}
	return nil
}

// SetMicrophone switches the microphone on or off (EC's button, in the
// lobby or the call) and waits until EC shows the new state.
func (b *Browser) SetMicrophone(ctx context.Context, on bool) error {
	return b.call(ctx, "setMedia", map[string]any{"testId": "incall_mute", "on": on, "timeoutMs": waitMillis(ctx)}, nil)
}

// SetCamera switches the camera on or off, as SetMicrophone.
func (b *Browser) SetCamera(ctx context.Context, on bool) error {
	return b.call(ctx, "setMedia", map[string]any{"testId": "incall_videomute", "on": on, "timeoutMs": waitMillis(ctx)}, nil)
}

// Screenshot saves a PNG of the page.
func (b *Browser) Screenshot(ctx context.Context, path string) error {
	return b.call(ctx, "screenshot", map[string]any{"path": path, "timeoutMs": waitMillis(ctx)}, nil)
}

// Eval runs body, a JavaScript function body with the argument arg
// (JSON), in the page and decodes what it returns (awaited if a promise)
// into result (if not nil).
func (b *Browser) Eval(ctx context.Context, body string, arg, result any) error {
	return b.call(ctx, "evaluate", map[string]any{"body": body, "arg": arg}, result)
}

// invoke calls a function of the page's window.__ecTestbed (js/page.js).
func (b *Browser) invoke(ctx context.Context, fn string, result any, args ...any) error {
	if args == nil {
		args = []any{}
	}
	return b.call(ctx, "invoke", map[string]any{"fn": fn, "args": args}, result)
}

// Tone is one reading of remote audio as EC plays it: the strongest
// frequency of its spectrum (a WebAudio analyser, an FFT of 16384 samples
// without smoothing, about 3 Hz a bin at 48 kHz, interpolated between bins)
// and that bin's level.
type Tone struct {
	// Hz is the dominant frequency between 50 Hz and 8 kHz (0 for none).
	Hz float64 `json:"hz"`
	// DB is its level in dB full scale (-200 for silence).
	DB float64 `json:"db"`
	// Identity is the LiveKit participant the track belongs to, from EC's
	// audio renderer ("" for a mix, or when it could not be told).
	Identity string `json:"identity"`
	// TrackID is the MediaStreamTrack's id (Stats names theirs) ("" for a
	// mix).
	TrackID string `json:"trackId"`
	// Source is LiveKit's track source (microphone, screen_share_audio).
	Source string `json:"source"`
	// Tracks is how many tracks a mix summed.
	Tracks int `json:"tracks"`
	// TrackMuted: the track has no media flowing (WebRTC's muted).
	TrackMuted bool `json:"trackMuted"`
	// ElementMuted: EC mutes the track's element (the user would not hear
	// it); a mix leaves such tracks out.
	ElementMuted bool `json:"elementMuted"`
	// Paused: the track's element is not playing.
	Paused bool `json:"paused"`
	// ContextState is the page analysers' AudioContext state.
	ContextState string `json:"-"`
	// At is the browser's time of the reading.
	At time.Time `json:"-"`
}

func (t Tone) String() string {
	who := t.Identity
	if t.TrackID == "" {
		if t.Tracks == 0 {
			return "no remote audio played"
		}
		who = fmt.Sprintf("mix of %d tracks", t.Tracks)
	}
	flags := ""
	if t.TrackMuted {
		flags += ", track muted"
	}
	if t.ElementMuted {
		flags += ", element muted"
	}
	if t.Paused {
		flags += ", paused"
	}
	return fmt.Sprintf("%.1f Hz at %.1f dB (%s%s, audio context %s)", t.Hz, t.DB, who, flags, t.ContextState)
}

// toneFloorDB is the level under which a reading counts as silence.
const toneFloorDB = -75

// heard reports whether t is a tone of hz within tolerance.
func (t Tone) heard(hz, tolerance float64) bool {
	return t.DB > toneFloorDB && math.Abs(t.Hz-hz) <= tolerance
}

// tones is one reading of page.js remoteTones.
type tones struct {
	Tracks []Tone  `json:"tracks"`
	Mix    Tone    `json:"mix"`
	State  string  `json:"state"`
	T      float64 `json:"t"`
}

func (b *Browser) readTones(ctx context.Context) (tones, error) {
	var res tones
	if err := b.invoke(ctx, "remoteTones", &res); err != nil {
		return tones{}, err
	}
	at := browserTime(res.T)
	res.Mix.At, res.Mix.ContextState = at, res.State
	for i := range res.Tracks {
		res.Tracks[i].At, res.Tracks[i].ContextState = at, res.State
	}
	return res, nil
}

// RemoteTone reads the dominant frequency of all remote audio EC plays,
// summed (what the user hears). The page's analysers are made at the first
// reading (and for each new track), so a first reading may be silence.
func (b *Browser) RemoteTone(ctx context.Context) (Tone, error) {
	res, err := b.readTones(ctx)
	return res.Mix, err
}

// RemoteTones reads each remote audio track EC plays on its own, with its
// LiveKit identity.
func (b *Browser) RemoteTones(ctx context.Context) ([]Tone, error) {
	res, err := b.readTones(ctx)
	return res.Tracks, err
}

// WaitRemoteTone waits until the remote audio EC plays (all of it summed)
// is a tone of hz (the dominant frequency within tolerance Hz, above
// -75 dBFS) in three readings in a row, 100 ms apart, and returns the last
// one. When ctx ends first, the error says what was heard last.
func (b *Browser) WaitRemoteTone(ctx context.Context, hz, tolerance float64) (Tone, error) {
	return b.waitTone(ctx, fmt.Sprintf("a tone of %g ± %g Hz", hz, tolerance), func(r tones) (Tone, bool) {
		return r.Mix, r.Mix.heard(hz, tolerance)
	})
}

// WaitParticipantTone is WaitRemoteTone for the audio of one LiveKit
// participant (identity, e.g. Session.Identity()) alone.
func (b *Browser) WaitParticipantTone(ctx context.Context, identity string, hz, tolerance float64) (Tone, error) {
	return b.waitTone(ctx, fmt.Sprintf("a tone of %g ± %g Hz from %s", hz, tolerance, identity), func(r tones) (Tone, bool) {
		var last Tone
		for _, t := range r.Tracks {
			if t.Identity != identity {
				continue
			}
			if t.heard(hz, tolerance) {
				return t, true
			}
			last = t
		}
		return last, false
	})
}

// WaitRemoteQuiet waits until the remote audio EC plays (all of it summed)
// is silent (below -75 dBFS at its strongest frequency, or none played) in
// three readings in a row, 100 ms apart, and returns the last one.
func (b *Browser) WaitRemoteQuiet(ctx context.Context) (Tone, error) {
	return b.waitTone(ctx, "silence", func(r tones) (Tone, bool) {
		return r.Mix, r.Mix.Tracks == 0 || r.Mix.DB <= toneFloorDB
	})
}

// waitTone polls the page's readings until ok holds for three in a row.
// Polling is the only way here: an analyser has no event for "this is
// what is playing now".
func (b *Browser) waitTone(ctx context.Context, what string, ok func(tones) (Tone, bool)) (Tone, error) {
	const inARow = 3
	var last Tone
	var lastAll tones
	good := 0
	for {
		r, err := b.readTones(ctx)
		if err != nil {
			return last, err
		}
		t, heard := ok(r)
		last, lastAll = t, r
		if heard {
			if good++; good == inARow {
				return t, nil
			}
		} else {
			good = 0
		}
		select {
		case <-ctx.Done():
			var all []string
			for _, t := range lastAll.Tracks {
				all = append(all, t.String())
			}
			return last, fmt.Errorf("elementcall: %s: %s not heard (last: %s; tracks: [%s]; mix: %s): %w", b.Name, what, last, strings.Join(all, "; "), lastAll.Mix, ctx.Err())
		case <-b.done:
			return last, fmt.Errorf("elementcall: %s: the browser is gone: %w", b.Name, b.exit)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Participant is a tile EC shows, from its view model.
type Participant struct {
	// ID is EC's member id.
	ID     string `json:"id"`
	UserID string `json:"userId"`
	// Identity is the LiveKit identity EC expects for the member
	// (rtcBackendIdentity: "<user>:<device>" for a state-event membership).
	Identity string `json:"identity"`
	// Connected: a LiveKit participant of that identity is matched to the
	// member (always true for the local tile).
	Connected bool `json:"connected"`
	// AudioRendered: EC plays audio of that identity (an <audio> element:
	// only matched participants are played).
	AudioRendered bool `json:"audioRendered"`
	// AudioEncrypted: a rendered audio track of that identity is published
	// encrypted, as the SFU announces it.
	AudioEncrypted bool `json:"audioEncrypted"`
	// VideoIdentity is the LiveKit identity of the tile's video track (""
	// without video).
	VideoIdentity string `json:"videoIdentity"`
	DisplayName   string `json:"displayName"`
	Local         bool   `json:"local"`
	// Type is "user" or "screen share".
	Type string `json:"type"`
	// Encryption is EC's encryption status of the member's media:
	// connecting, okay (also in an unencrypted call), key_missing,
	// key_invalid, password_invalid. Unreliable in EC 0.26.1, which hides it
	// from its tiles ("less broken" TODO): a decryption error before the
	// member's key arrived (frames at the start of a call) leaves it at
	// key_missing for good, while the audio decrypts well.
	Encryption string `json:"encryption"`
	// UnencryptedWarning: EC shows "Not encrypted" on the tile (an
	// encrypted call, a track published without encryption).
	UnencryptedWarning bool `json:"unencryptedWarning"`
	// WaitingForMedia: the tile says "Waiting for media..." (no LiveKit
	// participant matched yet).
	WaitingForMedia bool `json:"waitingForMedia"`
	AudioEnabled    bool `json:"audioEnabled"`
	VideoEnabled    bool `json:"videoEnabled"`
	Speaking        bool `json:"speaking"`
	// FromViewModel is false for a tile whose view model was not found (only
	// DisplayName is known).
	FromViewModel bool `json:"found"`
}

// Participants lists the tiles EC shows (itself included: Local).
func (b *Browser) Participants(ctx context.Context) ([]Participant, error) {
	var ps []Participant
	err := b.invoke(ctx, "participants", &ps)
	return ps, err
}

// WaitParticipant waits until EC shows a tile of the LiveKit identity for
// which ok holds (nil: matched to a LiveKit participant whose audio EC
// plays), and returns it.
func (b *Browser) WaitParticipant(ctx context.Context, identity string, ok func(Participant) bool) (Participant, error) {
	if ok == nil {
		ok = func(p Participant) bool { return p.Connected && p.AudioRendered }
	}
	var found Participant
	_, err := b.WaitParticipants(ctx, func(ps []Participant) bool {
		for _, p := range ps {
			if p.Identity == identity && ok(p) {
				found = p
				return true
			}
		}
		return false
	})
	if err != nil {
		return Participant{}, fmt.Errorf("%w (waited for %s)", err, identity)
	}
	return found, nil
}

// WaitParticipants waits until the tiles EC shows satisfy ok, and returns
// them. Tiles change with no event the page could forward (EC renders
// from its view models): this polls, from 50 ms backing off to 500 ms.
func (b *Browser) WaitParticipants(ctx context.Context, ok func([]Participant) bool) ([]Participant, error) {
	var last []Participant
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		ps, err := b.Participants(ctx)
		if err != nil {
			return last, err
		}
		last = ps
		if ok(ps) {
			return ps, nil
		}
		select {
		case <-ctx.Done():
			seen, _ := json.Marshal(last)
			return last, fmt.Errorf("elementcall: %s: the tiles are not as asked (last: %s): %w", b.Name, seen, ctx.Err())
		case <-b.done:
			return last, fmt.Errorf("elementcall: %s: the browser is gone: %w", b.Name, b.exit)
		case <-time.After(delay):
		}
	}
}

// Stats summarises getStats() of the page's peer connections (those to
// the SFU: a publisher and a subscriber per connection).
type Stats struct {
	PeerConnections []PeerConnectionState `json:"peerConnections"`
	Inbound         []InboundStats        `json:"inbound"`
	Outbound        []OutboundStats       `json:"outbound"`
	// At is the browser's time of the reading.
	At time.Time `json:"-"`
}

// PeerConnectionState is one peer connection the page made (index in
// creation order).
type PeerConnectionState struct {
	Index              int    `json:"index"`
	ConnectionState    string `json:"connectionState"`
	ICEConnectionState string `json:"iceConnectionState"`
	SignalingState     string `json:"signalingState"`
}

// InboundStats is an inbound-rtp stream.
type InboundStats struct {
	PC      int    `json:"pc"`
	Kind    string `json:"kind"`
	SSRC    uint32 `json:"ssrc"`
	TrackID string `json:"trackId"`
	// Identity is the LiveKit participant whose track EC renders it as
	// ("" if EC does not render it).
	Identity             string  `json:"identity"`
	Codec                string  `json:"codec"`
	PacketsReceived      int64   `json:"packetsReceived"`
	PacketsLost          int64   `json:"packetsLost"`
	BytesReceived        int64   `json:"bytesReceived"`
	Jitter               float64 `json:"jitter"`
	TotalAudioEnergy     float64 `json:"totalAudioEnergy"`
	AudioLevel           float64 `json:"audioLevel"`
	ConcealedSamples     int64   `json:"concealedSamples"`
	TotalSamplesReceived int64   `json:"totalSamplesReceived"`
	FramesDecoded        int64   `json:"framesDecoded"`
	FrameWidth           int     `json:"frameWidth"`
	FrameHeight          int     `json:"frameHeight"`
}

// OutboundStats is an outbound-rtp stream.
type OutboundStats struct {
	PC            int    `json:"pc"`
	Kind          string `json:"kind"`
	SSRC          uint32 `json:"ssrc"`
	Codec         string `json:"codec"`
	PacketsSent   int64  `json:"packetsSent"`
	BytesSent     int64  `json:"bytesSent"`
	FramesEncoded int64  `json:"framesEncoded"`
}

// Stats reads the page's WebRTC statistics now.
func (b *Browser) Stats(ctx context.Context) (Stats, error) {
	var res struct {
		Stats
		T float64 `json:"t"`
	}
	if err := b.invoke(ctx, "stats", &res); err != nil {
		return Stats{}, err
	}
	res.At = browserTime(res.T)
	return res.Stats, nil
}

// InboundAudio returns the inbound audio streams of identity ("" for all).
func (s Stats) InboundAudio(identity string) []InboundStats {
	var out []InboundStats
	for _, in := range s.Inbound {
		if in.Kind == "audio" && (identity == "" || in.Identity == identity) {
			out = append(out, in)
		}
	}
	return out
}
