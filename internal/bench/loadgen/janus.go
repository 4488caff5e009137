//go:build linux

package loadgen

import (
	"context"

	"github.com/voipbot/voipbot/internal/testbed/janus"
)

// JanusFront signals through Janus's HTTP API to its echotest plugin.
type JanusFront struct {
	Client *janus.Client
}

// Name implements Front.
func (JanusFront) Name() string { return "janus-echo" }

// Call implements Front; Janus's echotest has no pairs.
func (f JanusFront) Call(ctx context.Context, offer, _ string) (string, func(context.Context) error, error) {
	return f.Client.EchoCall(ctx, offer)
}
