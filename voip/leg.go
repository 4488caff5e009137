package voip

import (
	"github.com/pion/webrtc/v4"
)

// Leg is one media endpoint of a bridge: a WebRTC session towards a peer,
// a Jami SRTP session, or a source of the bot's own (tone, file, silence).
type Leg interface {
	// ID names the leg in logs and stats.
	ID() string
	// OnInbound registers fn for each inbound track: called at once for
	// those the leg has, later for new ones. fn must not block.
	OnInbound(fn func(*InboundTrack))
	// Outbound is the track the leg sends of a kind, nil if it sends none.
	Outbound(kind webrtc.RTPCodecType) *OutboundTrack
	// Stats describes the leg's tracks.
	Stats() LegStats
	// Done is closed when the leg has ended (closed, failed, or its source
	// ran out).
	Done() <-chan struct{}
	// Close ends the leg and waits for its goroutines.
	Close() error
}
