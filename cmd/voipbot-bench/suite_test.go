package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary be the bench server the suite starts (it
// runs its own executable with "serve").
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := serve(ctx, os.Args[2:])
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSuiteSmoke runs the whole suite at a few streams: every server (ours,
// raw pion, Janus in its namespace) answers calls and forwards every packet,
// each table is written, and no call goroutine outlives its call.
func TestSuiteSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rep, err := runSuite(ctx, suiteConfig{Ns: []int{4}, Rounds: 1, Warmup: 500 * time.Millisecond, Measure: time.Second, MemN: 4}, &out)
	require.NoError(t, err, out.String())
	t.Log(out.String())

	require.Len(t, rep.CPU, 7, "every target once")
	for _, m := range rep.CPU {
		require.Positive(t, m.Result.Received, m.Target)
		require.Zero(t, m.Result.Lost, "%s lost packets at 4 streams", m.Target)
		require.Positive(t, m.Result.ServerCPU, "%s: server CPU is measured", m.Target)
	}
	require.NotEmpty(t, rep.Latency)
	for _, m := range rep.Latency {
		require.Positive(t, m.Result.LatencyP50, m.Target)
	}
	require.Len(t, rep.Capacity, 5)
	require.Len(t, rep.Memory, 4)
	for _, m := range rep.Memory {
		require.Positive(t, m.RSSActive, m.Target)
		if !strings.HasPrefix(m.Target, "janus") {
			require.LessOrEqual(t, m.GoroutinesAfter, m.GoroutinesStart, "%s: call goroutines outlive their calls", m.Target)
		}
	}
	for _, section := range []string{"## 1.", "## 2.", "## 3.", "## 4."} {
		require.Contains(t, out.String(), section)
	}
}
