package testbed

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sticky events (MSC4354) in the homeserver front, which Dendrite lacks:
// once EnableSticky is called, /versions lists org.matrix.msc4354, an
// event sent with ?org.matrix.msc4354.sticky_duration_ms=N is remembered
// (Dendrite itself sends it as an ordinary event), and /sync responses
// mark those events in rooms' timelines with msc4354_sticky, which is
// where js-sdk (and mautrix) read stickiness. Only what a MatrixRTC
// client in a running call needs: there is no sticky section for a
// client that syncs from scratch later.

const stickyParam = "org.matrix.msc4354.sticky_duration_ms"

// EnableSticky turns the front's sticky events on.
func (d *DelayedEvents) EnableSticky() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stickyMS == nil {
		d.stickyMS = map[string]int{}
	}
}

func (d *DelayedEvents) stickyOn() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stickyMS != nil
}

// StickySent is how many sticky events clients sent through the front.
func (d *DelayedEvents) StickySent() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.stickyMS)
}

// stickyDuration is the request's sticky duration in ms, 0 if none.
func stickyDuration(r *http.Request) int {
	ms, err := strconv.Atoi(r.URL.Query().Get(stickyParam))
	if err != nil || ms <= 0 {
		return 0
	}
	return ms
}

// sendSticky passes a sticky send to the homeserver and remembers the
// event it made.
func (d *DelayedEvents) sendSticky(w http.ResponseWriter, r *http.Request) {
	// Dendrite may hand the event to a waiting /sync before this send
	// learns its id: a /sync waits for sends in flight (stickyIdle).
	d.stickyFlight.Add(1)
	defer d.stickyFlight.Done()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, d.target.String()+r.URL.Path, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	var sent struct {
		EventID string `json:"event_id"`
	}
	if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &sent) == nil && sent.EventID != "" {
		d.rememberSticky(sent.EventID, stickyDuration(r))
	}
	cors(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

func (d *DelayedEvents) rememberSticky(eventID string, ms int) {
	if ms <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stickyMS != nil {
		d.stickyMS[eventID] = ms
	}
}

// sync passes a /sync to the homeserver and marks the sticky events in
// its timelines.
func (d *DelayedEvents) sync(w http.ResponseWriter, r *http.Request) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, d.target.String()+r.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	resp, err := d.syncClient.Do(req) // no Accept-Encoding: the body is read as JSON
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var body map[string]any
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		cors(w)
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	if err = json.NewDecoder(resp.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	d.stickyIdle(r.Context())
	d.markSticky(body)
	writeJSON(w, http.StatusOK, body)
}

// stickyIdle waits (a little at most) until no sticky send is in flight,
// so that a sync response that holds its event is marked.
func (d *DelayedEvents) stickyIdle(ctx context.Context) {
	idle := make(chan struct{})
	go func() { d.stickyFlight.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
}

func (d *DelayedEvents) markSticky(body map[string]any) {
	rooms, _ := body["rooms"].(map[string]any)
	joined, _ := rooms["join"].(map[string]any)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, room := range joined {
		timeline, _ := room.(map[string]any)["timeline"].(map[string]any)
		events, _ := timeline["events"].([]any)
		for _, e := range events {
			evt, _ := e.(map[string]any)
			id, _ := evt["event_id"].(string)
			if ms, ok := d.stickyMS[id]; ok {
				evt["msc4354_sticky"] = map[string]any{"duration_ms": ms}
			}
		}
	}
}
