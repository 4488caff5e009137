package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/voipbot/voipbot/bridge/guestlink"
	"github.com/voipbot/voipbot/matrix"
)

// link answers `!voip link [ttl] [video] [echo]` with a call link to this
// room's call: whoever opens it rings the room (or, with echo, is
// answered by the bot's own source, calls.source, for trying it out).
func (b *Bot) link(ctx context.Context, evt *matrix.Event, args []string) (string, error) {
	p := b.cfg.Commands.Prefix
	if b.guestWeb == nil {
		return "", userErrorf("call links are off: the bot has no guests.public_url (the address guests' browsers reach it at)")
	}
	if may, err := b.mx.MayChangeState(ctx, evt.RoomID, evt.Sender); err != nil {
		return "", err
	} else if !may {
		return "", userErrorf("only members who may change this room's settings (power level at least the room's state_default) may make links that let people without an account into its calls")
	}
	ttl := b.cfg.Guests.LinkTTL
	var video, echo bool
	for _, a := range args {
		switch strings.ToLower(a) {
		case "video":
			video = true
		case "echo":
			echo = true
		default:
			d, err := guestlink.ParseTTL(a)
			if err != nil {
				return "", userErrorf("%s. Usage: `%s link [ttl] [video] [echo]`, like `%s link 2h video` (ttl in m, h or d; the default is %s)", err, p, p, guestlink.FormatTTL(b.linkTTL()))
			}
			ttl = d
		}
	}
	token, link, err := b.guestWeb.links.Create(ctx, guestlink.Spec{
		Kind: guestlink.KindCall, Room: string(evt.RoomID), CreatedBy: string(evt.Sender), TTL: ttl, Video: video, Echo: echo,
	})
	if err != nil {
		if errors.Is(err, guestlink.ErrBadTTL) {
			return "", userErrorf("%s", err)
		}
		return "", err
	}
	what := "rings this room"
	if echo {
		what = fmt.Sprintf("is answered by the bot's own source (%s), for trying it out", b.cfg.Calls.Source)
	}
	media := "audio"
	if video {
		media = "audio and video"
	}
	return fmt.Sprintf("Call link (%s, until %s): %s\n\nWhoever opens it %s. Anyone with the link can use it: share it only with whom you mean to. `%s revoke %s` ends it.",
		media, link.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"), b.linkURL(token), what, p, link.ID), nil
}

func (b *Bot) linkTTL() time.Duration {
	if b.cfg.Guests.LinkTTL != 0 {
		return b.cfg.Guests.LinkTTL
	}
	return guestlink.DefaultTTL
}

// linkURL is the address of a link's call page.
func (b *Bot) linkURL(token string) string {
	return strings.TrimRight(b.cfg.Guests.PublicURL, "/") + "/call/" + token
}

// links lists this room's live call links (never their tokens).
func (b *Bot) links(ctx context.Context, evt *matrix.Event, _ []string) (string, error) {
	if b.guestWeb == nil {
		return "", userErrorf("call links are off: the bot has no guests.public_url")
	}
	links, err := b.guestWeb.links.List(ctx, string(evt.RoomID))
	if err != nil {
		return "", err
	}
	if len(links) == 0 {
		return fmt.Sprintf("This room has no live call links or WHIP/WHEP tokens. `%s link` makes one.", b.cfg.Commands.Prefix), nil
	}
	var out strings.Builder
	out.WriteString("Live call links and tokens of this room:\n")
	for _, l := range links {
		kind := "audio"
		if l.Video {
			kind = "video"
		}
		if l.Echo {
			kind += ", echo"
		}
		if l.Kind != guestlink.KindCall {
			kind = strings.ToUpper(string(l.Kind)) + " token, " + kind
		}
		fmt.Fprintf(&out, "- `%s` (%s) by %s, until %s, %d joins\n", l.ID, kind, l.CreatedBy, l.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"), l.Joins)
	}
	fmt.Fprintf(&out, "\n`%s revoke <id>` ends one.", b.cfg.Commands.Prefix)
	return out.String(), nil
}

// revoke ends a call link of this room, and hangs up the guests who came
// through it.
func (b *Bot) revoke(ctx context.Context, evt *matrix.Event, args []string) (string, error) {
	p := b.cfg.Commands.Prefix
	if b.guestWeb == nil {
		return "", userErrorf("call links are off: the bot has no guests.public_url")
	}
	if len(args) != 1 {
		return "", userErrorf("Usage: `%s revoke <id>` (the id `%s links` shows)", p, p)
	}
	if may, err := b.mx.MayChangeState(ctx, evt.RoomID, evt.Sender); err != nil {
		return "", err
	} else if !may {
		return "", userErrorf("only members who may change this room's settings may revoke its call links")
	}
	if err := b.guestWeb.links.Revoke(ctx, string(evt.RoomID), args[0]); err != nil {
		if errors.Is(err, guestlink.ErrNotFound) {
			return "", userErrorf("this room has no call link `%s` (`%s links` lists them)", args[0], p)
		}
		return "", err
	}
	n := b.guestWeb.guests.EndLink(args[0]) + b.guestWeb.whip.EndLink(args[0])
	return fmt.Sprintf("`%s` is revoked (%d calls through it hung up).", args[0], n), nil
}
