package janus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

const (
	// keepaliveInterval keeps a session well inside Janus's default 60 s
	// session_timeout.
	keepaliveInterval = 25 * time.Second
	// requestTimeout bounds the background requests (keepalives), which
	// have no caller context.
	requestTimeout = 10 * time.Second
	// pollTimeout bounds one long poll: Janus answers an idle one with a
	// keepalive after 30 s, so this only catches a server that hangs.
	pollTimeout = 60 * time.Second
	// maxPollFailures is how many long polls in a row may fail before the
	// poller gives the session up: Janus is gone or overloaded beyond use.
	maxPollFailures = 5
	// cleanupTimeout bounds tearing down a half-set-up call after EchoCall
	// failed, possibly because its context ended.
	cleanupTimeout = 5 * time.Second
	// maxResponseBytes caps a Janus response; an SDP answer is a few KiB.
	maxResponseBytes = 1 << 20
)

// Client drives Janus's echotest plugin over the Janus HTTP API. It is safe
// for concurrent use; one Client serves hundreds of concurrent calls.
type Client struct {
	// URL is the Janus API base URL (Server.URL).
	URL string
	// HTTP carries every request, including one long poll per call, so it
	// must keep enough idle connections per host for all concurrent calls.
	HTTP *http.Client
	// Log receives what no caller is there to hear: failed keepalives, and
	// Janus hanging up a call after it was set up. The zero value discards.
	Log zerolog.Logger
}

// NewClient returns a Client for the Janus API at url whose HTTP client keeps
// up to 512 idle connections to it, so that hundreds of concurrent sessions
// (each with a long poll and the odd request) reuse connections instead of
// opening a new one per request.
func NewClient(url string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 0 // no global cap; the per-host one below is what matters
	tr.MaxIdleConnsPerHost = 512
	// No http.Client.Timeout: long polls legitimately take 30 s. Every
	// request carries a context instead.
	return &Client{URL: url, HTTP: &http.Client{Transport: tr}}
}

// Error is an error Janus reported, either from the core
// ({"janus":"error","error":{"code":…,"reason":…}}) or from the plugin
// (error_code and error in its event data).
type Error struct {
	Code   int
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("janus error %d: %s", e.Code, e.Reason)
}

// jsep is a session description as the Janus API carries it.
type jsep struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
	// Trickle false tells Janus no trickled candidates will follow the
	// offer, so it starts connectivity checks with the ones in the SDP
	// instead of waiting for an end-of-candidates trickle.
	Trickle *bool `json:"trickle,omitempty"`
}

// response is any message from Janus: a reply to a request or an event from
// a long poll.
type response struct {
	Janus       string `json:"janus"`
	Transaction string `json:"transaction"`
	Sender      uint64 `json:"sender"`
	Data        struct {
		ID uint64 `json:"id"`
	} `json:"data"`
	Error *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"error"`
	PluginData *struct {
		Plugin string          `json:"plugin"`
		Data   json.RawMessage `json:"data"`
	} `json:"plugindata"`
	JSEP *jsep `json:"jsep"`
	// Reason is why Janus hung up a PeerConnection ("hangup" events).
	Reason string `json:"reason"`
}

// echotestData is the error part of an echotest event's data
// ({"echotest":"event","error_code":…,"error":…}).
type echotestData struct {
	ErrorCode int    `json:"error_code"`
	Error     string `json:"error"`
}

// coreError is the error in a {"janus":"error"} message.
func (r *response) coreError() *Error {
	if r.Error == nil {
		return &Error{Reason: "error without details"}
	}
	return &Error{Code: r.Error.Code, Reason: r.Error.Reason}
}

// pluginError returns the plugin's error in r, if any.
func (r *response) pluginError() error {
	if r.PluginData == nil || len(r.PluginData.Data) == 0 {
		return nil
	}
	var d echotestData
	if err := json.Unmarshal(r.PluginData.Data, &d); err != nil {
		return fmt.Errorf("decoding %s plugin data: %w", r.PluginData.Plugin, err)
	}
	if d.ErrorCode != 0 || d.Error != "" {
		return &Error{Code: d.ErrorCode, Reason: d.Error}
	}
	return nil
}

// errSessionGone is the long poll's answer once Janus no longer knows the
// session (HTTP 404).
var errSessionGone = errors.New("janus no longer knows the session")

// post sends a request to path (relative to URL) and returns Janus's reply,
// which must be of type want; a {"janus":"error"} reply is returned as *Error.
// The request gets a fresh transaction unless it has one.
func (c *Client) post(ctx context.Context, path string, req map[string]any, want string) (*response, error) {
	tx, _ := req["transaction"].(string)
	if tx == "" {
		tx = rand.Text()
		req["transaction"] = tx
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	r, err := c.do(hreq)
	if err != nil {
		return nil, err
	}
	if r.Janus == "error" {
		return nil, r.coreError()
	}
	if r.Transaction != tx {
		return nil, fmt.Errorf("janus answered transaction %q to %q", r.Transaction, tx)
	}
	if r.Janus != want {
		return nil, fmt.Errorf("janus answered %q, want %q", r.Janus, want)
	}
	return r, nil
}

// do sends an HTTP request and decodes Janus's JSON reply.
func (c *Client) do(req *http.Request) (*response, error) {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("reading the reply: %w", err)
	}
	if resp.StatusCode == http.StatusNotFound && req.Method == http.MethodGet {
		return nil, errSessionGone
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	var r response
	if err = json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decoding the reply %q: %w", data, err)
	}
	return &r, nil
}

// poll long-polls the session for one event.
func (c *Client) poll(ctx context.Context, session uint64) (*response, error) {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	// rid defeats caches in between, as janus.js does.
	url := fmt.Sprintf("%s/%d?maxev=1&rid=%d", c.URL, session, time.Now().UnixNano())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return c.do(req)
}

// echoCall is one echotest session: a Janus session with one handle, a
// long poll that reads its events and a keepalive loop, both running until
// hangup.
type echoCall struct {
	c       *Client
	log     zerolog.Logger
	session uint64
	handle  uint64
	offerTx string // transaction of the offer, which the answer event carries

	stop    context.CancelFunc // ends the background goroutines
	wg      sync.WaitGroup
	answer  chan answerResult // the poller's verdict on the offer, sent once
	pollEnd chan struct{}     // closed when the poller gives up
	pollErr error             // why; read after pollEnd is closed

	hangupOnce sync.Once
	hangupErr  error
}

type answerResult struct {
	sdp string
	err error
}

// EchoCall sets up a call with Janus's echotest plugin: it creates a
// session, attaches the plugin, sends offerSDP (audio only, with all its
// candidates already in it, so marked "trickle": false and followed by no
// trickle message) and returns Janus's answer, which carries Janus's
// candidates too. hangup detaches the plugin, destroys the session and stops
// the call's event poll and keepalives; it is safe to call more than once.
// ctx bounds the setup only; the call lives until hangup.
func (c *Client) EchoCall(ctx context.Context, offerSDP string) (answerSDP string, hangup func(ctx context.Context) error, err error) {
	r, err := c.post(ctx, "", map[string]any{"janus": "create"}, "success")
	if err != nil {
		return "", nil, fmt.Errorf("creating a Janus session: %w", err)
	}
	bg, stop := context.WithCancel(context.Background())
	k := &echoCall{
		c:       c,
		session: r.Data.ID,
		stop:    stop,
		answer:  make(chan answerResult, 1),
		pollEnd: make(chan struct{}),
	}
	k.log = c.Log.With().Uint64("janus_session", k.session).Logger()
	// fail tears down what was set up so far, on a context of its own since
	// ctx may be why setup failed.
	fail := func(err error) (string, func(context.Context) error, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if herr := k.hangup(cctx); herr != nil {
			err = fmt.Errorf("%w (cleaning up: %w)", err, herr)
		}
		return "", nil, err
	}

	r, err = c.post(ctx, fmt.Sprintf("/%d", k.session), map[string]any{"janus": "attach", "plugin": EchoTestPlugin}, "success")
	if err != nil {
		return fail(fmt.Errorf("attaching %s to session %d: %w", EchoTestPlugin, k.session, err))
	}
	k.handle = r.Data.ID
	k.log = k.log.With().Uint64("janus_handle", k.handle).Logger()

	// The poller runs before the offer goes out so that no event can be
	// missed (Janus would queue them anyway), and for the call's whole
	// life so that Janus's per-session event queue does not grow and a
	// hangup from Janus's side gets logged.
	k.offerTx = rand.Text()
	k.wg.Add(2)
	go k.pollEvents(bg)
	go k.keepalive(bg)

	noTrickle := false
	_, err = c.post(ctx, fmt.Sprintf("/%d/%d", k.session, k.handle), map[string]any{
		"janus":       "message",
		"transaction": k.offerTx,
		"body":        map[string]any{"audio": true, "video": false},
		"jsep":        jsep{Type: "offer", SDP: offerSDP, Trickle: &noTrickle},
	}, "ack")
	if err != nil {
		return fail(fmt.Errorf("sending the offer to %s (session %d, handle %d): %w", EchoTestPlugin, k.session, k.handle, err))
	}

	var res answerResult
	select {
	case res = <-k.answer:
	case <-k.pollEnd:
		// The poller may have delivered a verdict just before it ended.
		select {
		case res = <-k.answer:
		default:
			res.err = k.pollErr
		}
	case <-ctx.Done():
		res.err = ctx.Err()
	}
	if res.err != nil {
		return fail(fmt.Errorf("waiting for the %s answer (session %d, handle %d): %w", EchoTestPlugin, k.session, k.handle, res.err))
	}
	return res.sdp, k.hangup, nil
}

// pollEvents long-polls the session's events until ctx ends or the session
// is gone. It hands the answer to the offer (or the reason there will be
// none) to EchoCall once, and logs the rest.
func (k *echoCall) pollEvents(ctx context.Context) {
	defer k.wg.Done()
	defer close(k.pollEnd)
	answered := false
	deliver := func(res answerResult) {
		if !answered {
			answered = true
			k.answer <- res // buffered for the one result
		}
	}
	failures := 0
	delay := 50 * time.Millisecond
	for {
		ev, err := k.c.poll(ctx, k.session)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if errors.Is(err, errSessionGone) {
				k.pollErr = fmt.Errorf("polling events: %w", err)
				k.logEnd(answered, "janus dropped the session")
				return
			}
			failures++
			if failures >= maxPollFailures {
				k.pollErr = fmt.Errorf("polling events: %d failures in a row, the last: %w", failures, err)
				k.log.Error().Err(err).Msg("giving up polling janus events")
				return
			}
			// Back off in case Janus is overloaded rather than gone.
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 2*time.Second)
			continue
		}
		failures, delay = 0, 50*time.Millisecond

		switch ev.Janus {
		case "keepalive":
			// An idle long poll timing out after 30 s.
		case "event":
			if ev.Sender != k.handle {
				k.log.Debug().Uint64("sender", ev.Sender).Msg("janus event for another handle")
				continue
			}
			if err := ev.pluginError(); err != nil {
				if ev.Transaction == k.offerTx {
					deliver(answerResult{err: fmt.Errorf("%s rejected the offer: %w", EchoTestPlugin, err)})
				} else {
					k.log.Warn().Err(err).Msg("echotest error")
				}
				continue
			}
			if ev.JSEP == nil {
				// A plain result, e.g. "done" when the PeerConnection closes.
				continue
			}
			if ev.Transaction != k.offerTx {
				k.log.Warn().Str("transaction", ev.Transaction).Str("jsep", ev.JSEP.Type).Msg("unexpected jsep from echotest")
				continue
			}
			if ev.JSEP.Type != "answer" || ev.JSEP.SDP == "" {
				deliver(answerResult{err: fmt.Errorf("%s answered with a %q jsep", EchoTestPlugin, ev.JSEP.Type)})
				continue
			}
			deliver(answerResult{sdp: ev.JSEP.SDP})
		case "error":
			// An asynchronous error for a request, e.g. the offer.
			jerr := ev.coreError()
			if ev.Transaction == k.offerTx {
				deliver(answerResult{err: jerr})
			} else {
				k.log.Warn().Err(jerr).Str("transaction", ev.Transaction).Msg("janus error event")
			}
		case "webrtcup":
			// ICE and DTLS are up on Janus's side: media will flow.
			k.log.Debug().Msg("janus webrtcup")
		case "media", "slowlink":
			k.log.Debug().Str("event", ev.Janus).Msg("janus media event")
		case "hangup":
			if !answered {
				deliver(answerResult{err: fmt.Errorf("janus hung up before answering: %s", ev.Reason)})
			} else {
				k.log.Warn().Str("reason", ev.Reason).Msg("janus hung up the echo call")
			}
		case "detached":
			if !answered {
				deliver(answerResult{err: errors.New("janus detached the echotest handle before answering")})
			} else {
				k.log.Warn().Msg("janus detached the echotest handle")
			}
		case "timeout":
			// Janus timed the session out: it is gone, nothing more comes.
			k.pollErr = errors.New("janus timed the session out")
			k.logEnd(answered, "janus timed the session out")
			return
		default:
			k.log.Debug().Str("event", ev.Janus).Msg("janus event")
		}
	}
}

// logEnd logs the end of a session Janus ended. Before the answer, EchoCall
// reports it instead.
func (k *echoCall) logEnd(answered bool, msg string) {
	if answered {
		k.log.Warn().Msg(msg)
	}
}

// keepalive sends a keepalive every 25 s until ctx ends. The long poll keeps
// the session alive as well while it works; this covers the gaps when it
// does not (Janus busy, a poll failing and backing off).
func (k *echoCall) keepalive(ctx context.Context) {
	defer k.wg.Done()
	t := time.NewTicker(keepaliveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		_, err := k.c.post(rctx, fmt.Sprintf("/%d", k.session), map[string]any{"janus": "keepalive"}, "ack")
		cancel()
		if err != nil && ctx.Err() == nil {
			k.log.Warn().Err(err).Msg("janus keepalive failed")
		}
	}
}

// hangup stops the background goroutines, detaches the handle and destroys
// the session. Only the first call does anything; later ones return its
// result.
func (k *echoCall) hangup(ctx context.Context) error {
	k.hangupOnce.Do(func() {
		k.stop()
		k.wg.Wait()
		var errs []error
		if k.handle != 0 {
			if _, err := k.c.post(ctx, fmt.Sprintf("/%d/%d", k.session, k.handle), map[string]any{"janus": "detach"}, "success"); err != nil {
				errs = append(errs, fmt.Errorf("detaching %s handle %d: %w", EchoTestPlugin, k.handle, err))
			}
		}
		if _, err := k.c.post(ctx, fmt.Sprintf("/%d", k.session), map[string]any{"janus": "destroy"}, "success"); err != nil {
			errs = append(errs, fmt.Errorf("destroying Janus session %d: %w", k.session, err))
		}
		k.hangupErr = errors.Join(errs...)
	})
	return k.hangupErr
}
