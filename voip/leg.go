package voip

import (
	"github.com/pion/webrtc/v4"
)

// Leg is one media endpoint of a forwarder: a WebRTC session towards a
// peer, a Jami SRTP session, a source of the bot's own (tone, file,
// silence), or an echo.
//
// # One reader per track
//
// Each inbound track of a leg has exactly one reader: the forwarder the leg
// is in, which reads its packets one at a time on one goroutine (or, for a
// track fed in process such as an echo's, is handed them on the writer's).
// What a receiver knows about a stream comes from that reader:
//
//   - Stats: the packets and bytes received, and loss, jitter and
//     duplicates as RFC 3550 counts them (the extended highest sequence
//     number, the window of sequence numbers seen), are updated by the
//     reader as it reads, without locks, and published for Stats and for
//     the receiver reports the engine sends for each session. A track that
//     nobody reads has no statistics and its reports show nothing received.
//   - NACK: a gap the reader sees in a video stream from a session is
//     handed to the stream's NACK tracker, which asks the sender for the
//     missing packets (an RTCP NACK, written by the session) and learns from
//     the reader when one arrives, repaired or late. The bot's own NACKs
//     therefore depend on the track being read.
//
// RTCP is not the reader's: a session reads the RTCP of every receiver and
// every sender itself, on goroutines of its own, for as long as it lives.
// From a receiver it takes the peer's sender reports (their timing goes
// into our receiver reports). From a sender it takes the peer's reception
// reports (loss, jitter and round-trip time of what we send), keyframe
// requests (passed, through the outbound track, to whichever inbound track
// the forwarder made its source), and NACKs, which pion's NACK responder
// answers from the packets it has sent (sessions that may carry video only);
// pion's interceptors act on RTCP only when it is read, which is why every
// sender's RTCP is read even when nothing in it interests the bot.
//
// Why one: the receive statistics and NACK state of a stream are a running
// account of its sequence numbers, kept by one goroutine so that they need
// no lock on the hot path, and a network track hands each packet to only
// one caller of Read. Two readers would each get part of the stream: each
// would count the other's packets as lost and ask for them again, and each
// forwarder would send half of the media. So a leg is in at most one
// forwarder at a time (Forwarder.Add refuses a second with ErrLegInUse),
// one forwarder carries a conversation however many legs it has, and a leg
// moved to another forwarder is read by the new one only once the old
// reader has stopped.
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
