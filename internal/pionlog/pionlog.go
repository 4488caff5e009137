// Package pionlog routes pion's logs to zerolog.
package pionlog

import (
	"fmt"

	"github.com/pion/logging"
	"github.com/rs/zerolog"
)

// Factory is a pion logging.LoggerFactory writing to a zerolog logger, one
// "scope" field per pion component (ice, dtls, sctp, …). pion logs a lot at
// debug and trace; their levels are mapped one to one.
type Factory struct {
	Log zerolog.Logger
}

var _ logging.LoggerFactory = Factory{}

// NewLogger implements logging.LoggerFactory.
func (f Factory) NewLogger(scope string) logging.LeveledLogger {
	return logger{log: f.Log.With().Str("pion", scope).Logger()}
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
