package whip

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/pion/webrtc/v4"
)

// Authorize checks a request's bearer token (from the URL's last segment,
// or the Authorization header) for an endpoint, and returns what it
// opens; errors wrap ErrUnauthorized or ErrTooMany. The host supplies it:
// the tokens and their rate limits are its.
type Authorize func(r *http.Request, token string, egress bool) (Link, error)

// maxBody bounds an offer or a PATCH: an SDP offer is a few KiB.
const maxBody = 64 << 10

// Media types of RFC 9725.
const (
	typeSDP  = "application/sdp"
	typeFrag = "application/trickle-ice-sdpfrag"
)

// Mount puts the endpoints and sessions on handle (an http.ServeMux's
// Handle): POST /whip and /whip/{token} (and /whep…), PATCH and DELETE of
// /whip/session/{id}, OPTIONS of each for CORS. Other methods get Go's 405
// with Allow.
func (m *Manager) Mount(handle func(pattern string, h http.Handler), auth Authorize) {
	for _, kind := range []string{"whip", "whep"} {
		egress := kind == "whep"
		post := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serveEndpoint(w, r, egress, auth) })
		handle("POST /"+kind, post)
		handle("POST /"+kind+"/{token}", post)
		endpointOptions := preflight("POST, OPTIONS")
		handle("OPTIONS /"+kind, endpointOptions)
		handle("OPTIONS /"+kind+"/{token}", endpointOptions)
		session := http.HandlerFunc(m.serveSession)
		handle("PATCH /"+kind+"/session/{id}", session)
		handle("DELETE /"+kind+"/session/{id}", session)
		handle("OPTIONS /"+kind+"/session/{id}", preflight("PATCH, DELETE, OPTIONS"))
	}
}

// cors lets browser clients on other origins use the API: it is
// authorised by bearer tokens, never by cookies, so any origin may.
func cors(h http.Header) {
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch")
}

func preflight(methods string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		cors(h)
		h.Set("Allow", methods)
		h.Set("Access-Control-Allow-Methods", methods)
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
		h.Set("Access-Control-Max-Age", "86400")
		if strings.HasPrefix(methods, "POST") {
			h.Set("Accept-Post", typeSDP)
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// bearer is the token of a request: the URL's, else the Authorization
// header's (OBS has a field for it); both, differing, is no token.
func bearer(r *http.Request) string {
	path := r.PathValue("token")
	header := ""
	if v := r.Header.Get("Authorization"); v != "" {
		if scheme, tok, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			header = strings.TrimSpace(tok)
		}
	}
	switch {
	case path == "":
		return header
	case header == "" || header == path:
		return path
	}
	return ""
}

func (m *Manager) serveEndpoint(w http.ResponseWriter, r *http.Request, egress bool, auth Authorize) {
	cors(w.Header())
	link, err := auth(r, bearer(r), egress)
	if err != nil {
		m.refuse(w, err)
		return
	}
	if !hasType(r, typeSDP) {
		m.refuse(w, fmt.Errorf("%w: the offer must be %s", errMediaType, typeSDP))
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		m.refuse(w, err)
		return
	}
	link.Egress = egress
	ans, err := m.Start(r.Context(), link, body)
	if err != nil {
		m.refuse(w, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", typeSDP)
	h.Set("Location", ans.Location)
	h.Set("ETag", ans.ETag)
	h.Set("Accept-Patch", typeFrag)
	for _, s := range ans.ICEServers {
		for _, link := range iceLinks(s) {
			h.Add("Link", link)
		}
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, ans.SDP)
}

func (m *Manager) serveSession(w http.ResponseWriter, r *http.Request) {
	cors(w.Header())
	resource := r.PathValue("id")
	if r.Method == http.MethodDelete {
		if err := m.Delete(resource); err != nil {
			m.refuse(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	if !hasType(r, typeFrag) {
		m.refuse(w, fmt.Errorf("%w: a PATCH must be %s", errMediaType, typeFrag))
		return
	}
	body, err := readBody(w, r)
	if err != nil {
		m.refuse(w, err)
		return
	}
	if err := m.Patch(r.Context(), resource, r.Header.Get("If-Match"), body); err != nil {
		m.refuse(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

var (
	errMediaType = errors.New("whip: wrong media type")
	errTooLarge  = errors.New("whip: the body is too large")
)

func hasType(r *http.Request, want string) bool {
	t, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && t == want
}

func readBody(w http.ResponseWriter, r *http.Request) (string, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return "", fmt.Errorf("%w (at most %d bytes)", errTooLarge, maxBody)
		}
		return "", fmt.Errorf("%w: reading the body: %s", ErrOffer, err.Error())
	}
	return string(b), nil
}

// statusOf is the HTTP status of a refusal.
func statusOf(err error) int {
	for _, s := range []struct {
		err    error
		status int
	}{
		{ErrUnauthorized, http.StatusUnauthorized},
		{ErrTooMany, http.StatusTooManyRequests},
		{errMediaType, http.StatusUnsupportedMediaType},
		{errTooLarge, http.StatusRequestEntityTooLarge},
		{ErrOffer, http.StatusBadRequest},
		{ErrBusy, http.StatusServiceUnavailable},
		{ErrNoCall, http.StatusConflict},
		{ErrNoSession, http.StatusNotFound},
		{ErrRestart, http.StatusUnprocessableEntity},
		{ErrPrecondition, http.StatusPreconditionFailed},
	} {
		if errors.Is(err, s.err) {
			return s.status
		}
	}
	return http.StatusInternalServerError
}

// refuse answers a refused request with its status and why, in plain text
// (never a stack trace; an unexpected error is logged and not shown).
func (m *Manager) refuse(w http.ResponseWriter, err error) {
	status := statusOf(err)
	msg := strings.TrimPrefix(err.Error(), "whip: ")
	h := w.Header()
	switch status {
	case http.StatusInternalServerError:
		m.log.Error().Err(err).Msg("A WHIP request failed")
		msg = "the session could not be set up"
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		h.Set("Retry-After", "60")
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// iceLinks are an ICE server's Link header values (RFC 9725 §4.6).
func iceLinks(s webrtc.ICEServer) []string {
	var out []string
	for _, u := range s.URLs {
		v := fmt.Sprintf("<%s>; rel=\"ice-server\"", u)
		if c, ok := s.Credential.(string); ok && s.Username != "" {
			v += fmt.Sprintf("; username=%q; credential=%q; credential-type=\"password\"", s.Username, c)
		}
		out = append(out, v)
	}
	return out
}
