package matrix

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/callevent"
)

// SendNotice sends a notice rendered from Markdown to a room, as a reply to
// replyTo if it is not nil. It is encrypted if the room is.
func (c *Client) SendNotice(ctx context.Context, room id.RoomID, markdown string, replyTo *Event) (id.EventID, error) {
	content := format.RenderMarkdown(markdown, true, false)
	content.MsgType = event.MsgNotice
	if replyTo != nil {
		content.RelatesTo = &event.RelatesTo{InReplyTo: &event.InReplyTo{EventID: replyTo.ID}}
		content.Mentions = &event.Mentions{UserIDs: []id.UserID{replyTo.Sender}}
	}
	resp, err := c.cli.SendMessageEvent(ctx, room, event.EventMessage, &content)
	if err != nil {
		c.metrics.Errors.WithLabelValues("send").Inc()
		return "", fmt.Errorf("sending notice to %s: %w", room, err)
	}
	return resp.EventID, nil
}

// SendCallEvent sends a call event to a room, encrypted if the room is.
// txnID makes retries of one event idempotent: the homeserver answers a
// repeated transaction ID with the event it already has, so an event whose
// first try timed out after it was stored is not sent twice ("" picks a new
// one).
func (c *Client) SendCallEvent(ctx context.Context, room id.RoomID, t callevent.Type, content callevent.Content, txnID string) (id.EventID, error) {
	raw, err := callevent.Marshal(content)
	if err != nil {
		return "", err
	}
	resp, err := c.cli.SendMessageEvent(ctx, room, event.Type{Type: string(t), Class: event.MessageEventType}, raw,
		mautrix.ReqSendEvent{TransactionID: txnID})
	if err != nil {
		c.metrics.Errors.WithLabelValues("send").Inc()
		return "", fmt.Errorf("sending %s to %s: %w", t, room, err)
	}
	return resp.EventID, nil
}

// NewTxnID makes a transaction ID for SendCallEvent.
func NewTxnID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "voipbot_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// RetryAfter says whether a failed send may succeed if tried again, and
// after how long at the least: a rate limit says how long (retry_after_ms,
// or the Retry-After header); an unreachable or failing homeserver (no
// answer, 5xx) may recover. Any other refusal (4xx: too large, forbidden,
// not in the room, bad JSON) is permanent: the same event would be refused
// again.
func RetryAfter(err error) (retry bool, after time.Duration) {
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) {
		// Not an answer of the homeserver's: encryption failing, the
		// context ending. Trying again does not help.
		return false, 0
	}
	status := 0
	if httpErr.Response != nil {
		status = httpErr.Response.StatusCode
	}
	if re := httpErr.RespError; re != nil {
		if re.StatusCode != 0 {
			status = re.StatusCode
		}
		if re.ErrCode == mautrix.MLimitExceeded.ErrCode || status == http.StatusTooManyRequests {
			return true, rateLimitWait(re, httpErr.Response)
		}
	}
	switch {
	case status == 0:
		return true, 0 // no answer at all: a network error
	case status == http.StatusTooManyRequests:
		return true, rateLimitWait(nil, httpErr.Response)
	case status >= 500:
		return true, 0
	}
	return false, 0
}

// maxRateLimitWait bounds a homeserver's retry_after_ms: a call event that
// waits longer than this is too late to matter anyway.
const maxRateLimitWait = 30 * time.Second

func rateLimitWait(re *mautrix.RespError, resp *http.Response) time.Duration {
	var after time.Duration
	if re != nil {
		if ms, ok := re.ExtraData["retry_after_ms"].(float64); ok && ms > 0 {
			after = time.Duration(min(ms, float64(maxRateLimitWait/time.Millisecond))) * time.Millisecond
		}
	}
	if after == 0 && resp != nil {
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			after = time.Duration(secs) * time.Second
		}
	}
	return min(after, maxRateLimitWait)
}
