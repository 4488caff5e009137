// Package opuscodec decodes and encodes Opus with libopus (cgo, -tags
// opus): what mixing several speakers into one stream needs. The pure-Go
// build has no Opus codec; there Available is false and the constructors
// return ErrUnavailable, and callers fall back to forwarding one stream.
package opuscodec

import "errors"

// ErrUnavailable: this build has no Opus codec (built without -tags opus).
var ErrUnavailable = errors.New("this build has no Opus codec (built without -tags opus)")

// SampleRate is the rate everything here runs at: Opus's own.
const SampleRate = 48000

// FrameSamples is one 20 ms frame at SampleRate, per channel.
const FrameSamples = SampleRate / 50
