// Package pionlog routes pion's logs to zerolog.
package pionlog

import (
	"fmt"
	"sync"

	"github.com/pion/logging"
	"github.com/rs/zerolog"
)

// Factory is a pion logging.LoggerFactory writing to a zerolog logger, one
// "pion" field per component (ice, dtls, srtp, …). pion asks for a dozen
// loggers per PeerConnection; they are made once per component and shared,
// as they differ only by that field. pion's levels map one to one.
type Factory struct {
	Log zerolog.Logger

	loggers *sync.Map // scope -> logger; nil in a zero Factory
}

var _ logging.LoggerFactory = Factory{}

// New makes a factory; use one per logger, shared by all sessions.
func New(log zerolog.Logger) Factory {
	return Factory{Log: log, loggers: &sync.Map{}}
}

// NewLogger implements logging.LoggerFactory.
func (f Factory) NewLogger(scope string) logging.LeveledLogger {
	if f.loggers == nil { // a zero Factory: no cache
		return logger{log: f.Log.With().Str("pion", scope).Logger()}
	}
	if l, ok := f.loggers.Load(scope); ok {
		return l.(logger)
	}
	l, _ := f.loggers.LoadOrStore(scope, logger{log: f.Log.With().Str("pion", scope).Logger()})
	return l.(logger)
}

type logger struct {
	log zerolog.Logger
}

// pion's interface takes printf-style messages; this adapter is the one place
// the project formats a log message.
func (l logger) Trace(msg string)                  { l.log.Trace().Msg(msg) }
func (l logger) Tracef(format string, args ...any) { l.log.Trace().Msg(fmt.Sprintf(format, args...)) }
func (l logger) Debug(msg string)                  { l.log.Debug().Msg(msg) }
func (l logger) Debugf(format string, args ...any) { l.log.Debug().Msg(fmt.Sprintf(format, args...)) }
func (l logger) Info(msg string)                   { l.log.Info().Msg(msg) }
func (l logger) Infof(format string, args ...any)  { l.log.Info().Msg(fmt.Sprintf(format, args...)) }
func (l logger) Warn(msg string)                   { l.log.Warn().Msg(msg) }
func (l logger) Warnf(format string, args ...any)  { l.log.Warn().Msg(fmt.Sprintf(format, args...)) }
func (l logger) Error(msg string)                  { l.log.Error().Msg(msg) }
func (l logger) Errorf(format string, args ...any) { l.log.Error().Msg(fmt.Sprintf(format, args...)) }
