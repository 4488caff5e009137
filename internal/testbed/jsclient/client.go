package jsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// IncomingPolicy is what a client does with an incoming call.
type IncomingPolicy string

const (
	// IncomingNotify leaves the call ringing and hands it to WaitIncoming.
	IncomingNotify IncomingPolicy = "notify"
	// IncomingAnswer answers at once (in the page, without a round trip to
	// the test) and hands the call to WaitIncoming.
	IncomingAnswer IncomingPolicy = "answer"
	// IncomingReject rejects at once and hands the call to WaitIncoming.
	IncomingReject IncomingPolicy = "reject"
	// IncomingIgnore leaves the call ringing until its lifetime ends, like
	// a client nobody is in front of, and hands it to WaitIgnored only.
	IncomingIgnore IncomingPolicy = "ignore"
)

// ClientOptions describe the Matrix account and device of a client.
type ClientOptions struct {
	HomeserverURL string `json:"baseUrl"`
	UserID        string `json:"userId"`
	AccessToken   string `json:"accessToken"`
	// DeviceID is required: js-sdk derives its VoIP party_id from it. Log
	// the user in (Login) to get a device of its own.
	DeviceID string `json:"deviceId"`
	// Crypto starts js-sdk's Rust crypto (in memory), for encrypted rooms.
	Crypto bool `json:"crypto"`
	// Incoming is the policy for incoming calls; default IncomingNotify.
	Incoming IncomingPolicy `json:"incoming,omitempty"`
	// RawAudio captures the microphone without echo cancellation, noise
	// suppression and automatic gain control (js-sdk's
	// MediaHandler.setAudioSettings), which would otherwise treat a steady
	// tone as noise. Always on in a browser with Options.FakeAudioCapture.
	RawAudio bool `json:"rawAudio,omitempty"`
}

// Client is one matrix-js-sdk MatrixClient, on a page of its own, synced
// (js-sdk's PREPARED state) when NewClient returns.
type Client struct {
	// UserID and DeviceID are the client's, as js-sdk reports them.
	UserID, DeviceID string
	// UserAgent is the page's user agent (Chromium's version).
	UserAgent string
	// SDKVersion is the bundled matrix-js-sdk's version.
	SDKVersion string

	b  *Browser
	id string

	mu       sync.Mutex
	calls    map[string]*Call
	incoming queue // reported incoming calls
	ignored  queue // incoming calls ignored by IncomingIgnore
	closed   chan struct{}
	closeErr error
}

// queue is a list of calls to hand out in order; the client's lock guards it.
type queue struct {
	calls  []*Call
	notify chan struct{} // closed and replaced when a call is added
}

func (q *queue) push(call *Call) {
	q.calls = append(q.calls, call)
	if q.notify != nil {
		close(q.notify)
	}
	q.notify = make(chan struct{})
}

// NewClient creates a page with a js-sdk client for the account in opts,
// starts it (and its crypto if asked) and waits for its first sync.
func (b *Browser) NewClient(ctx context.Context, opts ClientOptions) (*Client, error) {
	if opts.HomeserverURL == "" || opts.UserID == "" || opts.AccessToken == "" || opts.DeviceID == "" {
		return nil, errors.New("jsclient: a client needs a homeserver URL, user ID, access token and device ID")
	}
	if opts.Incoming == "" {
		opts.Incoming = IncomingNotify
	}
	if b.FakeAudioCapture != "" {
		opts.RawAudio = true
	}
	var res struct {
		Client     string `json:"client"`
		UserID     string `json:"userId"`
		DeviceID   string `json:"deviceId"`
		Crypto     bool   `json:"crypto"`
		SDKVersion string `json:"sdkVersion"`
		UserAgent  string `json:"userAgent"`
	}
	if err := b.call(ctx, "newClient", opts, &res); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, b.stderr.Tail())
	}
	if opts.Crypto && !res.Crypto {
		return nil, errors.New("jsclient: the client started without crypto")
	}
	c := &Client{
		UserID: res.UserID, DeviceID: res.DeviceID, UserAgent: res.UserAgent, SDKVersion: res.SDKVersion,
		b: b, id: res.Client,
		calls: make(map[string]*Call), closed: make(chan struct{}),
	}
	b.mu.Lock()
	b.clients[c.id] = c
	early := b.early[c.id]
	delete(b.early, c.id)
	b.mu.Unlock()
	for _, m := range early {
		c.handle(m)
	}
	return c, nil
}

// invoke calls window.harness[fn](...args) in the client's page.
func (c *Client) invoke(ctx context.Context, fn string, result any, args ...any) error {
	select {
	case <-c.closed:
		return fmt.Errorf("jsclient: %s: the client is closed", fn)
	default:
	}
	if args == nil {
		args = []any{}
	}
	err := c.b.call(ctx, "invoke", map[string]any{"client": c.id, "fn": fn, "args": args}, result)
	if err != nil {
		return fmt.Errorf("%s: %w", c.UserID, err)
	}
	return nil
}

// handle applies an event from the client's page.
func (c *Client) handle(m *message) {
	switch m.Event {
	case "client.crashed":
		c.markClosed(errors.New("the page crashed"))
		return
	case "sync":
		return
	}
	if m.Call == "" {
		return
	}
	call := c.call(m.Call)
	call.apply(m)
	switch m.Event {
	case "call.incoming":
		c.mu.Lock()
		c.incoming.push(call)
		c.mu.Unlock()
	case "call.ignored":
		c.mu.Lock()
		c.ignored.push(call)
		c.mu.Unlock()
	}
}

// call returns the call with the given ID, creating it when the first
// event about it arrives (events can overtake the reply to PlaceCall).
func (c *Client) call(id string) *Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	call := c.calls[id]
	if call == nil {
		call = &Call{c: c, id: id, reached: make(map[CallState]time.Time), changed: make(chan struct{})}
		c.calls[id] = call
	}
	return call
}

func (c *Client) markClosed(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
	default:
		c.closeErr = err
		close(c.closed)
	}
}

// closedErr is why the client is closed, or nil.
func (c *Client) closedErr() error {
	select {
	case <-c.closed:
		c.mu.Lock()
		defer c.mu.Unlock()
		return fmt.Errorf("jsclient: client %s closed: %w", c.UserID, c.closeErr)
	default:
		return nil
	}
}

// SetIncoming changes what the client does with incoming calls.
func (c *Client) SetIncoming(ctx context.Context, policy IncomingPolicy) error {
	return c.invoke(ctx, "setIncoming", nil, string(policy))
}

// SetIgnoreIncoming makes the client ignore incoming calls (IncomingIgnore)
// or report them again (IncomingNotify).
func (c *Client) SetIgnoreIncoming(ctx context.Context, ignore bool) error {
	if ignore {
		return c.SetIncoming(ctx, IncomingIgnore)
	}
	return c.SetIncoming(ctx, IncomingNotify)
}

// JoinRoom joins a room (by ID or alias) and waits until the client's sync
// has it as joined, so that a call placed next goes out right (encrypted in
// an encrypted room). It returns the room ID.
func (c *Client) JoinRoom(ctx context.Context, room string) (string, error) {
	var roomID string
	if err := c.invoke(ctx, "joinRoom", &roomID, room); err != nil {
		return "", err
	}
	return roomID, c.WaitRoom(ctx, roomID, "join")
}

// WaitInvite waits until inviter invites the client to a direct chat, and
// returns the room.
func (c *Client) WaitInvite(ctx context.Context, inviter string) (string, error) {
	var roomID string
	err := c.invoke(ctx, "waitInvite", &roomID, inviter)
	return roomID, err
}

// WaitRoom waits until the client's sync has the room with the client's
// user in the given membership ("join", "invite", "leave").
func (c *Client) WaitRoom(ctx context.Context, roomID, membership string) error {
	return c.invoke(ctx, "waitRoom", nil, roomID, membership)
}

// PlaceCall calls the room (with an invitee, for rooms of more than two
// members); video adds the camera. It returns once js-sdk has the local
// media and the peer connection; the call then goes through invite_sent,
// connecting and connected (see WaitState).
func (c *Client) PlaceCall(ctx context.Context, roomID, invitee string, video bool) (*Call, error) {
	return c.PlaceCallWith(ctx, roomID, PlaceOptions{Invitee: invitee, Video: video})
}

// PlaceOptions describe a call for PlaceCallWith.
type PlaceOptions struct {
	// Invitee is the m.call.invite's invitee (needed in rooms of more than
	// two members); "" leaves it out.
	Invitee string
	// Video adds the camera.
	Video bool
	// CallID replaces the call ID js-sdk makes up (the time in ms and 16
	// random alphanumerics), e.g. to decide a glare: the lesser ID wins.
	CallID string
	// AudioCodecs, if set, are the only audio formats the client offers
	// (MIME types such as "audio/G722"), from this call on: the browser's
	// setCodecPreferences, as an app restricting its codecs would.
	AudioCodecs []string
}

// PlaceCallWith places a call as PlaceCall does, with more options.
func (c *Client) PlaceCallWith(ctx context.Context, roomID string, opts PlaceOptions) (*Call, error) {
	var res struct {
		callInfo
		PlacedAt float64 `json:"placedAt"`
	}
	var inv, callID any
	if opts.Invitee != "" {
		inv = opts.Invitee
	}
	if opts.CallID != "" {
		callID = opts.CallID
	}
	if err := c.invoke(ctx, "placeCall", &res, roomID, inv, opts.Video, callID, opts.AudioCodecs); err != nil {
		return nil, err
	}
	call := c.call(res.Call)
	call.mu.Lock()
	call.placedAt = browserTime(res.PlacedAt)
	call.mu.Unlock()
	call.apply(&message{callInfo: res.callInfo})
	return call, nil
}

// pageTimeout is how long a wait in the page may take: until ctx's
// deadline (0, no limit, without one), so that the page does not keep
// waiting after the test has given up.
func pageTimeout(ctx context.Context) int64 {
	deadline, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	return max(time.Until(deadline).Milliseconds(), 1)
}

// WaitMember waits until the client's sync has user in the room with the
// given membership ("join", "invite", "leave", "ban").
func (c *Client) WaitMember(ctx context.Context, roomID, user, membership string) error {
	return c.invoke(ctx, "waitMember", nil, roomID, user, membership, pageTimeout(ctx))
}

// SendText sends a plain text message (m.text) into a room, encrypted if
// the room is, and returns its event ID.
func (c *Client) SendText(ctx context.Context, roomID, body string) (string, error) {
	var eventID string
	err := c.invoke(ctx, "sendText", &eventID, roomID, body)
	return eventID, err
}

// MessageMatch selects a message for WaitMessage; empty fields match
// anything.
type MessageMatch struct {
	Sender string `json:"sender,omitempty"`
	// Contains is a substring of the body.
	Contains string `json:"contains,omitempty"`
	// InReplyTo is the event the message replies to.
	InReplyTo string `json:"inReplyTo,omitempty"`
}

// Message is an m.room.message as the client has it (decrypted).
type Message struct {
	EventID   string `json:"eventId"`
	Sender    string `json:"sender"`
	Body      string `json:"body"`
	MsgType   string `json:"msgtype"`
	InReplyTo string `json:"inReplyTo"`
	// Encrypted says the message came encrypted.
	Encrypted bool `json:"encrypted"`
}

// WaitMessage waits until the room's live timeline (since the client
// started) has an m.room.message that matches, and returns the first one.
func (c *Client) WaitMessage(ctx context.Context, roomID string, match MessageMatch) (*Message, error) {
	var msg Message
	if err := c.invoke(ctx, "waitMessage", &msg, roomID, match, pageTimeout(ctx)); err != nil {
		return nil, err
	}
	return &msg, nil
}

// WaitIncoming returns the next incoming call not returned before (in the
// order they arrived), waiting for one if there is none.
func (c *Client) WaitIncoming(ctx context.Context) (*Call, error) {
	return c.next(ctx, &c.incoming, "an incoming call")
}

// WaitIgnored returns the next incoming call that the client ignored (under
// IncomingIgnore: js-sdk has it, ringing), waiting for one if there is none.
func (c *Client) WaitIgnored(ctx context.Context) (*Call, error) {
	return c.next(ctx, &c.ignored, "an ignored call")
}

func (c *Client) next(ctx context.Context, q *queue, what string) (*Call, error) {
	for {
		c.mu.Lock()
		if len(q.calls) > 0 {
			call := q.calls[0]
			q.calls = q.calls[1:]
			c.mu.Unlock()
			return call, nil
		}
		if q.notify == nil {
			q.notify = make(chan struct{})
		}
		notify := q.notify
		c.mu.Unlock()
		select {
		case <-notify:
		case <-c.closed:
			return nil, c.closedErr()
		case <-ctx.Done():
			return nil, fmt.Errorf("jsclient: %s waiting for %s: %w", c.UserID, what, ctx.Err())
		}
	}
}

// Calls lists the client's calls known to the harness.
func (c *Client) Calls() []*Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Call, 0, len(c.calls))
	for _, call := range c.calls {
		out = append(out, call)
	}
	return out
}

// CreateRoomOptions describe a room for CreateRoom.
type CreateRoomOptions struct {
	Name   string   `json:"name,omitempty"`
	Invite []string `json:"invite,omitempty"`
	// Encrypted creates the room with m.room.encryption (Megolm).
	Encrypted bool `json:"encrypted,omitempty"`
	// Direct marks the room as a direct chat, as Element does for 1:1s.
	Direct bool `json:"direct,omitempty"`
}

// CreateRoom creates a private room and waits until the client's sync has
// it as joined. It returns the room ID.
func (c *Client) CreateRoom(ctx context.Context, opts CreateRoomOptions) (string, error) {
	var roomID string
	if err := c.invoke(ctx, "createRoom", &roomID, opts); err != nil {
		return "", err
	}
	return roomID, c.WaitRoom(ctx, roomID, "join")
}

// Close stops the client and closes its page.
func (c *Client) Close() error {
	if err := c.closedErr(); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientCloseTimeout)
	defer cancel()
	// (It stays registered with the browser: late events find it closed.)
	err := c.b.call(ctx, "closeClient", map[string]any{"client": c.id}, nil)
	c.markClosed(errors.New("closed"))
	return err
}

// Login logs a user in with a password on a new device (plain
// /_matrix/client/v3/login) and returns the options for NewClient.
func Login(ctx context.Context, homeserverURL, user, password string) (ClientOptions, error) {
	body, err := json.Marshal(map[string]any{
		"type":                        "m.login.password",
		"identifier":                  map[string]string{"type": "m.id.user", "user": user},
		"password":                    password,
		"initial_device_display_name": "jsclient (matrix-js-sdk in Chromium)",
	})
	if err != nil {
		return ClientOptions{}, err
	}
	url := strings.TrimSuffix(homeserverURL, "/") + "/_matrix/client/v3/login"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return ClientOptions{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ClientOptions{}, fmt.Errorf("jsclient: logging in %s: %w", user, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return ClientOptions{}, fmt.Errorf("jsclient: logging in %s: %w", user, err)
	}
	if resp.StatusCode != http.StatusOK {
		return ClientOptions{}, fmt.Errorf("jsclient: logging in %s: HTTP %d: %s", user, resp.StatusCode, data)
	}
	var res struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
		DeviceID    string `json:"device_id"`
	}
	if err = json.Unmarshal(data, &res); err != nil {
		return ClientOptions{}, fmt.Errorf("jsclient: logging in %s: %w", user, err)
	}
	return ClientOptions{HomeserverURL: homeserverURL, UserID: res.UserID, AccessToken: res.AccessToken, DeviceID: res.DeviceID}, nil
}
