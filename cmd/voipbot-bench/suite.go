package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/voipbot/voipbot/internal/bench/benchserver"
	"github.com/voipbot/voipbot/internal/bench/loadgen"
	"github.com/voipbot/voipbot/internal/testbed/janus"
	"github.com/voipbot/voipbot/internal/testbed/netns"
)

// suiteConfig chooses what the suite measures.
type suiteConfig struct {
	Ns      []int
	Rounds  int
	Warmup  time.Duration
	Measure time.Duration
	MemN    int // streams for the memory measurement
	Out     string
	// Targets and Sections restrict the suite (empty: all).
	Targets  []string
	Sections []string
}

// wants reports whether the suite runs a target or section.
func wants(list []string, name string) bool { return len(list) == 0 || slices.Contains(list, name) }

// target is a server the suite measures.
type target struct {
	Name  string
	Pairs bool
	// start runs a fresh server; net says where: inside the namespace
	// (nil: loopback).
	start func(ctx context.Context, link *netns.Link) (*running, error)
}

type running struct {
	front  loadgen.Front
	pid    int
	client func(*webrtc.SettingEngine)
	stats  func(ctx context.Context) (*benchserver.Stats, error) // nil for Janus
	reset  func(ctx context.Context) error                       // nil for Janus
	stop   func() error
}

// benchServer runs `voipbot-bench serve` with a mode and flags.
func benchServer(name, mode string, pairs bool, flags ...string) target {
	return target{Name: name, Pairs: pairs, start: func(ctx context.Context, link *netns.Link) (*running, error) {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		args := append([]string{"serve", "-mode", mode}, flags...)
		var cmd *exec.Cmd
		client := func(se *webrtc.SettingEngine) {
			se.SetIncludeLoopbackCandidate(true)
			se.SetInterfaceFilter(func(n string) bool { return n == "lo" })
		}
		if link != nil {
			cmd = link.Command(self, append(args, "-addr", link.NSIP+":0", "-iface", link.NSIface)...)
			client = clientOn(link.HostIP)
		} else {
			cmd = exec.Command(self, args...)
		}
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err = cmd.Start(); err != nil {
			return nil, fmt.Errorf("starting %s server: %w", name, err)
		}
		stop := func() error {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return cmd.Wait()
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "READY ") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("%s server did not start (first line %q): %w", name, line, errors.Join(err, errors.New("no READY line")))
		}
		go func() { _, _ = io.Copy(io.Discard, out) }()
		fields := strings.Fields(line)
		pid, _ := strconv.Atoi(fields[2])
		front := loadgen.NewHTTPFront(fields[1], name)
		return &running{front: front, pid: pid, client: client, stats: front.Stats, reset: front.Reset, stop: stop}, nil
	}}
}

// janusEcho runs Janus's echotest in the namespace.
var janusEcho = target{Name: "janus-echo", start: func(ctx context.Context, link *netns.Link) (*running, error) {
	if link == nil {
		return nil, errors.New("janus runs in a namespace only")
	}
	dir, err := os.MkdirTemp("", "voipbot-bench-janus-")
	if err != nil {
		return nil, err
	}
	srv, err := janus.Start(dir, link)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &running{
		front:  loadgen.JanusFront{Client: janus.NewClient(srv.URL)},
		pid:    srv.PID(),
		client: srv.ConfigureClient,
		stop: func() error {
			err := srv.Stop()
			_ = os.RemoveAll(dir)
			return err
		},
	}, nil
}}

// clientOn confines load clients to one address (this side of the veth).
func clientOn(ip string) func(*webrtc.SettingEngine) {
	addr := net.ParseIP(ip)
	return func(se *webrtc.SettingEngine) {
		se.SetIncludeLoopbackCandidate(false)
		se.SetIPFilter(func(i net.IP) bool { return i.Equal(addr) })
	}
}

var (
	oursBridge = benchServer("voipbot-bridge", "bridge", true)
	rawBridge  = benchServer("raw-pion-bridge", "raw-bridge", true)
	// The raw bridge with only pion's report interceptors: the same work
	// as voipbot's audio legs.
	rawBridgeReports = benchServer("raw-pion-bridge-reports", "raw-bridge", true, "-raw-interceptors", "reports")
	oursEcho         = benchServer("voipbot-echo", "echo", false)
	rawEcho          = benchServer("raw-pion-echo", "raw-echo", false)
	// With pion's statistics interceptor too: what the bridge's own
	// counters save.
	oursBridgeStats = benchServer("voipbot-bridge+pion-stats", "bridge", true, "-interceptors", "pion-stats")
)

// allTargets are the servers of the CPU table, in its column order.
func allTargets() []target {
	return []target{oursBridge, rawBridge, oursEcho, rawEcho, janusEcho, rawBridgeReports, oursBridgeStats}
}

func targetNames() []string {
	var names []string
	for _, t := range allTargets() {
		names = append(names, t.Name)
	}
	return names
}

// measurement is one load run's outcome.
type measurement struct {
	Target string          `json:"target"`
	Round  int             `json:"round"`
	Result *loadgen.Result `json:"result"`
}

// runOnce starts a fresh server, loads it, stops it.
func runOnce(ctx context.Context, t target, link *netns.Link, cfg loadgen.Config) (*loadgen.Result, error) {
	r, err := t.start(ctx, link)
	if err != nil {
		return nil, err
	}
	cfg.Front, cfg.ServerPID, cfg.ClientNetwork, cfg.Pairs = r.front, r.pid, r.client, t.Pairs
	res, err := loadgen.Run(ctx, cfg)
	stopErr := r.stop()
	if err != nil {
		return nil, fmt.Errorf("%s at %d streams: %w", t.Name, cfg.Streams, err)
	}
	if stopErr != nil && !isSignal(stopErr) {
		return nil, fmt.Errorf("stopping %s: %w", t.Name, stopErr)
	}
	return res, nil
}

func isSignal(err error) bool {
	var exit *exec.ExitError
	return errors.As(err, &exit) && !exit.Exited()
}

func suite(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	ns := fs.String("n", "100,200,300,400", "stream counts")
	rounds := fs.Int("rounds", 3, "runs of each target at each stream count (the median is reported)")
	warmup := fs.Duration("warmup", 3*time.Second, "warmup of each run")
	measure := fs.Duration("measure", 10*time.Second, "measurement window of each run")
	memN := fs.Int("mem-n", 200, "streams for the memory measurement")
	out := fs.String("out", "", "also write every measurement as JSON to this file")
	only := fs.String("targets", "", "comma-separated targets to run (default all: "+strings.Join(targetNames(), ", ")+")")
	sections := fs.String("sections", "", "comma-separated sections: cpu (always run), latency, capacity, memory (default all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := suiteConfig{Rounds: *rounds, Warmup: *warmup, Measure: *measure, MemN: *memN, Out: *out}
	for _, list := range []struct {
		flag string
		to   *[]string
	}{{*only, &cfg.Targets}, {*sections, &cfg.Sections}} {
		for f := range strings.SplitSeq(list.flag, ",") {
			if f = strings.TrimSpace(f); f != "" {
				*list.to = append(*list.to, f)
			}
		}
	}
	for _, t := range cfg.Targets {
		if !slices.Contains(targetNames(), t) {
			return fmt.Errorf("-targets: unknown target %q", t)
		}
	}
	for _, sec := range cfg.Sections {
		if !slices.Contains([]string{"cpu", "latency", "capacity", "memory"}, sec) {
			return fmt.Errorf("-sections: unknown section %q (cpu, latency, capacity, memory)", sec)
		}
	}
	for f := range strings.SplitSeq(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n%2 != 0 {
			return fmt.Errorf("-n: %q is not a positive even number", f)
		}
		cfg.Ns = append(cfg.Ns, n)
	}
	report, err := runSuite(ctx, cfg, os.Stdout)
	if err != nil {
		return err
	}
	if cfg.Out != "" {
		data, err := json.MarshalIndent(report, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(cfg.Out, data, 0o644)
	}
	return nil
}

// Report is everything the suite measured.
type Report struct {
	CPU      []measurement   `json:"cpu"`
	Latency  []measurement   `json:"latency"`
	Capacity []capacityRow   `json:"capacity"`
	Memory   []memoryRow     `json:"memory"`
	Machine  string          `json:"machine"`
	Started  time.Time       `json:"started"`
	Config   json.RawMessage `json:"config"`
}

func runSuite(ctx context.Context, cfg suiteConfig, w io.Writer) (*Report, error) {
	link, err := netns.Create()
	if err != nil {
		return nil, err
	}
	defer func() { _ = link.Delete() }()
	rep := &Report{Started: time.Now(), Machine: machine()}
	rep.Config, _ = json.Marshal(cfg)
	fmt.Fprintf(w, "# voipbot media benchmarks (%s)\n\n", rep.Machine)
	fmt.Fprintf(w, "Servers run in a network namespace, load clients in this one, across a veth pair;\n"+
		"each run starts a fresh server; %d rounds per point, median reported; "+
		"Opus-sized audio (160-byte payloads) at 50 packets/s per stream.\n\n", cfg.Rounds)

	var targets []target
	for _, t := range allTargets() {
		if wants(cfg.Targets, t.Name) {
			targets = append(targets, t)
		}
	}
	base := loadgen.Config{Warmup: cfg.Warmup, Measure: cfg.Measure}
	for _, n := range cfg.Ns {
		for round := range cfg.Rounds {
			// Interleave the targets within a round, so that drift of the
			// machine affects them alike.
			for _, t := range targets {
				c := base
				c.Streams = n
				res, err := runOnce(ctx, t, link, c)
				if err != nil {
					return rep, err
				}
				rep.CPU = append(rep.CPU, measurement{Target: t.Name, Round: round, Result: res})
			}
		}
	}
	writeCPUTable(w, rep.CPU, cfg.Ns, targets)

	if wants(cfg.Sections, "latency") && wants(cfg.Targets, oursBridge.Name) {
		if err = measureLatency(ctx, cfg, link, rep, w); err != nil {
			return rep, err
		}
	}
	if wants(cfg.Sections, "capacity") {
		var capTargets []target
		for _, t := range targets {
			if t.Name != rawBridgeReports.Name && t.Name != oursBridgeStats.Name {
				capTargets = append(capTargets, t)
			}
		}
		if err = measureCapacity(ctx, cfg, link, rep, w, capTargets); err != nil {
			return rep, err
		}
	}
	if wants(cfg.Sections, "memory") {
		if err = measureMemory(ctx, cfg, link, rep, w); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func machine() string {
	host, _ := os.Hostname()
	cpus := 0
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cpus = strings.Count(string(data), "\nprocessor")
		if strings.HasPrefix(string(data), "processor") {
			cpus++
		}
	}
	return fmt.Sprintf("%s, %d CPUs", host, cpus)
}

// median of the values pick takes from the measurements of a target at n.
func median(ms []measurement, target string, n int, pick func(*loadgen.Result) float64) float64 {
	var vals []float64
	for _, m := range ms {
		if m.Target == target && m.Result.Streams == n {
			vals = append(vals, pick(m.Result))
		}
	}
	if len(vals) == 0 {
		return 0
	}
	slices.Sort(vals)
	return vals[len(vals)/2]
}

func usPerPacket(r *loadgen.Result) float64 { return float64(r.CPUPerPacket.Nanoseconds()) / 1000 }
func cpuShare(r *loadgen.Result) float64    { return r.ServerCPU }
func lossOf(r *loadgen.Result) float64      { return r.LossRatio() }

func writeCPUTable(w io.Writer, ms []measurement, ns []int, targets []target) {
	fmt.Fprintf(w, "## 1. Server CPU per forwarded packet (µs; whole server process)\n\n")
	fmt.Fprintf(w, "| N streams |")
	for _, t := range targets {
		fmt.Fprintf(w, " %s |", t.Name)
	}
	fmt.Fprintf(w, " bridge ÷ raw bridge | bridge ÷ raw bridge (reports only) | echo ÷ raw echo | echo ÷ Janus | bridge ÷ Janus |\n|---|")
	for range targets {
		fmt.Fprintf(w, "---|")
	}
	fmt.Fprintf(w, "---|---|---|---|---|\n")
	for _, n := range ns {
		fmt.Fprintf(w, "| %d |", n)
		vals := map[string]float64{}
		for _, t := range targets {
			v := median(ms, t.Name, n, usPerPacket)
			vals[t.Name] = v
			fmt.Fprintf(w, " %.1f (%.0f%% CPU, %.0f%% of it kernel, loss %.2f%%) |", v, 100*median(ms, t.Name, n, cpuShare),
				100*median(ms, t.Name, n, func(r *loadgen.Result) float64 { return r.ServerSystemShare }), 100*median(ms, t.Name, n, lossOf))
		}
		ratio := func(a, b string) string {
			if vals[b] == 0 {
				return "–"
			}
			return fmt.Sprintf("%.2f×", vals[a]/vals[b])
		}
		fmt.Fprintf(w, " %s | %s | %s | %s | %s |\n", ratio(oursBridge.Name, rawBridge.Name), ratio(oursBridge.Name, rawBridgeReports.Name), ratio(oursEcho.Name, rawEcho.Name),
			ratio(oursEcho.Name, janusEcho.Name), ratio(oursBridge.Name, janusEcho.Name))
	}
	fmt.Fprintln(w)
}
