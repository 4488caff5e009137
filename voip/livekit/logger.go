package livekit

import (
	"fmt"

	"github.com/go-logr/logr"
	protologger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/rs/zerolog"
)

// newLogger has server-sdk-go log through the bot's logger, a level lower
// than it says (its info lines are every signalling step of a
// connection; its errors are the SDK's view, which the bot reports itself).
func newLogger(log zerolog.Logger) protologger.Logger {
	return protologger.LogRLogger(logr.New(&sink{log: log.With().Str("component", "livekit-sdk").Logger()}))
}

// sink is a logr.LogSink over zerolog.
type sink struct {
	log zerolog.Logger
}

func (s *sink) Init(logr.RuntimeInfo) {}

func (s *sink) Enabled(level int) bool {
	if level > 0 {
		return s.log.GetLevel() <= zerolog.TraceLevel
	}
	return s.log.GetLevel() <= zerolog.DebugLevel
}

func (s *sink) Info(level int, msg string, kv ...any) {
	e := s.log.Debug()
	if level > 0 {
		e = s.log.Trace()
	}
	withPairs(e, kv).Msg(msg)
}

func (s *sink) Error(err error, msg string, kv ...any) {
	withPairs(s.log.Warn().Err(err), kv).Msg(msg)
}

func (s *sink) WithValues(kv ...any) logr.LogSink {
	c := s.log.With()
	for i := 0; i+1 < len(kv); i += 2 {
		c = c.Interface(fmt.Sprint(kv[i]), kv[i+1])
	}
	return &sink{log: c.Logger()}
}

func (s *sink) WithName(name string) logr.LogSink {
	return &sink{log: s.log.With().Str("logger", name).Logger()}
}

// withPairs adds logr's key/value pairs to an event.
func withPairs(e *zerolog.Event, kv []any) *zerolog.Event {
	for i := 0; i+1 < len(kv); i += 2 {
		e = e.Interface(fmt.Sprint(kv[i]), kv[i+1])
	}
	return e
}

// SetSDKLogger has server-sdk-go's process-wide logger (what it and pion
// log inside its peer connections, which no per-room option reaches) write
// to log instead of the standard library's logger on stderr. Call it once,
// before the first Join.
func SetSDKLogger(log zerolog.Logger) { lksdk.SetLogger(newLogger(log)) }
