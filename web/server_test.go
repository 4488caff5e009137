package web

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

func startServer(t *testing.T, s *Server) string {
	t.Helper()
	require.NoError(t, s.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done, "Serve returns cleanly when its context ends")
	})
	return "http://" + s.Addr().String()
}

func TestHealthReportsEveryCheck(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(Config{Listen: "127.0.0.1:0"}, reg, zerolog.Nop())
	var ready atomic.Bool
	s.AddCheck("matrix", func(time.Time) (bool, string) {
		if ready.Load() {
			return true, "logged in and syncing"
		}
		return false, "first sync not finished"
	})
	s.AddCheck("other", func(time.Time) (bool, string) { return true, "fine" })
	base := startServer(t, s)

	get := func() (int, healthReport) {
		resp, err := http.Get(base + "/health")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var h healthReport
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
		return resp.StatusCode, h
	}
	code, h := get()
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.False(t, h.Ready)
	require.Equal(t, "first sync not finished", h.Checks["matrix"], "it says why not")
	require.Equal(t, "fine", h.Checks["other"])

	ready.Store(true)
	code, h = get()
	require.Equal(t, http.StatusOK, code)
	require.True(t, h.Ready)
}

func TestMetricsEndpoint(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "voipbot_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	base := startServer(t, New(Config{Listen: "127.0.0.1:0"}, reg, zerolog.Nop()))
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(body), "voipbot_test_total 3")
}

func TestListenFailsOnPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	s := New(Config{Listen: ln.Addr().String()}, prometheus.NewRegistry(), zerolog.Nop())
	require.ErrorContains(t, s.Listen(), "http.listen")
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, Config{Listen: "127.0.0.1:29333"}.Validate())
	require.NoError(t, Config{Listen: ":29333"}.Validate())
	require.ErrorContains(t, Config{Listen: "29333"}.Validate(), "http.listen")
}
