package guestpage_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/web/guestpage"
)

// token is a token of the bot's shape (43 base64url characters).
const token = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde"

// newServer mounts the package as the bot does (see the package doc).
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /call/{token}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("token") != token {
			guestpage.ErrorPage(w, http.StatusNotFound, "This call link does not exist", "Ask for a new link.")
			return
		}
		guestpage.Page(w, r)
	})
	mux.HandleFunc("GET /call/{token}/ws", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot) // only its routing matters here
	})
	guestpage.MountAssets(mux.Handle, "/call/")
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(data)
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	data, err := fs.ReadFile(guestpage.FS, name)
	require.NoError(t, err)
	return string(data)
}

func TestEmbeddedFiles(t *testing.T) {
	var names []string
	require.NoError(t, fs.WalkDir(guestpage.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	}))
	require.ElementsMatch(t, []string{"index.html", "guest.css", "guest.js"}, names)
	require.Equal(t, []string{"guest.css", "guest.js"}, guestpage.AssetNames())
}

func TestPageHeaders(t *testing.T) {
	srv := newServer(t)
	res, body := get(t, srv.URL+"/call/"+token, nil)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"))
	require.Equal(t, "no-store", res.Header.Get("Cache-Control"))
	require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
	require.Equal(t, "no-referrer", res.Header.Get("Referrer-Policy"), "the token is in the URL")
	require.Contains(t, res.Header.Get("Permissions-Policy"), "microphone=(self)")
	require.Equal(t, readFile(t, "index.html"), body)

	csp := res.Header.Get("Content-Security-Policy")
	require.Equal(t, guestpage.PageCSP, csp)
	directives := map[string]string{}
	for d := range strings.SplitSeq(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	for name, want := range map[string]string{
		"default-src": "'none'", "script-src": "'self'", "style-src": "'self'", "connect-src": "'self'",
		"frame-ancestors": "'none'", "base-uri": "'none'", "form-action": "'none'",
		"require-trusted-types-for": "'script'",
	} {
		require.Equalf(t, want, directives[name], "CSP %s", name)
	}
	require.NotContains(t, csp, "unsafe")

	// HEAD, as the page asks for itself when its socket is refused.
	req, err := http.NewRequest(http.MethodHead, srv.URL+"/call/"+token, nil)
	require.NoError(t, err)
	head, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	head.Body.Close()
	require.Equal(t, http.StatusOK, head.StatusCode)
	require.Equal(t, guestpage.PageCSP, head.Header.Get("Content-Security-Policy"))
}

// The page loads exactly the mounted assets, by relative URLs, and has no
// inline script, style or handler (the CSP would block them).
func TestPageLoadsOnlyItsAssets(t *testing.T) {
	html := readFile(t, "index.html")
	var refs []string
	for _, m := range regexp.MustCompile(`<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"`).FindAllStringSubmatch(html, -1) {
		if m[1] != "data:," { // the empty favicon, so that none is fetched
			refs = append(refs, m[1])
		}
	}
	slices.Sort(refs)
	require.Equal(t, guestpage.AssetNames(), refs)
	require.Equal(t, 1, strings.Count(html, "<script"), "one script, loaded from its file")
	require.NotRegexp(t, `<script(?:\s[^>]*)?>\s*[^<\s]`, html, "no inline script")
	require.NotContains(t, html, "<style")
	require.NotRegexp(t, `\sstyle=`, html, "no style attribute")
	require.NotRegexp(t, `\son[a-z]+=`, html, "no inline event handler")
}

func TestAssets(t *testing.T) {
	srv := newServer(t)
	for name, contentType := range map[string]string{
		"guest.js":  "text/javascript; charset=utf-8",
		"guest.css": "text/css; charset=utf-8",
	} {
		t.Run(name, func(t *testing.T) {
			res, body := get(t, srv.URL+"/call/"+name, nil)
			require.Equal(t, http.StatusOK, res.StatusCode)
			require.Equal(t, contentType, res.Header.Get("Content-Type"))
			require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
			require.Equal(t, "no-cache", res.Header.Get("Cache-Control"))
			require.Equal(t, readFile(t, name), body)
			etag := res.Header.Get("ETag")
			require.Regexp(t, `^"[0-9a-f]{32}"$`, etag)

			again, body := get(t, srv.URL+"/call/"+name, http.Header{"If-None-Match": {etag}})
			require.Equal(t, http.StatusNotModified, again.StatusCode, "revalidated, not sent again")
			require.Empty(t, body)
		})
	}
	// Whatever is not an asset is a 404 error page; the socket's path is
	// still routed to the socket.
	for _, p := range []string{"/call/nothing.js", "/call/index.html"} {
		res, body := get(t, srv.URL+p, nil)
		require.Equalf(t, http.StatusNotFound, res.StatusCode, "%s", p)
		require.Contains(t, body, "<h1>")
	}
	// Assets alone, wherever it is mounted: by the path's last element.
	for p, want := range map[string]int{"/any/where/guest.css": http.StatusOK, "/x/unknown.js": http.StatusNotFound, "/x/guest.css/": http.StatusNotFound} {
		rec := httptest.NewRecorder()
		guestpage.Assets().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		require.Equalf(t, want, rec.Code, "%s", p)
	}
	rec := httptest.NewRecorder()
	guestpage.Assets().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/call/guest.js", nil))
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)

	res, _ := get(t, srv.URL+"/call/"+token+"/ws", nil)
	require.Equal(t, http.StatusTeapot, res.StatusCode)
	res, _ = get(t, srv.URL+"/call/guest.js/ws", nil)
	require.Equal(t, http.StatusTeapot, res.StatusCode, "an asset name is a token to the socket route, which refuses it")
}

func TestErrorPageEscapes(t *testing.T) {
	rec := httptest.NewRecorder()
	guestpage.ErrorPage(rec, http.StatusGone, `Expired <script>alert("t")</script>`, `Ask "them" & <b>retry</b>`)
	res := rec.Result()
	body := rec.Body.String()
	require.Equal(t, http.StatusGone, res.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"))
	require.Equal(t, "no-store", res.Header.Get("Cache-Control"))
	require.NotContains(t, body, "<script")
	require.NotContains(t, body, "<b>")
	require.Contains(t, body, "<title>Expired &lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt;</title>")
	require.Contains(t, body, "<h1>Expired &lt;script&gt;")
	require.Contains(t, body, "<p>Ask &#34;them&#34; &amp; &lt;b&gt;retry&lt;/b&gt;</p>")
	require.Contains(t, body, "Error 410")

	// Its only style is inline, allowed by its hash and nothing else.
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(body)
	require.NotNil(t, m)
	sum := sha256.Sum256([]byte(m[1]))
	csp := res.Header.Get("Content-Security-Policy")
	require.Contains(t, csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	require.Contains(t, csp, "default-src 'none'")
	require.NotContains(t, csp, "script-src")
	require.NotContains(t, csp, "unsafe")
}

// Bot → guest and guest → bot message types of the protocol (v1).
var (
	botTypes   = []string{"hello", "accept", "iceCandidates", "update", "reject", "hangUp", "error"}
	guestTypes = []string{"call", "iceCandidates", "update", "hangUp"}
)

// A static check of guest.js against the protocol: it sends only the
// guest's message types (all of them) through its one send function,
// handles every type of the bot's and nothing else, and says something
// for every reason of reject and hangUp.
func TestScriptSpeaksOnlyTheProtocol(t *testing.T) {
	js := readFile(t, "guest.js")

	var sent []string
	for _, m := range regexp.MustCompile(`\bsend\(\s*"([^"]*)"`).FindAllStringSubmatch(js, -1) {
		sent = append(sent, m[1])
	}
	sent = slices.Compact(slices.Sorted(slices.Values(sent)))
	require.ElementsMatch(t, guestTypes, sent)
	// Every send names its type by a literal, but the method itself and
	// its one write to the socket.
	require.Equal(t, 1, strings.Count(js, "    send(type, fields) {"))
	require.Equal(t, 1, strings.Count(js, "this.ws.send("))
	require.Equal(t, len(regexp.MustCompile(`\bsend\(`).FindAllString(js, -1)),
		len(regexp.MustCompile(`\bsend\(\s*"`).FindAllString(js, -1))+2, "a send without a literal type")

	// The cases of the message switch (onMessage, up to the next method).
	start := strings.Index(js, "    onMessage(data) {")
	require.Positive(t, start)
	end := strings.Index(js[start:], "\n    }\n")
	require.Positive(t, end)
	var handled []string
	for _, m := range regexp.MustCompile(`case "([^"]*)":`).FindAllStringSubmatch(js[start:start+end], -1) {
		handled = append(handled, m[1])
	}
	require.ElementsMatch(t, botTypes, handled)
	require.Contains(t, js[start:start+end], "switch (msg.type)")

	for _, field := range []string{"sessionID", "callType", "sdp", "userInfo", "iceCandidates", "sdpMid", "sdpMLineIndex", "audio_muted", "video_muted", "iceServers"} {
		require.Containsf(t, js, field, "the script uses the protocol's field %s", field)
	}
	for reason, text := range map[string]string{
		"declined": "Nobody took the call", "busy": "busy", "no_answer": "No answer",
		"hangup": "The call ended", "failed": "failed", "shutdown": "The bot is restarting",
	} {
		require.Regexpf(t, `\n\s+`+reason+`: "[^"]*`+text, js, "the reason %s is shown", reason)
	}
	// Nothing that Trusted Types (in the CSP) would refuse.
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		require.NotContainsf(t, js, sink, "the script uses %s", sink)
	}
}
