package bridge

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/guest"
	"github.com/voipbot/voipbot/bridge/guestlink"
	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/bridge/whip"
	"github.com/voipbot/voipbot/web/guestpage"
)

// guestHost is the registry as the host of the guest leg kind.
type guestHost struct{ reg *registry }

var _ guest.Host = guestHost{}

// Ringing implements guest.Host: a guest's call rings the members of the
// link's room (first to answer), or joins the room's Element Call where
// one is going on (the room is the bridge's own room); a link made for
// trying it out (echo) is answered by the bot's own source (calls.source).
func (h guestHost) Ringing(l *guest.Leg) leg.Events {
	link := l.Link()
	room := id.RoomID(link.Room)
	target := Target{Kind: leg.KindMatrix, Room: room}
	if link.Echo {
		target = Target{Kind: leg.Kind(h.reg.cfg.Source)}
	}
	return h.reg.ringRoomFor(l, room, target)
}

// ICEServers implements guest.Host: the servers Matrix calls use.
func (h guestHost) ICEServers() []webrtc.ICEServer {
	if h.reg.calls == nil {
		return nil
	}
	return h.reg.calls.ICEServers()
}

// guestWeb serves call links on the bot's HTTP listener: the call page
// and each guest's WebSocket, for links that resolve.
type guestWeb struct {
	b      *Bot
	links  *guestlink.Manager
	limit  *guestlink.Limiter
	guests *guest.Manager
	whip   *whip.Manager
}

// linkError writes the page for a link that does not resolve: never a
// stack trace, never which room it was for.
func linkError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, guestlink.ErrRateLimited):
		guestpage.ErrorPage(w, http.StatusTooManyRequests, "Too many tries", "Wait a minute, then open the link again.")
	case errors.Is(err, guestlink.ErrExpired):
		guestpage.ErrorPage(w, http.StatusGone, "This call link has expired", "Ask whoever sent it for a new one.")
	case errors.Is(err, guestlink.ErrRevoked):
		guestpage.ErrorPage(w, http.StatusGone, "This call link was revoked", "Ask whoever sent it for a new one.")
	case errors.Is(err, guestlink.ErrMalformed), errors.Is(err, guestlink.ErrNotFound):
		guestpage.ErrorPage(w, http.StatusNotFound, "This call link does not exist", "Check that the whole link was copied.")
	default:
		guestpage.ErrorPage(w, http.StatusInternalServerError, "Something went wrong", "Try again in a moment.")
	}
}

// remoteAddr is the guest's address: the connection's, or the one a
// reverse proxy on this host (loopback) forwarded: the last address of
// X-Forwarded-For, the one that proxy added (those before it are the
// client's to write).
func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		if fwd := r.Header.Values("X-Forwarded-For"); len(fwd) > 0 {
			last := fwd[len(fwd)-1]
			if i := strings.LastIndex(last, ","); i >= 0 {
				last = last[i+1:]
			}
			if ip := net.ParseIP(strings.TrimSpace(last)); ip != nil {
				return ip.String()
			}
		}
	}
	return host
}

// resolve checks the request's link, after its address's rate (every
// request counts, bad tokens too, so guessing is slow; a join counts for
// its link as well), and writes the error page if either fails.
func (g *guestWeb) resolve(w http.ResponseWriter, r *http.Request, join bool) (guestlink.Link, bool) {
	token := r.PathValue("token")
	id := ""
	if _, err := guestlink.ParseToken(token); err == nil && join {
		id = guestlink.IDOf(token)
	}
	if err := g.limit.Allow(id, remoteAddr(r)); err != nil {
		linkError(w, err)
		return guestlink.Link{}, false
	}
	link, err := g.links.Resolve(r.Context(), guestlink.KindCall, token)
	if err != nil {
		known := errors.Is(err, guestlink.ErrNotFound) || errors.Is(err, guestlink.ErrMalformed) || errors.Is(err, guestlink.ErrExpired) || errors.Is(err, guestlink.ErrRevoked)
		if !known {
			g.b.log.Error().Err(err).Msg("Resolving a call link")
		}
		linkError(w, err)
		return guestlink.Link{}, false
	}
	return link, true
}

func (g *guestWeb) page(w http.ResponseWriter, r *http.Request) {
	if _, ok := g.resolve(w, r, false); ok {
		guestpage.Page(w, r)
	}
}

func (g *guestWeb) socket(w http.ResponseWriter, r *http.Request) {
	link, ok := g.resolve(w, r, true)
	if !ok {
		return
	}
	conn, err := websocket.Accept(w, r, nil) // same origin only
	if err != nil {
		return // Accept wrote the answer
	}
	if err := g.links.CountJoin(r.Context(), link.ID); err != nil {
		g.b.log.Warn().Err(err).Str("link", link.ID).Msg("Counting a join of a call link")
	}
	g.guests.Serve(r.Context(), conn, guest.Link{
		ID: link.ID, Room: link.Room, Video: link.Video, Echo: link.Echo,
		Title: g.b.callTitle(r.Context(), id.RoomID(link.Room)),
	}, remoteAddr(r))
}

// callTitle is what a guest's page calls the call: the room's name where
// it has one (what anyone with the link may see), else a plain name.
func (b *Bot) callTitle(ctx context.Context, room id.RoomID) string {
	if name := b.mx.RoomName(ctx, room); name != "" {
		return name
	}
	return "Matrix call"
}

// Mount puts the guests' pages on the bot's HTTP server with handle (its
// Handle method): nothing without guests.public_url.
func (b *Bot) Mount(handle func(pattern string, h http.Handler)) {
	if b.guestWeb == nil {
		return
	}
	handle("GET /call/{token}", http.HandlerFunc(b.guestWeb.page))
	handle("GET /call/{token}/ws", http.HandlerFunc(b.guestWeb.socket))
	guestpage.MountAssets(handle, "/call/")
	b.guestWeb.whip.Mount(handle, b.guestWeb.whipAuth)
}
