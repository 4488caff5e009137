package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/voipbot/voipbot/internal/bench/benchserver"
)

// HTTPFront signals through a bench server's POST /call.
type HTTPFront struct {
	URL    string // base URL of the server
	Label  string
	Client *http.Client
}

// NewHTTPFront makes a front for the bench server at url.
func NewHTTPFront(url, label string) *HTTPFront {
	return &HTTPFront{URL: url, Label: label, Client: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
	}}
}

// Name implements Front.
func (f *HTTPFront) Name() string { return f.Label }

// Call implements Front. The server ends calls on POST /reset; a single
// call has nothing to hang up.
func (f *HTTPFront) Call(ctx context.Context, offer, pair string) (string, func(context.Context) error, error) {
	body, err := json.Marshal(benchserver.Offer{SDP: offer, Pair: pair})
	if err != nil {
		return "", nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL+"/call", bytes.NewReader(body))
	if err != nil {
		return "", nil, err
	}
	resp, err := f.Client.Do(req)
	if err != nil {
		return "", nil, fmt.Errorf("calling %s: %w", f.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return "", nil, fmt.Errorf("calling %s: %s: %s", f.URL, resp.Status, bytes.TrimSpace(msg))
	}
	var answer benchserver.Answer
	if err = json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return "", nil, fmt.Errorf("reading answer: %w", err)
	}
	return answer.SDP, func(context.Context) error { return nil }, nil
}

// Reset ends every call on the server.
func (f *HTTPFront) Reset(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL+"/reset", nil)
	if err != nil {
		return err
	}
	resp, err := f.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("resetting %s: %s", f.URL, resp.Status)
	}
	return nil
}

// Stats reads the server's GET /stats.
func (f *HTTPFront) Stats(ctx context.Context) (*benchserver.Stats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL+"/stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st benchserver.Stats
	if err = json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}
