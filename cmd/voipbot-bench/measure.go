package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/voipbot/voipbot/internal/bench/benchserver"
	"github.com/voipbot/voipbot/internal/bench/loadgen"
	"github.com/voipbot/voipbot/internal/testbed/netns"
)

// halfCore is the CPU load the capacity is measured at.
const halfCore = 0.5

// streamsAtHalfCore fits the target's CPU share against the stream count
// (least squares over the medians) and returns where it reaches half a
// core, rounded down to an even number.
func streamsAtHalfCore(ms []measurement, target string, ns []int) int {
	var sx, sy, sxx, sxy float64
	for _, n := range ns {
		x, y := float64(n), median(ms, target, n, cpuShare)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	k := float64(len(ns))
	if k < 2 {
		return ns[0]
	}
	slope := (k*sxy - sx*sy) / (k*sxx - sx*sx)
	icept := (sy - slope*sx) / k
	if slope <= 0 {
		return ns[len(ns)-1]
	}
	n := int((halfCore - icept) / slope)
	return max(2, n-n%2)
}

type capacityRow struct {
	Target       string  `json:"target"`
	Streams      int     `json:"streams"`
	ForwardedPPS float64 `json:"forwarded_pps"`
	Calls        float64 `json:"calls_at_100pps"`
	ServerCPU    float64 `json:"server_cpu"`
	Loss         float64 `json:"loss"`
}

// measureCapacity runs each target at the stream count where the fit puts
// it at half a core, stepping down while packets are lost.
func measureCapacity(ctx context.Context, cfg suiteConfig, link *netns.Link, rep *Report, w io.Writer, targets []target) error {
	fmt.Fprintf(w, "## 3. Capacity at %.0f%% of one core with zero loss\n\n", 100*halfCore)
	fmt.Fprintf(w, "| server | streams | forwarded packets/s | bridged audio calls (100 pps each) | server CPU | loss |\n|---|---|---|---|---|---|\n")
	for _, t := range targets {
		n := streamsAtHalfCore(rep.CPU, t.Name, cfg.Ns)
		var row capacityRow
		for step := 0; step < 4; step++ {
			res, err := runOnce(ctx, t, link, loadgen.Config{Streams: n, Warmup: cfg.Warmup, Measure: cfg.Measure})
			if err != nil {
				return err
			}
			pps := float64(res.Received) / res.Window.Seconds()
			row = capacityRow{Target: t.Name, Streams: n, ForwardedPPS: pps, Calls: pps / 100, ServerCPU: res.ServerCPU, Loss: res.LossRatio()}
			if res.Lost == 0 {
				break
			}
			n = max(2, int(float64(n)*0.9)/2*2)
		}
		rep.Capacity = append(rep.Capacity, row)
		fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.0f%% | %.3f%% |\n", t.Name, row.Streams, row.ForwardedPPS, row.Calls, 100*row.ServerCPU, 100*row.Loss)
	}
	fmt.Fprintln(w)
	return nil
}

// measureLatency compares one-way latency through a bridge with clients
// talking directly, all on loopback, at 10 streams and where voipbot's
// bridge uses half a core.
func measureLatency(ctx context.Context, cfg suiteConfig, _ *netns.Link, rep *Report, w io.Writer) error {
	busy := streamsAtHalfCore(rep.CPU, oursBridge.Name, cfg.Ns)
	fmt.Fprintf(w, "## 2. Added one-way latency of the bridge hop (loopback; bridge minus direct client-to-client)\n\n")
	fmt.Fprintf(w, "| N streams | direct p50 / p99 | voipbot bridge p50 / p99 | added p50 / p99 | raw pion bridge p50 / p99 | added p50 / p99 |\n|---|---|---|---|---|---|\n")
	direct := target{Name: "direct", Pairs: true, start: func(context.Context, *netns.Link) (*running, error) {
		return &running{stop: func() error { return nil }}, nil
	}}
	for _, n := range []int{10, busy} {
		for round := range cfg.Rounds {
			for _, t := range []target{direct, oursBridge, rawBridge} {
				res, err := runOnce(ctx, t, nil, loadgen.Config{Streams: n, Warmup: cfg.Warmup, Measure: cfg.Measure})
				if err != nil {
					return err
				}
				rep.Latency = append(rep.Latency, measurement{Target: t.Name, Round: round, Result: res})
			}
		}
		p := func(t string, pick func(*loadgen.Result) time.Duration) time.Duration {
			return time.Duration(median(rep.Latency, t, n, func(r *loadgen.Result) float64 { return float64(pick(r)) }))
		}
		p50 := func(r *loadgen.Result) time.Duration { return r.LatencyP50 }
		p99 := func(r *loadgen.Result) time.Duration { return r.LatencyP99 }
		d50, d99 := p("direct", p50), p("direct", p99)
		o50, o99 := p(oursBridge.Name, p50), p(oursBridge.Name, p99)
		r50, r99 := p(rawBridge.Name, p50), p(rawBridge.Name, p99)
		fmt.Fprintf(w, "| %d | %s / %s | %s / %s | **%s / %s** | %s / %s | %s / %s |\n", n,
			us(d50), us(d99), us(o50), us(o99), us(o50-d50), us(o99-d99), us(r50), us(r99), us(r50-d50), us(r99-d99))
	}
	fmt.Fprintln(w)
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d.Nanoseconds())/1000) }

type memoryRow struct {
	Target                  string  `json:"target"`
	Calls                   int     `json:"calls"`
	RSSStart                uint64  `json:"rss_start"`
	RSSIdle                 uint64  `json:"rss_idle"`
	RSSActive               uint64  `json:"rss_active"`
	RSSAfter                uint64  `json:"rss_after"`
	KiBPerCallIdle          float64 `json:"kib_per_call_idle"`
	KiBPerCallActive        float64 `json:"kib_per_call_active"`
	GoroutinesStart         int     `json:"goroutines_start"`
	GoroutinesIdle          int     `json:"goroutines_idle"`
	GoroutinesActive        int     `json:"goroutines_active"`
	GoroutinesAfter         int     `json:"goroutines_after"`
	GoroutinesPerCallIdle   float64 `json:"goroutines_per_call_idle"`
	GoroutinesPerCallActive float64 `json:"goroutines_per_call_active"`
}

// measureMemory loads each server with idle calls, then active ones, and
// reads its resident memory and goroutines (those of calls: not the HTTP
// server's), and again after every call ended.
func measureMemory(ctx context.Context, cfg suiteConfig, link *netns.Link, rep *Report, w io.Writer) error {
	fmt.Fprintf(w, "## 4. Memory and goroutines per call (%d streams; a bridged call is 2 streams, an echo call 1)\n\n", cfg.MemN)
	fmt.Fprintf(w, "| server | calls | RSS at start | per call idle | per call active | RSS after all ended | goroutines start / idle / active / after all ended | goroutines per call |\n|---|---|---|---|---|---|---|---|\n")
	for _, t := range []target{oursBridge, rawBridge, oursEcho, janusEcho} {
		if !wants(cfg.Targets, t.Name) {
			continue
		}
		r, err := t.start(ctx, link)
		if err != nil {
			return err
		}
		calls := cfg.MemN
		if t.Pairs {
			calls /= 2
		}
		row := memoryRow{Target: t.Name, Calls: calls}
		read := func(rss *uint64, goroutines *int) func() {
			return func() {
				*rss = benchserver.RSS(r.pid)
				if r.stats != nil {
					if st, err := r.stats(ctx); err == nil {
						*goroutines = st.CallGoroutines
					}
				}
			}
		}
		read(&row.RSSStart, &row.GoroutinesStart)()
		base := loadgen.Config{Front: r.front, ServerPID: r.pid, ClientNetwork: r.client, Pairs: t.Pairs, Streams: cfg.MemN}
		idle := base
		idle.Idle, idle.Measure, idle.Measured = true, time.Second, read(&row.RSSIdle, &row.GoroutinesIdle)
		active := base
		active.Warmup, active.Measure, active.Measured = cfg.Warmup, cfg.Measure/2, read(&row.RSSActive, &row.GoroutinesActive)
		for _, c := range []loadgen.Config{idle, active} {
			if _, err = loadgen.Run(ctx, c); err != nil {
				_ = r.stop()
				return fmt.Errorf("%s memory run: %w", t.Name, err)
			}
			if r.reset != nil {
				if err = r.reset(ctx); err != nil {
					_ = r.stop()
					return err
				}
			}
		}
		// Calls end asynchronously (pion closes its transports in the
		// background): give the goroutines a few seconds to finish before
		// counting what is left as a leak.
		for deadline := time.Now().Add(10 * time.Second); ; {
			read(&row.RSSAfter, &row.GoroutinesAfter)()
			if r.stats == nil || row.GoroutinesAfter <= row.GoroutinesStart || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err = r.stop(); err != nil && !isSignal(err) {
			return err
		}
		kib := func(rss uint64) float64 { return (float64(rss) - float64(row.RSSStart)) / 1024 / float64(calls) }
		row.KiBPerCallIdle, row.KiBPerCallActive = kib(row.RSSIdle), kib(row.RSSActive)
		row.GoroutinesPerCallIdle = float64(row.GoroutinesIdle-row.GoroutinesStart) / float64(calls)
		row.GoroutinesPerCallActive = float64(row.GoroutinesActive-row.GoroutinesStart) / float64(calls)
		rep.Memory = append(rep.Memory, row)
		gor := "–"
		perCall := "–"
		if r.stats != nil {
			gor = fmt.Sprintf("%d / %d / %d / %d", row.GoroutinesStart, row.GoroutinesIdle, row.GoroutinesActive, row.GoroutinesAfter)
			perCall = fmt.Sprintf("%.1f idle, %.1f active", row.GoroutinesPerCallIdle, row.GoroutinesPerCallActive)
		}
		fmt.Fprintf(w, "| %s | %d | %.1f MiB | %.0f KiB | %.0f KiB | %.1f MiB | %s | %s |\n", t.Name, calls, float64(row.RSSStart)/(1<<20),
			row.KiBPerCallIdle, row.KiBPerCallActive, float64(row.RSSAfter)/(1<<20), gor, perCall)
	}
	fmt.Fprintln(w)
	return nil
}
