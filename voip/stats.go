package voip

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// TrackStats describes one track of a leg.
type TrackStats struct {
	ID    string
	Kind  webrtc.RTPCodecType
	Codec string
	SSRC  uint32
	// Packets and Bytes: read from an inbound track, or written to an
	// outbound one, by the bridge.
	Packets, Bytes uint64
	// From the receiving side's RTP (inbound) or the peer's receiver reports
	// (outbound); zero when the session runs without the stats interceptor.
	Lost     int64
	Jitter   time.Duration
	NACKs    uint32
	PLIs     uint32
	FIRs     uint32
	RTT      time.Duration
	Received uint64 // inbound: packets the network delivered
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
	var getter func(uint32) (TrackStats, bool)
	if g := s.stats.Load(); g != nil {
		getter = func(ssrc uint32) (TrackStats, bool) {
			st := (*g).Get(ssrc)
			if st == nil {
				return TrackStats{}, false
			}
			return TrackStats{
				Lost:     max(st.InboundRTPStreamStats.PacketsLost, st.RemoteInboundRTPStreamStats.PacketsLost),
				Received: st.InboundRTPStreamStats.PacketsReceived,
				NACKs:    st.InboundRTPStreamStats.NACKCount + st.OutboundRTPStreamStats.NACKCount,
				PLIs:     st.InboundRTPStreamStats.PLICount + st.OutboundRTPStreamStats.PLICount,
				FIRs:     st.InboundRTPStreamStats.FIRCount + st.OutboundRTPStreamStats.FIRCount,
				Jitter:   time.Duration(max(st.InboundRTPStreamStats.Jitter, st.RemoteInboundRTPStreamStats.Jitter) * float64(time.Second)),
				RTT:      st.RemoteInboundRTPStreamStats.RoundTripTime,
			}, true
		}
	}
	s.mu.Lock()
	inbound, outbound := s.inbound, s.outbound
	s.mu.Unlock()
	for _, t := range inbound {
		ts := TrackStats{}
		if getter != nil {
			ts, _ = getter(t.ssrc)
		}
		ts.ID, ts.Kind, ts.Codec, ts.SSRC = t.ID, t.Kind, t.Codec.MimeType, t.ssrc
		ts.Packets, ts.Bytes = t.packets.Load(), t.bytes.Load()
		if getter != nil && ts.Jitter != 0 && t.Codec.ClockRate != 0 {
			// The interceptor reports jitter in RTP timestamp units.
			ts.Jitter = ts.Jitter / time.Duration(t.Codec.ClockRate)
		}
		out.Inbound = append(out.Inbound, ts)
	}
	for _, t := range outbound {
		t.mu.Lock()
		ssrc := t.ssrc
		t.mu.Unlock()
		ts := TrackStats{}
		if getter != nil {
			ts, _ = getter(ssrc)
		}
		ts.ID, ts.Kind, ts.Codec, ts.SSRC = t.id, t.Kind(), t.codec.MimeType, ssrc
		ts.Packets, ts.Bytes = t.packets.Load(), t.bytes.Load()
		if ts.Jitter != 0 && t.codec.ClockRate != 0 {
			ts.Jitter = ts.Jitter / time.Duration(t.codec.ClockRate)
		}
		out.Outbound = append(out.Outbound, ts)
	}
	return out
}
