//go:build tools

// Package tools pins livekit-server, the SFU of the Element Call
// (MatrixRTC) test bed, in a module of its own: its dependencies (newer
// livekit/protocol, pion and others) stay out of the bot's go.mod. Build it
// with `make tools`, or let testbed.LiveKitBinary build it on first use.
package tools

import _ "github.com/livekit/livekit-server/cmd/server"
