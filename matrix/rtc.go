package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/rtcevent"
)

// What the Element Call leg kind (bridge/rtc) needs of the homeserver:
// the room's call memberships, the bot's own, an OpenID token for the
// LiveKit JWT service, and Olm to-device messages for media keys.

var callMemberType = event.Type{Type: rtcevent.TypeCallMember, Class: event.StateEventType}

// CallMemberships reads the room's call membership state events (every
// device's, left ones included: their content is {}).
func (c *Client) CallMemberships(ctx context.Context, room id.RoomID) ([]rtcevent.StateEvent, error) {
	state, err := c.cli.State(ctx, room)
	if err != nil {
		return nil, fmt.Errorf("reading the state of %s: %w", room, err)
	}
	var out []rtcevent.StateEvent
	for key, evt := range state[callMemberType] {
		out = append(out, rtcevent.StateEvent{
			Sender: evt.Sender.String(), StateKey: key, OriginServerTS: evt.Timestamp,
			Content: rawContent(evt),
		})
	}
	return out, nil
}

// rawContent is an event's content as it came.
func rawContent(evt *event.Event) json.RawMessage {
	if len(evt.Content.VeryRaw) > 0 {
		return evt.Content.VeryRaw
	}
	b, err := json.Marshal(evt.Content.Raw)
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return b
}

// SetCallMembership sends the bot's device's membership of a room's call
// (content {} leaves it).
func (c *Client) SetCallMembership(ctx context.Context, room id.RoomID, content any) (id.EventID, error) {
	key := rtcevent.StateKey(c.UserID().String(), c.DeviceID().String())
	resp, err := c.cli.SendStateEvent(ctx, room, callMemberType, key, content)
	if err != nil {
		return "", fmt.Errorf("sending the call membership %s in %s: %w", key, room, err)
	}
	return resp.EventID, nil
}

// MaySendState says whether user may send state events of type t in
// room: its power level against the type's level (else state_default).
func (c *Client) MaySendState(ctx context.Context, room id.RoomID, user id.UserID, t string) (bool, error) {
	var pl event.PowerLevelsEventContent
	if err := c.cli.StateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
		if errors.Is(err, mautrix.MNotFound) {
			return true, nil
		}
		return false, fmt.Errorf("reading the power levels of %s: %w", room, err)
	}
	return pl.GetUserLevel(user) >= pl.GetEventLevel(event.Type{Type: t, Class: event.StateEventType}), nil
}

// OpenIDToken asks the homeserver for a token that proves the bot's user
// id to a third party (the LiveKit JWT service checks it).
func (c *Client) OpenIDToken(ctx context.Context) (*mautrix.RespOpenIDToken, error) {
	resp, err := c.cli.RequestOpenIDToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("requesting an OpenID token: %w", err)
	}
	return resp, nil
}

// SendRoomEvent sends a message event (encrypted in an encrypted room).
func (c *Client) SendRoomEvent(ctx context.Context, room id.RoomID, t string, content any) (id.EventID, error) {
	resp, err := c.cli.SendMessageEvent(ctx, room, event.Type{Type: t, Class: event.MessageEventType}, content)
	if err != nil {
		return "", fmt.Errorf("sending %s in %s: %w", t, room, err)
	}
	return resp.EventID, nil
}

// ErrNoCrypto is returned for what needs the bot's Olm device when it has
// none (matrix.encryption is off).
var ErrNoCrypto = errors.New("the bot has no encryption device (matrix.encryption is off)")

// CanEncrypt says whether the bot has an Olm device.
func (c *Client) CanEncrypt() bool { return c.crypto != nil }

// SendEncryptedToDevice sends content as an Olm-encrypted to-device event
// of type t to each of the devices (creating Olm sessions as needed). A
// device whose keys cannot be found is skipped and named in the error;
// the others still get the message.
func (c *Client) SendEncryptedToDevice(ctx context.Context, t string, content any, to map[id.UserID][]id.DeviceID) error {
	if c.crypto == nil {
		return ErrNoCrypto
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", t, err)
	}
	evtType := event.Type{Type: t, Class: event.ToDeviceEventType}
	var errs []error
	req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{}}
	for user, devices := range to {
		for _, dev := range slices.Compact(slices.Sorted(slices.Values(devices))) {
			if _, err := c.crypto.mach.GetOrFetchDevice(ctx, user, dev); err != nil {
				errs = append(errs, fmt.Errorf("device %s of %s: %w", dev, user, err))
				continue
			}
			if req.Messages[user] == nil {
				req.Messages[user] = map[id.DeviceID]*event.Content{}
			}
			req.Messages[user][dev] = &event.Content{VeryRaw: raw}
		}
	}
	if len(req.Messages) > 0 {
		enc, err := c.crypto.mach.EncryptToDevices(ctx, evtType, req)
		if err != nil {
			return fmt.Errorf("encrypting %s: %w", t, errors.Join(append(errs, err)...))
		}
		if _, err = c.cli.SendToDevice(ctx, event.ToDeviceEncrypted, enc); err != nil {
			return fmt.Errorf("sending %s: %w", t, errors.Join(append(errs, err)...))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("sending %s: %w", t, errors.Join(errs...))
	}
	return nil
}

// DelayedEvents says whether the homeserver has delayed events (MSC4140:
// /versions lists org.matrix.msc4140). Dendrite has not, and silently
// sends a "delayed" event at once, so nothing may be delayed without it.
func (c *Client) DelayedEvents(ctx context.Context) bool {
	return c.features.has(ctx, c.cli, "org.matrix.msc4140")
}

// StickyEvents says whether the homeserver has sticky events (MSC4354:
// /versions lists org.matrix.msc4354). Without them a "sticky" event is an
// ordinary one that no client reads as a membership.
func (c *Client) StickyEvents(ctx context.Context) bool {
	return c.features.has(ctx, c.cli, "org.matrix.msc4354")
}

// rtcMemberType is the sticky membership event (Element Call's newer
// shape).
var rtcMemberType = event.Type{Type: rtcevent.TypeRTCMember, Class: event.MessageEventType}

// SendStickyMembership sends the bot's sticky membership of a room's call
// (rtcevent.RTCLeave leaves it), sticky for duration (at most an hour).
//
// It goes in the clear, in encrypted rooms too, where js-sdk would
// encrypt it: js-sdk files a sticky event under its sticky key as it
// arrives, before it is decrypted, so an encrypted membership has no key
// there and Element Call never counts it (seen with Element Call 0.26.1:
// the bot's tile never came). It says no more than the state membership,
// which is never encrypted.
func (c *Client) SendStickyMembership(ctx context.Context, room id.RoomID, content any, duration time.Duration) (id.EventID, error) {
	duration = min(duration, rtcevent.MaxStickyDuration)
	resp, err := c.cli.SendMessageEvent(ctx, room, rtcMemberType, content, mautrix.ReqSendEvent{UnstableStickyDuration: duration, DontEncrypt: true})
	if err != nil {
		return "", fmt.Errorf("sending the sticky call membership in %s: %w", room, err)
	}
	return resp.EventID, nil
}

// ScheduleStickyLeave is ScheduleCallLeave for a sticky membership: the
// delayed event is the sticky leave.
func (c *Client) ScheduleStickyLeave(ctx context.Context, room id.RoomID, delay, duration time.Duration) (string, error) {
	leave := rtcevent.RTCLeave(c.UserID().String(), c.DeviceID().String())
	req := mautrix.ReqSendEvent{UnstableDelay: delay, UnstableStickyDuration: min(duration, rtcevent.MaxStickyDuration), DontEncrypt: true}
	resp, err := c.cli.SendMessageEvent(ctx, room, rtcMemberType, leave, req)
	var herr mautrix.HTTPError
	if errors.As(err, &herr) && herr.RespError != nil && herr.RespError.ErrCode == "M_MAX_DELAY_EXCEEDED" {
		if most, ok := herr.RespError.ExtraData["org.matrix.msc4140.max_delay"].(float64); ok && most > 0 {
			req.UnstableDelay = time.Duration(most) * time.Millisecond
			resp, err = c.cli.SendMessageEvent(ctx, room, rtcMemberType, leave, req)
		}
	}
	if err != nil {
		return "", fmt.Errorf("scheduling the bot's sticky leave of the call in %s: %w", room, err)
	}
	if resp.UnstableDelayID == "" {
		return "", fmt.Errorf("scheduling the bot's sticky leave of the call in %s: the homeserver sent the event at once", room)
	}
	return string(resp.UnstableDelayID), nil
}

// ScheduleCallLeave has the homeserver leave the room's call for the bot
// (its membership {}) after delay unless the delay is restarted first: a
// dead man's switch for a bot that dies. It returns the delayed event's
// id. A delay beyond the homeserver's most is retried with that most.
func (c *Client) ScheduleCallLeave(ctx context.Context, room id.RoomID, delay time.Duration) (string, error) {
	key := rtcevent.StateKey(c.UserID().String(), c.DeviceID().String())
	resp, err := c.cli.SendStateEvent(ctx, room, callMemberType, key, struct{}{}, mautrix.ReqSendEvent{UnstableDelay: delay})
	var herr mautrix.HTTPError
	if errors.As(err, &herr) && herr.RespError != nil && herr.RespError.ErrCode == "M_MAX_DELAY_EXCEEDED" {
		if most, ok := herr.RespError.ExtraData["org.matrix.msc4140.max_delay"].(float64); ok && most > 0 {
			resp, err = c.cli.SendStateEvent(ctx, room, callMemberType, key, struct{}{},
				mautrix.ReqSendEvent{UnstableDelay: time.Duration(most) * time.Millisecond})
		}
	}
	if err != nil {
		return "", fmt.Errorf("scheduling the bot's leave of the call in %s: %w", room, err)
	}
	if resp.UnstableDelayID == "" {
		return "", fmt.Errorf("scheduling the bot's leave of the call in %s: the homeserver sent the event at once", room)
	}
	return string(resp.UnstableDelayID), nil
}

// UpdateDelayedEvent restarts, sends or cancels a delayed event.
func (c *Client) UpdateDelayedEvent(ctx context.Context, delayID string, action event.DelayAction) error {
	if _, err := c.cli.UpdateDelayedEvent(ctx, &mautrix.ReqUpdateDelayedEvent{DelayID: id.DelayID(delayID), Action: action}); err != nil {
		return fmt.Errorf("%s the delayed event %s: %w", action, delayID, err)
	}
	return nil
}

// maxWellKnown bounds what is read of a .well-known document.
const maxWellKnown = 64 << 10

// WellKnownFoci reads the MatrixRTC foci the homeserver's operator
// advertises (org.matrix.msc4143.rtc_foci in /.well-known/matrix/client,
// where Element X looks): from https://<the bot's server name>, else from
// the homeserver's own URL (where many deployments serve it too). None is
// not an error.
func (c *Client) WellKnownFoci(ctx context.Context) ([]rtcevent.Focus, error) {
	var errs []error
	for _, base := range []string{"https://" + c.UserID().Homeserver(), strings.TrimRight(c.cfg.Homeserver.URL, "/")} {
		foci, err := c.wellKnownFoci(ctx, base)
		if err == nil {
			return foci, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func (c *Client) wellKnownFoci(ctx context.Context, base string) ([]rtcevent.Focus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.well-known/matrix/client", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.cli.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading %s's .well-known: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading %s's .well-known: %s", base, resp.Status)
	}
	var doc struct {
		Foci []rtcevent.Focus `json:"org.matrix.msc4143.rtc_foci"`
	}
	if err = json.NewDecoder(io.LimitReader(resp.Body, maxWellKnown)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("reading %s's .well-known: %w", base, err)
	}
	return doc.Foci, nil
}
