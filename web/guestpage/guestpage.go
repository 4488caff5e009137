// Package guestpage is the browser guest's call page, embedded in the
// binary: plain HTML, CSS and JavaScript (no build step, nothing from a
// CDN), which speaks the guest call protocol (v1) with the bot over a
// WebSocket.
//
// # Mounting
//
// A guest opens <public base>/call/<token>. The bot mounts three things
// under the page's directory (here "/call/"):
//
//	mux.HandleFunc("GET /call/{token}", page)      // checks the token, then Page or ErrorPage
//	mux.HandleFunc("GET /call/{token}/ws", socket) // the protocol's WebSocket
//	guestpage.MountAssets(mux.Handle, "/call/")    // GET /call/guest.css, GET /call/guest.js
//
// The page loads its assets by URLs relative to its own ("guest.js"), so
// the whole tree may sit under any prefix. An asset's name has a dot, which
// a token (base64url) never has, and ServeMux prefers the literal pattern
// "/call/guest.js" to "/call/{token}": assets and tokens cannot collide,
// and an asset path is never "<token>/ws". (Assets under "/call/assets/…"
// would conflict with "/call/{token}/ws" in ServeMux: both match
// "/call/assets/ws".) A path with a trailing slash ("/call/<token>/") is
// not the page: its relative URLs would point below it.
//
// # Responses
//
// Page writes index.html with Cache-Control: no-store (the page is tiny,
// and always the one that matches the running bot's protocol), a strict
// Content-Security-Policy (scripts, styles and connections from the page's
// own origin only, WebSockets to it included; no inline script or style;
// Trusted Types required, so that no DOM sink takes a string; no framing;
// no base or form targets), Referrer-Policy: no-referrer (the token is in
// the URL) and a Permissions-Policy that allows the microphone and camera
// to the page's origin only. Assets are served with Cache-Control:
// no-cache and a strong ETag (their content's hash): a browser revalidates
// them at every visit (a 304 when unchanged), so a new bot never meets a
// cached old script. ErrorPage renders a self-contained error page (its
// style inline, allowed by hash) with html/template.
//
// # The page
//
// On load the page opens the WebSocket (the page's URL + "/ws", wss: on
// an https: page) and waits for hello; then it shows a name field, the
// microphone (and, if hello says video, camera) choice with a preview,
// and Join. Join captures the chosen devices, makes an RTCPeerConnection
// (hello's optional iceServers), waits up to 2 s for ICE gathering, sends
// call (a new UUID sessionID; callType 1 if hello allows video, else 2)
// and plays a ringback tone (425 Hz, 1 s on, 4 s off, made locally with
// WebAudio) until accept. Later local candidates are trickled with
// iceCandidates. Mute and Camera off disable the track and send update;
// the other side's update is shown. Hang up sends hangUp and closes the
// socket. reject, hangUp, error, a failed connection or a closed socket
// end the call with the reason shown and a "Call again" button (a new
// socket, and a new call at once). A quality line shows the round-trip
// time, packet loss and bit rates from getStats every 2 s.
//
// The page's state is the body's data-state attribute: connecting (the
// socket), ready (hello received: the setup form), starting (capturing,
// gathering), ringing (call sent), answered (accept received), connected
// (the peer connection is up), ended. The CSS shows each state's panel
// from it; data-end-reason holds why the call ended (declined, busy,
// no_answer, hangup, failed, shutdown, error, local: the guest hung up,
// lost: the socket closed, unreachable: it never opened), and
// data-remote-audio-muted / data-remote-video-muted the other side's last
// update. Tests (internal/testbed/guestclient) read these attributes and
// the ids of index.html.
//
// If the socket closes before hello, the page asks for its own URL again
// (HEAD): a refused link (404, 410, 429) reloads the page, so that the
// bot's error page is shown.
package guestpage

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"
)

// The page's files. Each is also embedded alone, so that nothing reads
// the tree at run time (and nothing can fail to).
var (
	//go:embed static
	static embed.FS
	//go:embed static/index.html
	indexHTML []byte
	//go:embed static/guest.css
	guestCSS []byte
	//go:embed static/guest.js
	guestJS []byte
)

// FS holds the page's files: index.html, guest.css and guest.js.
var FS fs.FS = func() fs.FS {
	// fs.Sub fails only for an invalid directory name; "static" is valid.
	sub, _ := fs.Sub(static, "static")
	return sub
}()

// PageCSP is the Content-Security-Policy of the call page.
const PageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'"

// permissionsPolicy lets the page's own origin use the microphone and the
// camera, and nothing else of what a call page never needs.
const permissionsPolicy = "camera=(self), microphone=(self), display-capture=(), geolocation=(), payment=(), usb=()"

// asset is one file the page loads, ready to serve.
type asset struct {
	name        string
	data        []byte
	contentType string
	etag        string
}

func newAsset(name, contentType string, data []byte) *asset {
	sum := sha256.Sum256(data)
	return &asset{name: name, data: data, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// assets are the files index.html loads, by name.
var assets = map[string]*asset{
	"guest.css": newAsset("guest.css", "text/css; charset=utf-8", guestCSS),
	"guest.js":  newAsset("guest.js", "text/javascript; charset=utf-8", guestJS),
}

// AssetNames are the names of the files the page loads, relative to the
// page's directory (guest.css, guest.js).
func AssetNames() []string { return slices.Sorted(maps.Keys(assets)) }

// MountAssets mounts Assets at "GET <dir><name>" for every asset, with
// handle: an *http.ServeMux's Handle, or the bot's web.Server.Handle. dir
// is the directory of the page's path, with both slashes ("/call/").
func MountAssets(handle func(pattern string, h http.Handler), dir string) {
	h := Assets()
	for _, name := range AssetNames() {
		handle("GET "+dir+name, h)
	}
}

// securityHeaders are the headers of every response of this package.
func securityHeaders(h http.Header, csp string) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// Page writes the call page (GET or HEAD). The caller has checked the
// token; the page itself holds nothing of it.
func Page(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		ErrorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "This address only serves a page.")
		return
	}
	h := w.Header()
	securityHeaders(h, PageCSP)
	h.Set("Permissions-Policy", permissionsPolicy)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(indexHTML))
}

// Assets serves the page's files by the last element of the request's
// path (guest.css, guest.js), whatever the path before it: anything else
// is a 404 error page.
func Assets() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := assets[path.Base(r.URL.Path)]
		if a == nil || strings.HasSuffix(r.URL.Path, "/") {
			ErrorPage(w, http.StatusNotFound, "Not found", "There is nothing at this address.")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			ErrorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "This address only serves a file.")
			return
		}
		h := w.Header()
		securityHeaders(h, "default-src 'none'; frame-ancestors 'none'")
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		// ServeContent answers If-None-Match with 304 from the ETag.
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.data))
	})
}

// errorCSS is the error page's style, inline (the page needs no other
// request, wherever it is served) and allowed by its hash.
const errorCSS = `
:root { color-scheme: light dark; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: #eef1f5; color: #1c2430; }
main { max-width: 28rem; margin: 1rem; padding: 2rem 1.5rem; border-radius: 1rem; background: #fff; box-shadow: 0 2px 12px rgb(0 0 0 / 8%); text-align: center; }
h1 { font-size: 1.35rem; margin: 0 0 .75rem; }
p { margin: 0; line-height: 1.5; color: #4a5566; }
.code { margin-top: 1.25rem; font-size: .8rem; color: #8a94a6; }
@media (prefers-color-scheme: dark) {
  body { background: #14181f; color: #e6e9ef; }
  main { background: #1e242d; box-shadow: none; }
  p { color: #b5bdca; }
}
`

// errorCSP allows the error page nothing but its own inline style (and
// its empty icon, there so that the browser asks for no favicon).
var errorCSP = func() string {
	sum := sha256.Sum256([]byte(errorCSS))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; img-src data:; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

var errorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex, nofollow">
<title>{{.Title}}</title>
<link rel="icon" href="data:,">
<style>{{.CSS}}</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
<p class="code">Error {{.Status}}</p>
</main>
</body>
</html>
`))

// ErrorPage writes a small HTML error page with status: title as its
// heading and message below it, both escaped (they are text, never HTML).
// It holds nothing else: no stack trace, nothing of the request.
func ErrorPage(w http.ResponseWriter, status int, title, message string) {
	h := w.Header()
	securityHeaders(h, errorCSP)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	var buf bytes.Buffer
	// The template and its data are fixed apart from two strings: it
	// cannot fail but by a bug, and then a bare status is all there is.
	if err := errorTemplate.Execute(&buf, struct {
		Title, Message string
		Status         int
		CSS            template.CSS
	}{title, message, status, template.CSS(errorCSS)}); err != nil {
		h.Del("Content-Type")
		w.WriteHeader(status)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
