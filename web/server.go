// Package web is the bot's one HTTP listener: /health, /metrics and the
// routes other packages mount (the appservice API; later guest pages and
// WHIP/WHEP).
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Check reports whether one part of the bot is ready, and why not.
type Check func(now time.Time) (ready bool, reason string)

// Server is the HTTP listener.
type Server struct {
	cfg    Config
	mux    *http.ServeMux
	checks map[string]Check
	log    zerolog.Logger
	ln     net.Listener
}

// New creates the server with /health and /metrics (from gatherer).
func New(cfg Config, gatherer prometheus.Gatherer, log zerolog.Logger) *Server {
	s := &Server{cfg: cfg, mux: http.NewServeMux(), checks: map[string]Check{}, log: log}
	s.mux.HandleFunc("GET /health", s.health)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: promLogger{log}}))
	return s
}

// AddCheck adds a named readiness check to /health.
func (s *Server) AddCheck(name string, c Check) { s.checks[name] = c }

// Handle mounts a handler on a path pattern (net/http ServeMux syntax).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Listen binds the configured address, so that a port in use fails the start
// before anything else runs.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address, after Listen.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until ctx ends, then lets running requests finish for up to
// five seconds.
func (s *Server) Serve(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(s.ln) }()
	s.log.Info().Stringer("address", s.ln.Addr()).Msg("HTTP listener started")
	select {
	case err := <-done:
		return fmt.Errorf("HTTP listener stopped: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("stopping HTTP listener: %w", err)
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type healthReport struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

// health answers 200 when every check is ready and 503 otherwise, saying why
// for each part.
func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	report := healthReport{Ready: true, Checks: map[string]string{}}
	names := make([]string, 0, len(s.checks))
	for name := range s.checks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ok, reason := s.checks[name](now)
		report.Checks[name] = reason
		report.Ready = report.Ready && ok
	}
	status := http.StatusOK
	if !report.Ready {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(report)
}

// promLogger routes promhttp's errors to zerolog.
type promLogger struct{ log zerolog.Logger }

func (p promLogger) Println(v ...any) {
	p.log.Error().Str("error", fmt.Sprint(v...)).Msg("Metrics handler error")
}
