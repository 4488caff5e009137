package testbed

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DelayedEvents is a homeserver front that adds what Dendrite lacks for
// MatrixRTC: a .well-known client document of the test's own (SetWellKnown:
// Dendrite's has no rtc_foci), and MSC4140's delayed state events (Dendrite
// sends a "delayed" event at once):
// a client that asks /versions sees org.matrix.msc4140; a state event sent
// with ?org.matrix.msc4140.delay=N is kept and sent to Dendrite N ms later,
// with the sender's access token, unless it is restarted (the timer starts
// again), sent early or cancelled through /delayed_events. Everything else
// passes through. Only what a MatrixRTC client's dead man's switch needs.
type DelayedEvents struct {
	// URL is the front's base URL, to give clients as the homeserver's.
	URL    string
	target *url.URL
	proxy  *httputil.ReverseProxy
	srv    *http.Server
	client *http.Client

	// syncClient has no timeout: /sync long-polls.
	syncClient *http.Client
	// stickyFlight counts sticky sends waiting for the homeserver.
	stickyFlight sync.WaitGroup

	mu        sync.Mutex
	wellKnown any
	pending   map[string]*delayedEvent
	// stickyMS is the sticky duration of each sticky event sent, nil
	// until EnableSticky (sticky.go).
	stickyMS map[string]int
	// What clients did, and what the front sent (when due or asked to).
	scheduled, restarted, sentN int
	sent                        chan string // delay ids as they are sent
}

type delayedEvent struct {
	path, auth string
	body       []byte
	delay      time.Duration
	timer      *time.Timer
	// stickyMS: the event is sticky for that long once sent (0: not).
	stickyMS int
}

// StartDelayedEvents listens on a free loopback port in front of the
// homeserver at target (its client URL).
func StartDelayedEvents(target string) (*DelayedEvents, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("delayed events front: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("delayed events front: %w", err)
	}
	d := &DelayedEvents{
		URL: "http://" + ln.Addr().String(), target: u, proxy: httputil.NewSingleHostReverseProxy(u),
		client: &http.Client{Timeout: 10 * time.Second}, pending: map[string]*delayedEvent{},
		syncClient: &http.Client{},
		sent:       make(chan string, 64),
	}
	// A client that dies mid-request (tests kill bots) is no news.
	d.proxy.ErrorLog = log.New(io.Discard, "", 0)
	d.srv = &http.Server{Handler: d, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = d.srv.Serve(ln) }()
	return d, nil
}

// SentEvents delivers the id of each delayed event as it is sent.
func (d *DelayedEvents) SentEvents() <-chan string { return d.sent }

// Close stops the front; events still pending are dropped.
func (d *DelayedEvents) Close() error {
	d.mu.Lock()
	for id, e := range d.pending {
		e.timer.Stop()
		delete(d.pending, id)
	}
	d.mu.Unlock()
	return d.srv.Close()
}

const delayedPrefix = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/"

// SetWellKnown serves doc as /.well-known/matrix/client.
func (d *DelayedEvents) SetWellKnown(doc any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wellKnown = doc
}

func (d *DelayedEvents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	wellKnown := d.wellKnown
	d.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/.well-known/matrix/client" && wellKnown != nil:
		writeJSON(w, http.StatusOK, wellKnown)
	case r.Method == http.MethodGet && r.URL.Path == "/_matrix/client/versions":
		d.versions(w, r)
	case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/state/") && r.URL.Query().Has("org.matrix.msc4140.delay"):
		d.schedule(w, r)
	case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/send/") && r.URL.Query().Has("org.matrix.msc4140.delay") && d.stickyOn():
		d.schedule(w, r)
	case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/send/") && stickyDuration(r) > 0 && d.stickyOn():
		d.sendSticky(w, r)
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/sync") && d.stickyOn():
		d.sync(w, r)
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, delayedPrefix):
		d.update(w, r)
	default:
		d.proxy.ServeHTTP(w, r)
	}
}

func (d *DelayedEvents) versions(w http.ResponseWriter, r *http.Request) {
	resp, err := d.client.Get(d.target.String() + r.URL.Path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var v map[string]any
	if err = json.NewDecoder(resp.Body).Decode(&v); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	features, _ := v["unstable_features"].(map[string]any)
	if features == nil {
		features = map[string]any{}
	}
	features["org.matrix.msc4140"] = true
	if d.stickyOn() {
		features["org.matrix.msc4354"] = true
	}
	v["unstable_features"] = features
	writeJSON(w, http.StatusOK, v)
}

func (d *DelayedEvents) schedule(w http.ResponseWriter, r *http.Request) {
	ms, err := strconv.Atoi(r.URL.Query().Get("org.matrix.msc4140.delay"))
	if err != nil || ms <= 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"errcode": "M_INVALID_PARAM", "error": "bad delay"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := "syd_" + hex.EncodeToString(b[:])
	e := &delayedEvent{path: r.URL.Path, auth: r.Header.Get("Authorization"), body: body, delay: time.Duration(ms) * time.Millisecond, stickyMS: stickyDuration(r)}
	d.mu.Lock()
	// A send that fails shows as the state not changing, which tests see.
	e.timer = time.AfterFunc(e.delay, func() { _ = d.send(id) })
	d.pending[id] = e
	d.scheduled++
	d.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"delay_id": id})
}

func (d *DelayedEvents) update(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, delayedPrefix)
	id, action, _ := strings.Cut(rest, "/") // POST …/{id}/{action}, or …/{id} with {"action"}
	if action == "" {
		var req struct {
			Action string `json:"action"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"errcode": "M_NOT_JSON", "error": err.Error()})
			return
		}
		action = req.Action
	}
	d.mu.Lock()
	e, ok := d.pending[id]
	if ok && action == "restart" {
		e.timer.Reset(e.delay)
		d.restarted++
	}
	if ok && action == "cancel" {
		e.timer.Stop()
		delete(d.pending, id)
	}
	d.mu.Unlock()
	switch {
	case !ok:
		writeJSON(w, http.StatusNotFound, map[string]string{"errcode": "M_NOT_FOUND", "error": "no such delayed event"})
		return
	case action == "send":
		if err := d.send(id); err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"errcode": "M_UNKNOWN", "error": err.Error()})
			return
		}
	case action != "restart" && action != "cancel":
		writeJSON(w, http.StatusBadRequest, map[string]string{"errcode": "M_INVALID_PARAM", "error": "unknown action " + action})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// send sends a pending event to the homeserver (once).
func (d *DelayedEvents) send(id string) error {
	d.mu.Lock()
	e, ok := d.pending[id]
	if ok {
		e.timer.Stop()
		delete(d.pending, id)
	}
	d.mu.Unlock()
	if !ok {
		return errors.New("no such delayed event")
	}
	req, err := http.NewRequest(http.MethodPut, d.target.String()+e.path, bytes.NewReader(e.body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", e.auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the homeserver answered the delayed event with %s", resp.Status)
	}
	var sent struct {
		EventID string `json:"event_id"`
	}
	if e.stickyMS > 0 && json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&sent) == nil {
		d.rememberSticky(sent.EventID, e.stickyMS)
	}
	d.mu.Lock()
	d.sentN++
	d.mu.Unlock()
	select {
	case d.sent <- id:
	default:
	}
	return nil
}

// Counts says how many delayed events were scheduled, restarts asked
// for, and events sent.
func (d *DelayedEvents) Counts() (scheduled, restarted, sent int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.scheduled, d.restarted, d.sentN
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	cors(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// cors lets browser clients (Element Call) read what the front answers
// itself, as Dendrite lets them read its answers (preflights go through
// to Dendrite).
func cors(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Origin, X-Requested-With, Content-Type, Accept, Authorization")
}
