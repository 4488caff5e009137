// Command voipbot-bench measures voipbot's media plane against raw pion and
// Janus on this machine.
//
//	voipbot-bench serve -mode bridge|echo|raw-echo|raw-bridge   a bench server (prints READY <url> <pid>)
//	voipbot-bench load -url URL -n 100 [-pairs]                  one load run against a server
//	voipbot-bench suite                                          every benchmark, with baselines, as a report
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/internal/bench/benchserver"
	"github.com/voipbot/voipbot/internal/bench/loadgen"
	"github.com/voipbot/voipbot/voip"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: voipbot-bench serve|load|suite [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "load":
		err = load(ctx, os.Args[2:])
	case "suite":
		err = suite(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "voipbot-bench:", err)
		os.Exit(1)
	}
}

// interceptorProfiles are the interceptor sets a voipbot bench server can
// run with.
var interceptorProfiles = map[string]voip.Interceptors{
	// default: what the engine gives a leg (for an audio-only leg: RTCP
	// reports; NACK and TWCC come with video).
	"default": {},
	// pion-stats: the default plus pion's statistics interceptor, as in
	// pion's default set that the raw baseline uses.
	"pion-stats": {PionStats: true},
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	mode := fs.String("mode", "bridge", "bridge, echo, raw-echo or raw-bridge")
	addr := fs.String("addr", "127.0.0.1:0", "HTTP signalling address")
	profile := fs.String("interceptors", "default", "interceptor set of the voipbot modes: default or pion-stats")
	rawSet := fs.String("raw-interceptors", "default", "raw modes: pion's default interceptors, or only its RTCP reports (reports)")
	mux := fs.Int("udp-mux-port", 0, "voipbot modes: one UDP port for every call (0: a port per call)")
	iface := fs.String("iface", "lo", "the network interface ICE uses")
	memRate := fs.Int("memprofilerate", 0, "runtime.MemProfileRate (1: every allocation, for exact heap profiles)")
	procs := fs.Int("gomaxprocs", 0, "GOMAXPROCS of the server (0: Go's default, the CPUs it may use)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *memRate > 0 {
		runtime.MemProfileRate = *memRate
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	ints, ok := interceptorProfiles[*profile]
	if !ok {
		return fmt.Errorf("unknown interceptor set %q", *profile)
	}
	engine, err := voip.NewEngine(voip.Config{
		Interfaces: []string{*iface}, IncludeLoopback: *iface == "lo", UDPMuxPort: uint16(*mux),
		ICEDisconnected: 5 * time.Second, ICEFailed: 25 * time.Second, ICEKeepalive: 2 * time.Second, RecordDir: os.TempDir(),
	}, zerolog.Nop())
	if err != nil {
		return err
	}
	defer func() { _ = engine.Close() }()
	srv, err := benchserver.New(benchserver.Mode(*mode), engine, voip.SessionOptions{Video: []voip.Codec{}, Interceptors: ints}, *iface, benchserver.RawInterceptors(*rawSet), zerolog.New(os.Stderr).Level(zerolog.WarnLevel))
	if err != nil {
		return err
	}
	return srv.Serve(ctx, *addr, func(a net.Addr) {
		fmt.Printf("READY http://%s %d\n", a, os.Getpid())
	})
}

func load(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	url := fs.String("url", "", "bench server URL")
	n := fs.Int("n", 100, "streams")
	pairs := fs.Bool("pairs", false, "clients in pairs (bridge servers)")
	pid := fs.Int("pid", 0, "server PID for CPU time")
	warmup := fs.Duration("warmup", 3*time.Second, "warmup")
	measure := fs.Duration("measure", 10*time.Second, "measurement window")
	idle := fs.Bool("idle", false, "set the calls up without sending media")
	hold := fs.Duration("hold", 0, "keep the calls up this long after the measurement (to profile the server)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := loadgen.Config{Pairs: *pairs, Streams: *n, Warmup: *warmup, Measure: *measure, ServerPID: *pid, Idle: *idle}
	if *hold > 0 {
		held := make(chan struct{})
		cfg.Hold = held
		cfg.Measured = func() {
			fmt.Fprintf(os.Stderr, "holding the calls for %s\n", *hold)
			time.AfterFunc(*hold, func() { close(held) })
		}
	}
	if *url != "" {
		cfg.Front = loadgen.NewHTTPFront(*url, *url)
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}
