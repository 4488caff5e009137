package qbclient

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// CallType is the SDK's call type (callType in every signal).
type CallType int

// The SDK's call types (QB.webrtc.CallType).
const (
	CallVideo CallType = 1
	CallAudio CallType = 2
)

// Direction is a session's direction, and a stanza's ("in", "out").
type Direction string

// The directions.
const (
	Outgoing Direction = "outgoing"
	Incoming Direction = "incoming"
	In       Direction = "in"
	Out      Direction = "out"
)

// State is a milestone of a session, reached once, at the browser's time of
// the event that marks it.
type State string

// The milestones, in the order a call reaches them.
const (
	// StatePlaced: the test asked to call (before the SDK session and the
	// local media). Outgoing only.
	StatePlaced State = "placed"
	// StateCalling: the SDK's session.call() was made, the local media in
	// hand. Outgoing only.
	StateCalling State = "calling"
	// StateRinging: the call reached the SDK's onCallListener. Incoming
	// only.
	StateRinging State = "ringing"
	// StateAccepted: outgoing, the callee's accept reached
	// onAcceptCallListener; incoming, this side called accept() (after
	// getUserMedia).
	StateAccepted State = "accepted"
	// StateConnected: the SDK reported a peer's connection state connected
	// or completed (ICE, onSessionConnectionStateChangedListener).
	StateConnected State = "connected"
	// StateClosed: the SDK closed the session (onSessionCloseListener).
	StateClosed State = "closed"
)

// EventKind names an SDK listener (or this side's own action).
type EventKind string

// The events.
const (
	EventCall            EventKind = "call"            // onCallListener (incoming)
	EventAccept          EventKind = "accept"          // onAcceptCallListener: the peer accepted
	EventReject          EventKind = "reject"          // onRejectCallListener: the peer rejected
	EventStop            EventKind = "stop"            // onStopCallListener: the peer hung up
	EventUpdate          EventKind = "update"          // onUpdateCallListener
	EventNotAnswer       EventKind = "notAnswer"       // onUserNotAnswerListener: no answer in answerTimeInterval
	EventRemoteStream    EventKind = "remoteStream"    // onRemoteStreamListener
	EventConnectionState EventKind = "connectionState" // onSessionConnectionStateChangedListener
	EventClose           EventKind = "close"           // onSessionCloseListener
	EventReconnect       EventKind = "reconnect"       // onReconnectListener
	// EventLocal is this side's own action (Action: placed, call, accept,
	// reject, stop).
	EventLocal EventKind = "local"
)

// Event is one SDK listener call (or local action) of a session, or of the
// client for InvalidEvents.
type Event struct {
	Kind EventKind
	// At is the browser's time of the event.
	At time.Time
	// UserID is the peer the listener named (0 when it names none).
	UserID uint64
	// UserInfo is the userInfo the listener got (for a local action, the
	// one sent). The SDK's parsing makes every value a string, or a map
	// for an element with several children.
	UserInfo map[string]any
	// Extension is an update's whole extension as the SDK parsed it (its
	// listener gets only UserInfo, which the SDK's own update never sends).
	Extension map[string]any
	// ConnectionState is a connectionState event's state: connecting,
	// connected, completed, failed, disconnected, closed.
	ConnectionState string
	// Action is a local event's: placed, call, accept, reject, stop.
	Action string
	// AudioTracks and VideoTracks count a remote stream's tracks.
	AudioTracks, VideoTracks int
	// ReconnectState is a reconnect event's (reconnecting, reconnected,
	// failed).
	ReconnectState string
	// Session is the session id of an invalid event.
	Session string
}

// Timeline is when a session reached its milestones (zero if not).
type Timeline struct {
	Placed, Calling, Ringing, Accepted, Connected, Closed time.Time
}

// Setup is placed (outgoing) or ringing (incoming) to connected, or 0.
func (t Timeline) Setup() time.Duration {
	start := t.Placed
	if start.IsZero() {
		start = t.Ringing
	}
	if start.IsZero() || t.Connected.IsZero() {
		return 0
	}
	return t.Connected.Sub(start)
}

// Session is one SDK WebRTC session (a call), outgoing or incoming, as the
// page's events report it.
type Session struct {
	c         *Client
	id        string
	direction Direction
	callType  CallType
	initiator uint64
	opponents []uint64

	mu       sync.Mutex
	reached  map[State]time.Time
	events   []Event
	callInfo map[string]any
	changed  chan struct{} // closed and replaced on every event
}

// ID is the SDK's session id (sessionID in every signal).
func (s *Session) ID() string { return s.id }

// Client is the client the session belongs to.
func (s *Session) Client() *Client { return s.c }

// Direction is Outgoing or Incoming.
func (s *Session) Direction() Direction { return s.direction }

// CallType is the call's type.
func (s *Session) CallType() CallType { return s.callType }

// InitiatorID is the caller's user id (callerID).
func (s *Session) InitiatorID() uint64 { return s.initiator }

// OpponentIDs are the callees' user ids (opponentsIDs).
func (s *Session) OpponentIDs() []uint64 { return slices.Clone(s.opponents) }

// CallInfo is the userInfo of the incoming call as onCallListener got it
// (nil for an outgoing session).
func (s *Session) CallInfo() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callInfo
}

// apply records an event of the session's.
func (s *Session) apply(kind EventKind, m *message, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := Event{
		Kind: kind, At: at, UserID: m.UserID, UserInfo: decodeMap(m.UserInfo), Extension: decodeMap(m.Extension),
		ConnectionState: m.ConnectionState, Action: m.Action,
		AudioTracks: m.AudioTracks, VideoTracks: m.VideoTracks, ReconnectState: m.ReconnectState,
	}
	s.events = append(s.events, e)
	mark := func(st State) {
		if _, ok := s.reached[st]; !ok {
			s.reached[st] = at
		}
	}
	switch kind {
	case EventCall:
		s.callInfo = e.UserInfo
		mark(StateRinging)
	case EventLocal:
		switch e.Action {
		case "placed":
			mark(StatePlaced)
		case "call":
			mark(StateCalling)
		case "accept":
			mark(StateAccepted)
		}
	case EventAccept:
		mark(StateAccepted)
	case EventConnectionState:
		if e.ConnectionState == "connected" || e.ConnectionState == "completed" {
			mark(StateConnected)
		}
	case EventClose:
		mark(StateClosed)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait runs cond (under the session's lock) on every event until it is
// true or fails.
func (s *Session) wait(ctx context.Context, what string, cond func() (bool, error)) error {
	for {
		s.mu.Lock()
		ok, err := cond()
		changed := s.changed
		s.mu.Unlock()
		if ok || err != nil {
			return err
		}
		select {
		case <-changed:
		case <-s.c.gone:
			return fmt.Errorf("qbclient: %s session %s waiting for %s: %w", s.c.name, s.id, what, s.c.goneError())
		case <-ctx.Done():
			return fmt.Errorf("qbclient: %s session %s waiting for %s (events: %s): %w", s.c.name, s.id, what, s.eventList(), ctx.Err())
		}
	}
}

// eventList names the session's events so far, for error messages.
func (s *Session) eventList() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eventListLocked()
}

func (s *Session) eventListLocked() string {
	var out []byte
	for i, e := range s.events {
		if i > 0 {
			out = append(out, ' ')
		}
		out = append(out, e.Kind...)
		if e.Action != "" {
			out = append(out, ':')
			out = append(out, e.Action...)
		}
		if e.ConnectionState != "" {
			out = append(out, ':')
			out = append(out, e.ConnectionState...)
		}
	}
	return string(out)
}

// WaitState waits until the session has reached state (now or before) and
// returns the browser's time when it did. It fails at once when the
// session closed without reaching it.
func (s *Session) WaitState(ctx context.Context, state State) (time.Time, error) {
	var at time.Time
	err := s.wait(ctx, "state "+string(state), func() (bool, error) {
		if t, ok := s.reached[state]; ok {
			at = t
			return true, nil
		}
		if _, closed := s.reached[StateClosed]; closed {
			return false, fmt.Errorf("qbclient: %s session %s closed without reaching %s (events: %s)", s.c.name, s.id, state, s.eventListLocked())
		}
		return false, nil
	})
	return at, err
}

// Reached reports whether the session has reached state, and when.
func (s *Session) Reached(state State) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.reached[state]
	return at, ok
}

// Times is when the session reached each milestone so far.
func (s *Session) Times() Timeline {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Timeline{
		Placed: s.reached[StatePlaced], Calling: s.reached[StateCalling], Ringing: s.reached[StateRinging],
		Accepted: s.reached[StateAccepted], Connected: s.reached[StateConnected], Closed: s.reached[StateClosed],
	}
}

// Events are the session's events so far, in order.
func (s *Session) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// WaitEvent returns the session's first event of kind (now or before),
// waiting for one. It fails when the session closed without one (unless
// kind is EventClose).
func (s *Session) WaitEvent(ctx context.Context, kind EventKind) (Event, error) {
	var found Event
	err := s.wait(ctx, "a "+string(kind)+" event", func() (bool, error) {
		closed := false
		for _, e := range s.events {
			if e.Kind == kind {
				found = e
				return true, nil
			}
			closed = closed || e.Kind == EventClose
		}
		if closed {
			return false, fmt.Errorf("qbclient: %s session %s closed without a %s event (events: %s)", s.c.name, s.id, kind, s.eventListLocked())
		}
		return false, nil
	})
	return found, err
}

// Updates are the updates received so far (EventUpdate events).
func (s *Session) Updates() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Event
	for _, e := range s.events {
		if e.Kind == EventUpdate {
			out = append(out, e)
		}
	}
	return out
}

// WaitUpdate returns the first update received (now or before) that match
// accepts (nil: any), waiting for one. match runs without the session's
// lock: it may call the session's methods.
func (s *Session) WaitUpdate(ctx context.Context, match func(Event) bool) (Event, error) {
	next := 0
	for {
		s.mu.Lock()
		fresh := slices.Clone(s.events[next:])
		next = len(s.events)
		changed := s.changed
		s.mu.Unlock()
		for _, e := range fresh {
			if e.Kind == EventUpdate && (match == nil || match(e)) {
				return e, nil
			}
		}
		select {
		case <-changed:
		case <-s.c.gone:
			return Event{}, fmt.Errorf("qbclient: %s session %s waiting for an update: %w", s.c.name, s.id, s.c.goneError())
		case <-ctx.Done():
			return Event{}, fmt.Errorf("qbclient: %s session %s waiting for an update (events: %s): %w", s.c.name, s.id, s.eventList(), ctx.Err())
		}
	}
}

// Accept answers an incoming call as an app does: the local media (audio,
// and the camera for a video call if Options.Video), then the SDK's
// accept with userInfo. Wait for StateConnected.
func (s *Session) Accept(ctx context.Context, userInfo map[string]string) error {
	return s.c.invoke(ctx, "accept", nil, s.id, orEmpty(userInfo))
}

// Reject rejects an incoming call (the SDK's reject: a reject signal to
// the caller; the session closes).
func (s *Session) Reject(ctx context.Context, userInfo map[string]string) error {
	return s.c.invoke(ctx, "reject", nil, s.id, orEmpty(userInfo))
}

// Hangup ends the call (the SDK's stop: a hangUp signal to every peer; the
// session closes).
func (s *Session) Hangup(ctx context.Context, userInfo map[string]string) error {
	return s.c.invoke(ctx, "hangup", nil, s.id, orEmpty(userInfo))
}

// Update sends an update signal with the extension's fields at the top
// level of extraParams (the SDK's session.update), to every peer.
func (s *Session) Update(ctx context.Context, extension map[string]any) error {
	if extension == nil {
		extension = map[string]any{}
	}
	return s.c.invoke(ctx, "update", nil, s.id, extension, 0)
}

// Mute mutes the local audio (audio true) or video (false) with the SDK's
// session.mute: the track is disabled, the peer gets silence or black, and
// no signal is sent.
func (s *Session) Mute(ctx context.Context, audio bool) error {
	return s.c.invoke(ctx, "mute", nil, s.id, kindName(audio), true)
}

// Unmute undoes Mute (the SDK's session.unmute).
func (s *Session) Unmute(ctx context.Context, audio bool) error {
	return s.c.invoke(ctx, "mute", nil, s.id, kindName(audio), false)
}

func kindName(audio bool) string {
	if audio {
		return "audio"
	}
	return "video"
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
