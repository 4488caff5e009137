package main

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/voipbot/voipbot"
	"github.com/voipbot/voipbot/bridge"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/store"
	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/web"
)

// shutdownGrace is how long event handlers running at shutdown may take to
// finish their work.
const shutdownGrace = 10 * time.Second

// run wires the parts together and runs them until ctx ends or one fails.
// ready, if not nil, is called once the bot is logged in and its bridge
// started, as its sync loop begins.
func run(ctx context.Context, cfg *voipbot.Config, build bridge.BuildInfo, log zerolog.Logger, ready func()) error {
	log.Info().Str("version", build.Version).Str("commit", build.Commit).Str("mode", string(cfg.Matrix.Mode)).Msg("Starting voipbot")
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(
		// go_gc_heap_live_bytes: the heap the last GC found live, which is
		// what the bot keeps (heap_inuse also counts garbage not yet swept).
		collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)}),
	), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	st, err := store.Open(ctx, cfg.Database, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Err(err).Msg("Failed to close database")
		}
	}()

	media, err := voip.NewEngine(cfg.Media, log.With().Str("component", "media").Logger())
	if err != nil {
		return fmt.Errorf("starting the media engine: %w", err)
	}
	defer func() {
		if err := media.Close(); err != nil {
			log.Err(err).Msg("Failed to close the media engine")
		}
	}()
	// The first call's answer waits for as many host candidates as this
	// machine yields: learn the count now rather than in that call.
	if n, err := media.ProbeHostCandidates(ctx); err != nil {
		log.Warn().Err(err).Msg("Probing this machine's host candidates failed; the first call learns them")
	} else {
		log.Debug().Int("host_candidates", n).Msg("Host candidates probed")
	}
	log.Info().Str("media", media.Describe()).Msg("Media engine ready")

	mx, err := matrix.New(cfg.Matrix, st, reg, log)
	if err != nil {
		return err
	}
	bot := bridge.New(ctx, cfg.Bridge, mx, st, media, build, reg, log.With().Str("component", "bridge").Logger())

	srv := web.New(cfg.HTTP, reg, log.With().Str("component", "http").Logger())
	srv.AddCheck("matrix", mx.Health().Ready)
	if h := mx.AppserviceHandler(); h != nil {
		srv.Handle("/_matrix/app/", h)
	}
	bot.Mount(srv.Handle) // call links' pages (with guests.public_url)
	if err = srv.Listen(); err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx) })
	g.Go(func() error {
		if err := mx.Start(gctx); err != nil {
			if gctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("starting Matrix client: %w", err)
		}
		if err := bot.Start(gctx, cfg.Jami); err != nil {
			return err
		}
		if ready != nil {
			ready()
		}
		return mx.Run(gctx)
	})
	err = g.Wait()
	// Calls are hung up while the client can still send; then the
	// handlers get their grace.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	bot.Stop(stopCtx)
	cancel()
	mx.Stop(shutdownGrace)
	return err
}
