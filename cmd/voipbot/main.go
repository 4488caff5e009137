// Command voipbot runs the voipbot Matrix VoIP bridge.
//
// Jami's (GnuTLS-made) certificates often have negative serial numbers,
// which crypto/x509 refuses since Go 1.23 unless told otherwise:
//
//go:debug x509negativeserial=1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"go.mau.fi/util/exzerolog"

	"github.com/voipbot/voipbot"
	"github.com/voipbot/voipbot/bridge"
	"github.com/voipbot/voipbot/matrix"
)

// Set at build time with -ldflags "-X main.Tag=… -X main.Commit=… -X main.BuildTime=…".
var (
	Tag       = "dev"
	Commit    = "unknown"
	BuildTime = "unknown"
)

func main() {
	os.Exit(cli(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// cli runs voipbot with the given arguments and returns the exit code.
func cli(args, environ []string, stdout, stderr *os.File) int {
	flags := flag.NewFlagSet("voipbot", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("c", "config.yaml", "configuration file")
	writeExample := flags.Bool("e", false, "write the example configuration to the path given after the flags (default: the -c path) and exit")
	genRegistration := flags.Bool("g", false, "write the appservice registration file (appservice.registration) and exit")
	showVersion := flags.Bool("v", false, "print the version and exit")
	healthcheck := flags.Bool("healthcheck", false, "ask the running bot's /health (at http.listen) and exit 0 if it is ready (for container health checks)")
	flags.Usage = func() {
		_, _ = fmt.Fprintf(stderr, "Usage: voipbot [-c config.yaml] [-e [path] | -g | -healthcheck | -v]\n       voipbot dht [flags] <command> (voipbot dht -h for the DHT commands)\n"+
			"       voipbot demo [-dir DIR] [-dendrite PATH] [-http ADDR] (a local homeserver and the bot; voipbot demo -h)\n\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return 2
	}
	build := bridge.BuildInfo{Version: Tag, Commit: Commit, BuildTime: BuildTime}

	switch {
	case *showVersion:
		_, _ = fmt.Fprintf(stdout, "voipbot %s (commit %s, built %s)\n", build.Version, build.Commit, build.BuildTime)
		return 0
	case *writeExample:
		path := *configPath
		if flags.NArg() > 0 {
			path = flags.Arg(0)
		}
		if err := voipbot.WriteExample(path); err != nil {
			_, _ = fmt.Fprintln(stderr, err)
			return 1
		}
		_, _ = fmt.Fprintf(stdout, "Wrote the example configuration to %s.\n", path)
		return 0
	case flags.NArg() > 0 && flags.Arg(0) == "dht":
		return dhtCLI(flags.Args()[1:], configuredDHT(*configPath, environ), stdout, stderr)
	case flags.NArg() > 0 && flags.Arg(0) == "demo":
		return demoCLI(flags.Args()[1:], environ, build, stdout, stderr)
	case flags.NArg() > 0:
		flags.Usage()
		return 2
	}

	wroteExample := false
	if _, err := os.Stat(*configPath); errors.Is(err, os.ErrNotExist) {
		if err = voipbot.WriteExample(*configPath); err != nil {
			_, _ = fmt.Fprintln(stderr, err)
			return 1
		}
		wroteExample = true
		_, _ = fmt.Fprintf(stderr, "No configuration found, so voipbot wrote the example to %s.\n", *configPath)
	}
	cfg, err := voipbot.Load(*configPath, environ)
	if err != nil {
		if wroteExample {
			_, _ = fmt.Fprintf(stderr, "Fill in these keys there (or set them as VOIPBOT_ environment variables), "+
				"and bot.password for the first login, then start voipbot again:\n%v\n"+
				"To try the bot first with a homeserver of its own on this machine, run `voipbot demo`.\n", err)
		} else {
			_, _ = fmt.Fprintf(stderr, "Invalid configuration in %s:\n%v\n", *configPath, err)
		}
		return 1
	}
	if *genRegistration {
		return registration(cfg, stdout, stderr)
	}
	if *healthcheck {
		return checkHealth(cfg.HTTP.Listen, stdout, stderr)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runBot(ctx, cfg, build, stderr, nil)
}

// runBot runs the bot of cfg until ctx ends, logging to stderr, and returns
// the exit code; ready is run's. `voipbot -c` and `voipbot demo` both run
// the bot this way.
func runBot(ctx context.Context, cfg *voipbot.Config, build bridge.BuildInfo, stderr *os.File, ready func()) int {
	log := newLogger(cfg.Logging, stderr)
	exzerolog.SetupDefaults(&log)
	if err := run(ctx, cfg, build, log, ready); err != nil {
		log.Error().Err(err).Msg("voipbot stopped with an error")
		return 1
	}
	log.Info().Msg("voipbot stopped")
	return 0
}

func registration(cfg *voipbot.Config, stdout, stderr io.Writer) int {
	asCfg := cfg.Matrix
	asCfg.Mode = matrix.ModeAppservice
	if err := asCfg.Validate(); err != nil {
		_, _ = fmt.Fprintf(stderr, "Invalid configuration for appservice mode:\n%v\n", err)
		return 1
	}
	reg, err := matrix.GenerateRegistration(asCfg)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, err)
		return 1
	}
	_, _ = fmt.Fprintf(stdout, "Wrote the appservice registration to %s (appservice %q, bot %s, homeserver reaches the bot at %s).\n"+
		"Add that file to the homeserver (Synapse: app_service_config_files; Dendrite: app_service_api.config_files), restart it,\n"+
		"and start voipbot with mode: appservice.\n", asCfg.Appservice.Registration, reg.ID, asCfg.Bot.UserID, reg.URL)
	if cfg.Matrix.Mode != matrix.ModeAppservice {
		_, _ = fmt.Fprintf(stdout, "Note: mode is %q in the configuration; set it to appservice.\n", cfg.Matrix.Mode)
	}
	return 0
}

// newLogger writes human-readable lines to a terminal and JSON otherwise.
func newLogger(cfg voipbot.LoggingConfig, out *os.File) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	var w io.Writer = out
	if cfg.Format == "pretty" || (cfg.Format == "auto" && isatty.IsTerminal(out.Fd())) {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: time.DateTime}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
