// Package benchserver is the server side of the media benchmarks: an HTTP
// signalling front (POST /call with an SDP offer, answer in the response)
// over either voipbot's media plane (a two-leg forwarder, or a forwarder
// with an echo leg)
// or a minimal raw pion forwarder, the baseline.
package benchserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/voip"
)

// Mode is what the server does with each call's media.
type Mode string

// The modes.
const (
	// Bridge pairs calls with the same pair ID and forwards each one's
	// audio to the other through a voip.Forwarder.
	Bridge Mode = "bridge"
	// Echo sends each call its own audio back: the call's leg and a
	// voip.EchoLeg in one forwarder.
	Echo Mode = "echo"
	// RawEcho is the baseline: a minimal pion echo (remote track → local
	// static RTP track of the same connection, pion's default interceptors).
	RawEcho Mode = "raw-echo"
	// RawBridge is the baseline of Bridge: the same forwarder, to the other
	// call of the pair.
	RawBridge Mode = "raw-bridge"
)

// Offer is the body of POST /call.
type Offer struct {
	SDP  string `json:"sdp"`
	Pair string `json:"pair,omitempty"` // bridge modes: the two calls of a pair share it
}

// Answer is the response of POST /call.
type Answer struct {
	SDP string `json:"sdp"`
	ID  string `json:"id"`
}

// Stats is the response of GET /stats.
type Stats struct {
	PID        int    `json:"pid"`
	Goroutines int    `json:"goroutines"`
	Calls      int    `json:"calls"`
	RSSBytes   uint64 `json:"rss_bytes"`
	HeapBytes  uint64 `json:"heap_bytes"`
	StackBytes uint64 `json:"stack_bytes"`
	// Goroutines of calls: all but those serving HTTP connections, which
	// come and go with the load generator's requests.
	CallGoroutines int `json:"call_goroutines"`
}

// Server answers calls over HTTP.
type Server struct {
	mode   Mode
	engine *voip.Engine
	opts   voip.SessionOptions
	log    zerolog.Logger
	raw    *rawServer

	mu      sync.Mutex
	seq     int
	calls   map[string]*call
	waiting map[string]*call // bridge modes: the first call of each pair
	bridges map[string]*voip.Forwarder
}

type call struct {
	id    string
	leg   *voip.Session // voipbot modes
	raw   *rawCall      // raw modes
	pair  string
	close func() error
}

// New makes a server. engine and opts are used in the voipbot modes; the
// raw modes gather ICE candidates on iface only (as the engine should be
// configured to), with the interceptors of rawSet.
func New(mode Mode, engine *voip.Engine, opts voip.SessionOptions, iface string, rawSet RawInterceptors, log zerolog.Logger) (*Server, error) {
	s := &Server{mode: mode, engine: engine, opts: opts, log: log, calls: map[string]*call{}, waiting: map[string]*call{}, bridges: map[string]*voip.Forwarder{}}
	switch mode {
	case Bridge, Echo:
	case RawEcho, RawBridge:
		raw, err := newRawServer(iface, iface == "lo", rawSet)
		if err != nil {
			return nil, err
		}
		s.raw = raw
	default:
		return nil, fmt.Errorf("unknown mode %q (bridge, echo, raw-echo, raw-bridge)", mode)
	}
	return s, nil
}

// Handler serves POST /call, GET /stats and POST /reset.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /call", s.handleCall)
	mux.HandleFunc("GET /stats", s.handleStats)
	mux.HandleFunc("POST /reset", s.handleReset)
	// Profiles of the server under load, for finding what costs more than
	// pion itself.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	return mux
}

func (s *Server) handleCall(w http.ResponseWriter, r *http.Request) {
	var offer Offer
	if err := json.NewDecoder(r.Body).Decode(&offer); err != nil {
		http.Error(w, "bad offer: "+err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	answer, err := s.answer(ctx, offer)
	if err != nil {
		s.log.Error().Err(err).Msg("Call failed")
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

func (s *Server) answer(ctx context.Context, offer Offer) (*Answer, error) {
	s.mu.Lock()
	s.seq++
	c := &call{id: strconv.Itoa(s.seq), pair: offer.Pair}
	s.mu.Unlock()
	var sdp string
	var err error
	if s.raw != nil {
		c.raw, sdp, err = s.raw.answer(ctx, offer.SDP)
		if err != nil {
			return nil, err
		}
		c.close = c.raw.close
	} else {
		c.leg, sdp, err = s.answerLeg(ctx, c.id, offer.SDP)
		if err != nil {
			return nil, err
		}
		c.close = c.leg.Close
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[c.id] = c
	switch s.mode {
	case Echo:
		fw := voip.NewForwarder(c.id, s.log)
		echo := voip.NewEchoLeg(c.id+"-echo", c.leg)
		c.close = func() error { return errors.Join(c.leg.Close(), echo.Close()) }
		if err = errors.Join(fw.Add(c.leg), fw.Add(echo)); err != nil {
			return nil, err
		}
		s.bridges[c.id] = fw
	case RawEcho:
		c.raw.forwardTo(c.raw)
	case Bridge, RawBridge:
		if c.pair == "" {
			return nil, errors.New("bridge mode needs a pair ID")
		}
		other, ok := s.waiting[c.pair]
		if !ok {
			s.waiting[c.pair] = c
			break
		}
		delete(s.waiting, c.pair)
		if s.mode == RawBridge {
			c.raw.forwardTo(other.raw)
			other.raw.forwardTo(c.raw)
			break
		}
		fw := voip.NewForwarder(c.pair, s.log)
		if err = errors.Join(fw.Add(other.leg), fw.Add(c.leg)); err != nil {
			return nil, err
		}
		s.bridges[c.pair] = fw
	}
	return &Answer{SDP: sdp, ID: c.id}, nil
}

// answerLeg answers an offer with a voipbot session sending back the
// offered audio format.
func (s *Server) answerLeg(ctx context.Context, id, offerSDP string) (*voip.Session, string, error) {
	leg, err := s.engine.NewSession(id, nil, s.opts)
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (*voip.Session, string, error) {
		_ = leg.Close()
		return nil, "", err
	}
	if err = leg.SetRemoteDescription(ctx, webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		return fail(err)
	}
	codecs := leg.NegotiatedCodecs(webrtc.RTPCodecTypeAudio)
	if len(codecs) == 0 {
		return fail(errors.New("the offer has no audio format the engine takes"))
	}
	if err = leg.AddOutbound(ctx, voip.NewOutboundTrack(codecs[0].RTPCodecCapability, id+"-audio", id)); err != nil {
		return fail(err)
	}
	// Loopback candidates are gathered at once: answer with all of them.
	answer, err := leg.CreateAnswer(ctx, 2*time.Second)
	if err != nil {
		return fail(err)
	}
	return leg, answer.SDP, nil
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	calls := len(s.calls)
	s.mu.Unlock()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Stats{PID: os.Getpid(), Goroutines: runtime.NumGoroutine(), Calls: calls, RSSBytes: RSS(os.Getpid()),
		HeapBytes: ms.HeapInuse, StackBytes: ms.StackInuse, CallGoroutines: callGoroutines()})
}

// handleReset ends every call and waits until their goroutines are gone.
func (s *Server) handleReset(w http.ResponseWriter, _ *http.Request) {
	if err := s.Reset(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Reset ends every call.
func (s *Server) Reset() error {
	s.mu.Lock()
	calls, bridges := s.calls, s.bridges
	s.calls, s.waiting, s.bridges = map[string]*call{}, map[string]*call{}, map[string]*voip.Forwarder{}
	s.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.close(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, fw := range bridges {
		errs = append(errs, fw.Close())
	}
	return errors.Join(errs...)
}

// Serve serves on a loopback listener until ctx ends, writing the bound
// address to ready first.
func (s *Server) Serve(ctx context.Context, addr string, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ready(ln.Addr())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err = srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return s.Reset()
}

// callGoroutines counts the goroutines not serving HTTP (the stats request
// itself among them), from a dump of all stacks.
func callGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if !strings.Contains(g, "net/http.(*conn).serve") && !strings.Contains(g, "net/http.(*persistConn)") {
			count++
		}
	}
	return count
}

// RSS is a process's resident set size, from /proc.
func RSS(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
