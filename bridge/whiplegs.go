package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/guestlink"
	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/bridge/whip"
	"github.com/voipbot/voipbot/matrix"
)

// whipHost is the registry as the host of the WHIP and WHEP leg kinds.
type whipHost struct{ reg *registry }

var _ whip.Host = whipHost{}

// Admit implements whip.Host: a slot of calls.max_calls, and for WHEP a
// call to pull (the room's Element Call, with someone in it, that the bot
// is not in already: it has one place per room's call).
func (h whipHost) Admit(l leg.ID, link whip.Link) error {
	reg := h.reg
	room := id.RoomID(link.Room)
	if link.Egress {
		if reg.rtc.In(room) != nil {
			return fmt.Errorf("%w: the bot is in this room's call already (one place per call)", whip.ErrNoCall)
		}
		ctx, cancel := context.WithTimeout(reg.ctx, 10*time.Second)
		defer cancel()
		if !reg.callGoingOn(ctx, room) {
			return fmt.Errorf("%w: nobody is in this room's Element Call now", whip.ErrNoCall)
		}
	}
	if busy := reg.adm.admit(l, "", ""); busy != "" {
		return fmt.Errorf("%w: %s", whip.ErrBusy, busy)
	}
	return nil
}

// Release implements whip.Host.
func (h whipHost) Release(l leg.ID) { h.reg.adm.release(l) }

// Ringing implements whip.Host: a publisher rings the token's room (or
// joins its Element Call, as a guest does); a player joins the room's
// Element Call, and hears everyone there (mixed, or the active speaker).
func (h whipHost) Ringing(l *whip.Leg) leg.Events {
	room := id.RoomID(l.Link().Room)
	target := Target{Kind: leg.KindMatrix, Room: room}
	if l.Link().Egress {
		target = Target{Kind: leg.KindRTC, Room: room}
	}
	return h.reg.ringRoomFor(l, room, target)
}

// ICEServers implements whip.Host.
func (h whipHost) ICEServers() []webrtc.ICEServer { return guestHost(h).ICEServers() }

// ringRoomFor starts the bridge of a leg from another network that rings
// room itself (a guest, a WHIP client): it joins as the origin, takes a
// call slot (calls.max_calls only: the call that rings the room counts
// there), and rings target, or is answered at once by an own source.
func (reg *registry) ringRoomFor(l leg.Leg, room id.RoomID, target Target) leg.Events {
	b := reg.newBridge(room, target)
	b.ringsOwnRoom = true
	b.post(func() {
		b.join(l, true)
		if busy := reg.adm.admit(l.ID(), "", ""); busy != "" {
			l.Hangup(leg.Busy, busy)
			return
		}
		if target.Own() {
			b.addOwn(target.Kind)
			l.Answer()
			return
		}
		b.ring(target)
	})
	return b.events
}

// whipAuth checks a WHIP or WHEP request's token, after the address's
// rate (every request counts, bad tokens too; a session counts for its
// token as well).
func (g *guestWeb) whipAuth(r *http.Request, token string, egress bool) (whip.Link, error) {
	kind := guestlink.KindWHIP
	if egress {
		kind = guestlink.KindWHEP
	}
	lid := ""
	if _, err := guestlink.ParseToken(token); err == nil {
		lid = guestlink.IDOf(token)
	}
	if err := g.limit.Allow(lid, remoteAddr(r)); err != nil {
		return whip.Link{}, fmt.Errorf("%w: wait a minute", whip.ErrTooMany)
	}
	link, err := g.links.Resolve(r.Context(), kind, token)
	switch {
	case err == nil:
	case token == "":
		return whip.Link{}, fmt.Errorf("%w: none given (Authorization: Bearer <token>, or /%s/<token>)", whip.ErrUnauthorized, kind)
	case errors.Is(err, guestlink.ErrExpired):
		return whip.Link{}, fmt.Errorf("%w: the token has expired", whip.ErrUnauthorized)
	case errors.Is(err, guestlink.ErrRevoked):
		return whip.Link{}, fmt.Errorf("%w: the token was revoked", whip.ErrUnauthorized)
	case errors.Is(err, guestlink.ErrNotFound), errors.Is(err, guestlink.ErrMalformed):
		return whip.Link{}, fmt.Errorf("%w: the token opens no %s here", whip.ErrUnauthorized, strings.ToUpper(string(kind)))
	default:
		return whip.Link{}, err
	}
	if err := g.links.CountJoin(r.Context(), link.ID); err != nil {
		g.b.log.Warn().Err(err).Str("link", link.ID).Msg("Counting a use of a WHIP token")
	}
	return whip.Link{ID: link.ID, Room: link.Room, Video: link.Video}, nil
}

// whipToken answers `!voip whip [ttl] [video]` and `!voip whep [ttl]
// [video]` with a bearer token and the endpoint it opens.
func (b *Bot) whipToken(kind guestlink.Kind) func(context.Context, *matrix.Event, []string) (string, error) {
	return func(ctx context.Context, evt *matrix.Event, args []string) (string, error) {
		p := b.cfg.Commands.Prefix
		name := string(kind)
		if b.guestWeb == nil {
			return "", userErrorf("%s is off: the bot has no guests.public_url (the address clients reach it at)", strings.ToUpper(name))
		}
		if may, err := b.mx.MayChangeState(ctx, evt.RoomID, evt.Sender); err != nil {
			return "", err
		} else if !may {
			return "", userErrorf("only members who may change this room's settings (power level at least the room's state_default) may make tokens that let media into or out of its calls")
		}
		ttl := b.cfg.Guests.LinkTTL
		video := false
		for _, a := range args {
			if strings.EqualFold(a, "video") {
				video = true
				continue
			}
			d, err := guestlink.ParseTTL(a)
			if err != nil {
				return "", userErrorf("%s. Usage: `%s %s [ttl] [video]`, like `%s %s 7d video` (ttl in m, h or d; the default is %s)", err, p, name, p, name, guestlink.FormatTTL(b.linkTTL()))
			}
			ttl = d
		}
		token, link, err := b.guestWeb.links.Create(ctx, guestlink.Spec{
			Kind: kind, Room: string(evt.RoomID), CreatedBy: string(evt.Sender), TTL: ttl, Video: video,
		})
		if err != nil {
			if errors.Is(err, guestlink.ErrBadTTL) {
				return "", userErrorf("%s", err)
			}
			return "", err
		}
		endpoint := strings.TrimRight(b.cfg.Guests.PublicURL, "/") + "/" + name
		media := "audio"
		if video {
			media = "audio and video"
		}
		what := "What it sends rings this room (or joins its Element Call if one is going on); OBS: Settings → Stream → Service WHIP."
		if kind == guestlink.KindWHEP {
			what = "It plays this room's Element Call while someone is in it (everyone mixed, or the active speaker)."
		}
		return fmt.Sprintf("%s token (%s, until %s):\n\n- Server: %s\n- Bearer token: `%s`\n- or in one URL: %s/%s\n\n%s Anyone with the token can use it. `%s revoke %s` ends it.",
			strings.ToUpper(name), media, link.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"), endpoint, token, endpoint, token, what, p, link.ID), nil
	}
}
