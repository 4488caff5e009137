package voip

import (
	"time"

	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/webrtc/v4"
)

// TrackStats describes one track of a leg.
type TrackStats struct {
	ID    string
	Kind  webrtc.RTPCodecType
	Codec string
	SSRC  uint32
	// Packets and Bytes: read from an inbound track, or written to an
	// outbound one, by the forwarder.
	Packets, Bytes uint64
	// Inbound: loss and jitter as RFC 3550 counts them over the packets the
	// forwarder read. Outbound: loss, jitter and round-trip time from the
	// peer's reception reports.
	Lost   int64
	Jitter time.Duration
	RTT    time.Duration
	// Inbound: packets that came twice (dropped, not forwarded), and
	// lost packets asked for again (NACK), counting repeats.
	Duplicates, Requested uint64
	// With pion's statistics interceptor only (Interceptors.PionStats):
	// feedback received (outbound) or sent (inbound).
	NACKs, PLIs, FIRs uint32
	// Outbound: how many reception reports the peer sent about the
	// stream, and the (extended) highest sequence number the last one
	// says it received: evidence that the peer gets, and decrypts, what
	// we send.
	RemoteReports    uint64
	RemoteHighestSeq uint32
}

// LegStats describes a leg's tracks.
type LegStats struct {
	Leg      string
	Inbound  []TrackStats
	Outbound []TrackStats
}

// Stats reports the session's tracks.
func (s *Session) Stats() LegStats {
	out := LegStats{Leg: s.id}
	pion := func(uint32) *stats.Stats { return nil }
	if g := s.stats.Load(); g != nil {
		pion = (*g).Get
	}
	s.mu.Lock()
	inbound, outbound := s.inbound, s.outbound
	s.mu.Unlock()
	for _, t := range inbound {
		ts := inboundStats(t, t.ssrc)
		if st := pion(t.ssrc); st != nil {
			ts.NACKs, ts.PLIs, ts.FIRs = st.InboundRTPStreamStats.NACKCount, st.InboundRTPStreamStats.PLICount, st.InboundRTPStreamStats.FIRCount
		}
		out.Inbound = append(out.Inbound, ts)
	}
	for _, t := range outbound {
		ts := outboundStats(t)
		if st := pion(ts.SSRC); st != nil {
			ts.NACKs, ts.PLIs, ts.FIRs = st.OutboundRTPStreamStats.NACKCount, st.OutboundRTPStreamStats.PLICount, st.OutboundRTPStreamStats.FIRCount
		}
		out.Outbound = append(out.Outbound, ts)
	}
	return out
}

// inboundStats is what the track's reader counted; ssrc is its sender's.
func inboundStats(t *InboundTrack, ssrc uint32) TrackStats {
	ts := TrackStats{
		ID: t.ID, Kind: t.Kind, Codec: t.Codec.MimeType, SSRC: ssrc,
		Packets: t.packets.Load(), Bytes: t.bytes.Load(),
		Lost: t.lost(), Jitter: t.jitter(),
		Duplicates: t.duplicates.Load(),
	}
	if t.nack != nil {
		ts.Requested = t.nack.asked.Load()
	}
	return ts
}

// outboundStats is what the track sent and what the receiver reported.
func outboundStats(t *OutboundTrack) TrackStats {
	ts := TrackStats{
		ID: t.id, Kind: t.Kind(), Codec: t.codec.MimeType, SSRC: t.ssrcNow(),
		Packets: t.packets.Load(), Bytes: t.bytes.Load(),
		Lost: int64(t.remote.totalLost.Load()), RTT: time.Duration(t.remote.rttNanos.Load()),
		RemoteReports: t.remote.reports.Load(), RemoteHighestSeq: t.remote.highestSeq.Load(),
	}
	if t.codec.ClockRate != 0 {
		ts.Jitter = time.Duration(t.remote.jitter.Load()) * time.Second / time.Duration(t.codec.ClockRate)
	}
	return ts
}
