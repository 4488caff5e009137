// Package voip is the media plane: per-call pion WebRTC engines, sessions
// around one PeerConnection with one ordered operation queue, call legs,
// sources and sinks, and RTP forwarding between legs without transcoding.
//
// It knows nothing of Matrix: it must never import maunium.net/go/mautrix or
// voipbot's matrix, bridge or store packages (see architecture_test.go).
package voip
