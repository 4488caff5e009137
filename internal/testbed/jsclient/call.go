package jsclient

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// CallState is a js-sdk call state (CallState in matrix-js-sdk's call.ts).
type CallState string

// The js-sdk call states.
const (
	StateFledgling      CallState = "fledgling"
	StateInviteSent     CallState = "invite_sent"
	StateWaitLocalMedia CallState = "wait_local_media"
	StateCreateOffer    CallState = "create_offer"
	StateCreateAnswer   CallState = "create_answer"
	StateConnecting     CallState = "connecting"
	StateConnected      CallState = "connected"
	StateRinging        CallState = "ringing"
	StateEnded          CallState = "ended"
)

// CallError is an "error" event of a js-sdk call.
type CallError struct {
	Code    string
	Message string
	At      time.Time
}

// Call is a js-sdk call, inbound or outbound, as the harness has seen it.
// Its state follows the page's events; the waits are driven by them.
type Call struct {
	c  *Client
	id string

	mu           sync.Mutex
	info         callInfo
	state        CallState
	reached      map[CallState]time.Time // first time each state was reached
	placedAt     time.Time
	errs         []CallError
	changed      chan struct{} // closed and replaced on every change
	localOnHold  bool
	remoteOnHold bool
}

// ID is the call_id.
func (call *Call) ID() string { return call.id }

// Client is the client the call belongs to.
func (call *Call) Client() *Client { return call.c }

// apply records an event, or the static part (room, direction, type,
// opponent) of a reply's description: a reply can overtake the events
// before it, so only events move the state.
func (call *Call) apply(m *message) {
	call.mu.Lock()
	defer call.mu.Unlock()
	info := m.callInfo
	if m.Event == "" {
		if call.info.Call == "" {
			call.info = callInfo{Call: info.Call, Room: info.Room, Direction: info.Direction, Type: info.Type, Opponent: info.Opponent}
		} else if call.info.Opponent == "" {
			call.info.Opponent = info.Opponent
		}
		return
	}
	if info.Opponent == "" {
		info.Opponent = call.info.Opponent
	}
	call.info = info
	call.localOnHold, call.remoteOnHold = info.LocalOnHold, info.RemoteOnHold
	if info.State != "" {
		s := CallState(info.State)
		call.state = s
		if _, ok := call.reached[s]; !ok {
			call.reached[s] = browserTime(m.T)
		}
	}
	switch m.Event {
	case "call.error":
		call.errs = append(call.errs, CallError{Code: m.Code, Message: m.Message, At: browserTime(m.T)})
	case "call.local_hold":
		call.localOnHold = m.OnHold
	case "call.remote_hold":
		call.remoteOnHold = m.OnHold
	}
	close(call.changed)
	call.changed = make(chan struct{})
}

// State is the call's current state.
func (call *Call) State() CallState {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.state
}

// HangupReason is js-sdk's hangup reason (user_hangup, invite_timeout,
// ice_failed, user_busy, answered_elsewhere, …) once the call has ended.
func (call *Call) HangupReason() string {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.info.HangupReason
}

// HangupParty is "local" or "remote" once the call has ended.
func (call *Call) HangupParty() string {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.info.HangupParty
}

// RoomID is the call's room.
func (call *Call) RoomID() string {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.info.Room
}

// Direction is "inbound" or "outbound".
func (call *Call) Direction() string {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.info.Direction
}

// Type is "voice" or "video" (for an inbound call, what the offer has).
func (call *Call) Type() string {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.info.Type
}

// Opponent is the other party's user ID, when js-sdk knows it.
func (call *Call) Opponent() string {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.info.Opponent
}

// LocalOnHold reports whether the other party has put this side on hold.
func (call *Call) LocalOnHold() bool {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.localOnHold
}

// WaitRemoteMuted waits until the other party's user-media feed is muted
// (or not) as asked, by its stream metadata.
func (call *Call) WaitRemoteMuted(ctx context.Context, audio, video bool) error {
	return call.wait(ctx, fmt.Sprintf("remote muted audio %v video %v", audio, video), func() (bool, error) {
		if call.info.RemoteAudioMuted == audio && call.info.RemoteVideoMuted == video {
			return true, nil
		}
		if call.state == StateEnded {
			return false, fmt.Errorf("jsclient: call %s ended (%s)", call.id, call.info.HangupReason)
		}
		return false, nil
	})
}

// RemoteOnHold reports whether this side has put the other party on hold.
func (call *Call) RemoteOnHold() bool {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.remoteOnHold
}

// Errors are the call's error events so far.
func (call *Call) Errors() []CallError {
	call.mu.Lock()
	defer call.mu.Unlock()
	return append([]CallError(nil), call.errs...)
}

// PlacedAt is the browser's time just before js-sdk created an outbound
// call (zero for inbound calls).
func (call *Call) PlacedAt() time.Time {
	call.mu.Lock()
	defer call.mu.Unlock()
	return call.placedAt
}

// StateTime is the browser's time when the call first reached state.
func (call *Call) StateTime(state CallState) (time.Time, bool) {
	call.mu.Lock()
	defer call.mu.Unlock()
	at, ok := call.reached[state]
	return at, ok
}

// WaitState waits until the call has reached state (now or before) and
// returns the browser's time when it first did. It fails at once if the
// call ended without reaching it.
func (call *Call) WaitState(ctx context.Context, state CallState) (time.Time, error) {
	var at time.Time
	err := call.wait(ctx, fmt.Sprintf("state %s", state), func() (bool, error) {
		if t, ok := call.reached[state]; ok {
			at = t
			return true, nil
		}
		if call.state == StateEnded {
			return false, fmt.Errorf("jsclient: call %s ended (%s, by %s party%s) without reaching %s",
				call.id, call.info.HangupReason, call.info.HangupParty, call.errorsLocked(), state)
		}
		return false, nil
	})
	return at, err
}

// WaitLocalHold waits until the other party has put this side on hold (or
// taken it off hold).
func (call *Call) WaitLocalHold(ctx context.Context, onHold bool) error {
	return call.wait(ctx, fmt.Sprintf("local hold %v", onHold), func() (bool, error) {
		if call.localOnHold == onHold {
			return true, nil
		}
		if call.state == StateEnded {
			return false, fmt.Errorf("jsclient: call %s ended (%s)", call.id, call.info.HangupReason)
		}
		return false, nil
	})
}

// wait runs cond (under the call's lock) on every change until it is true
// or fails.
func (call *Call) wait(ctx context.Context, what string, cond func() (bool, error)) error {
	for {
		call.mu.Lock()
		ok, err := cond()
		changed := call.changed
		call.mu.Unlock()
		if ok || err != nil {
			return err
		}
		select {
		case <-changed:
		case <-call.c.closed:
			return call.c.closedErr()
		case <-ctx.Done():
			return fmt.Errorf("jsclient: call %s of %s waiting for %s (now %s): %w", call.id, call.c.UserID, what, call.State(), ctx.Err())
		}
	}
}

func (call *Call) errorsLocked() string {
	if len(call.errs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; errors:")
	for _, e := range call.errs {
		fmt.Fprintf(&b, " %s: %s;", e.Code, e.Message)
	}
	return b.String()
}

// do invokes a harness function on the call and applies the description
// it returns.
func (call *Call) do(ctx context.Context, fn string, args ...any) error {
	var info callInfo
	if err := call.c.invoke(ctx, fn, &info, append([]any{call.id}, args...)...); err != nil {
		return err
	}
	if info.Call == call.id {
		call.apply(&message{callInfo: info})
	}
	return nil
}

// Answer answers an incoming call with the media its offer has (audio, and
// video if offered). It returns once js-sdk has started to answer; wait for
// StateConnected.
func (call *Call) Answer(ctx context.Context) error { return call.do(ctx, "answer") }

// AnswerWith answers with only the given media (audio must be true).
func (call *Call) AnswerWith(ctx context.Context, audio, video bool) error {
	return call.do(ctx, "answer", audio, video)
}

// Reject rejects a ringing incoming call (m.call.reject).
func (call *Call) Reject(ctx context.Context) error { return call.do(ctx, "reject") }

// Hangup hangs up with a reason (m.call.hangup; "" is user_hangup).
func (call *Call) Hangup(ctx context.Context, reason string) error {
	return call.do(ctx, "hangup", reason)
}

// SetMicrophoneMuted mutes or unmutes the local microphone (js-sdk sends
// m.call.sdp_stream_metadata_changed).
func (call *Call) SetMicrophoneMuted(ctx context.Context, muted bool) error {
	var ok bool
	return call.c.invoke(ctx, "setMicrophoneMuted", &ok, call.id, muted)
}

// SetRemoteOnHold puts the other party on hold or takes it off hold
// (a renegotiation with m.call.negotiate).
func (call *Call) SetRemoteOnHold(ctx context.Context, onHold bool) error {
	return call.do(ctx, "setRemoteOnHold", onHold)
}

// MediaStats are the WebRTC statistics of one kind of media, summed over
// the call's RTP streams of that kind.
type MediaStats struct {
	InboundBytes       uint64  `json:"inboundBytes"`
	InboundPackets     uint64  `json:"inboundPackets"`
	InboundPacketsLost int64   `json:"inboundPacketsLost"`
	OutboundBytes      uint64  `json:"outboundBytes"`
	OutboundPackets    uint64  `json:"outboundPackets"`
	InboundCodec       string  `json:"inboundCodec"`  // e.g. audio/opus, video/VP8
	OutboundCodec      string  `json:"outboundCodec"` // e.g. audio/opus, video/VP8
	Jitter             float64 `json:"jitter"`        // inbound, seconds
	// Audio only (inbound): the level now (0..1, the highest over streams),
	// and the energy and samples received so far.
	AudioLevel           float64 `json:"audioLevel"`
	TotalAudioEnergy     float64 `json:"totalAudioEnergy"`
	TotalSamplesReceived uint64  `json:"totalSamplesReceived"`
	// Video only (inbound).
	FramesDecoded uint64 `json:"framesDecoded"`
	FrameWidth    int    `json:"frameWidth"`
	FrameHeight   int    `json:"frameHeight"`
}

// Stats are a call's WebRTC statistics (RTCPeerConnection.getStats()).
type Stats struct {
	Audio, Video MediaStats
	// AudioTracks is each inbound audio stream on its own, for finding
	// which of several the analyser hears.
	AudioTracks []InboundTrack `json:"audioTracks"`
	// ICEState and ConnectionState are the peer connection's.
	ICEState        string `json:"iceState"`
	ConnectionState string `json:"connectionState"`
	// At is the browser's time of the report.
	At time.Time `json:"-"`
}

// InboundTrack is one inbound-rtp audio stream's statistics.
type InboundTrack struct {
	TrackID          string  `json:"trackId"`
	Mid              string  `json:"mid"`
	SSRC             uint32  `json:"ssrc"`
	Packets          int     `json:"packets"`
	AudioLevel       float64 `json:"audioLevel"`
	TotalAudioEnergy float64 `json:"totalAudioEnergy"`
}

// Stats reads the call's peer connection statistics (zero before js-sdk
// has created the peer connection).
func (call *Call) Stats(ctx context.Context) (*Stats, error) {
	var res struct {
		Stats
		T float64 `json:"t"`
	}
	if err := call.c.invoke(ctx, "stats", &res, call.id); err != nil {
		return nil, err
	}
	res.At = browserTime(res.T)
	return &res.Stats, nil
}

// WaitStats polls the call's statistics (there is no event for them) until
// cond accepts them, and returns the accepted ones; or the last ones with
// an error when ctx ends.
func (call *Call) WaitStats(ctx context.Context, cond func(*Stats) bool) (*Stats, error) {
	var last *Stats
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		s, err := call.Stats(ctx)
		if err != nil {
			return last, err
		}
		last = s
		if cond(s) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("jsclient: call %s of %s: statistics not reached: %w", call.id, call.c.UserID, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// WaitMedia waits until the call receives media from now on: audio bytes
// grow and the remote audio is heard (a level above zero: Chromium's fake
// microphone beeps), audio goes out, and with video, video bytes grow and
// frames decode. It returns the first and the last statistics.
func (call *Call) WaitMedia(ctx context.Context, video bool) (first, last *Stats, err error) {
	if first, err = call.Stats(ctx); err != nil {
		return nil, nil, err
	}
	heard := false
	last, err = call.WaitStats(ctx, func(s *Stats) bool {
		heard = heard || s.Audio.AudioLevel > 0
		ok := heard && s.Audio.InboundBytes > first.Audio.InboundBytes+2000 && s.Audio.OutboundBytes > first.Audio.OutboundBytes
		if video {
			ok = ok && s.Video.InboundBytes > first.Video.InboundBytes+20000 && s.Video.FramesDecoded > first.Video.FramesDecoded+10
		}
		return ok
	})
	return first, last, err
}
