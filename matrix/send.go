package matrix

import (
	"context"
	"fmt"

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
func (c *Client) SendCallEvent(ctx context.Context, room id.RoomID, t callevent.Type, content callevent.Content) (id.EventID, error) {
	raw, err := callevent.Marshal(content)
	if err != nil {
		return "", err
	}
	resp, err := c.cli.SendMessageEvent(ctx, room, event.Type{Type: string(t), Class: event.MessageEventType}, raw)
	if err != nil {
		c.metrics.Errors.WithLabelValues("send").Inc()
		return "", fmt.Errorf("sending %s to %s: %w", t, room, err)
	}
	return resp.EventID, nil
}
