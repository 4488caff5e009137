package voip

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// nackRecorder is a tracker whose NACKs go to a channel.
func nackRecorder(t *testing.T, rtt time.Duration) (*nackTracker, chan []uint16) {
	sent := make(chan []uint16, 16)
	n := newNackTracker(42, func(p *rtcp.TransportLayerNack) error {
		require.EqualValues(t, 42, p.MediaSSRC)
		var seqs []uint16
		for _, pair := range p.Nacks {
			seqs = append(seqs, pair.PacketList()...)
		}
		sent <- seqs
		return nil
	}, func() time.Duration { return rtt }, func() time.Duration { return 0 })
	t.Cleanup(n.close)
	return n, sent
}

func TestNackAsksForAGapInOrderAcrossTheWrap(t *testing.T) {
	leakCheck(t)
	n, sent := nackRecorder(t, time.Hour)
	// Extended numbers 65534..65537 are 65534, 65535, 0, 1 on the wire.
	n.gap(65534, 65537, time.Now())
	require.Equal(t, []uint16{65534, 65535, 0, 1}, <-sent)
	require.EqualValues(t, 4, n.asked.Load())
	require.True(t, n.arrived(65535), "asked for: a retransmission")
	require.False(t, n.arrived(65535), "no longer missing")
	require.False(t, n.arrived(7), "never missing")
}

func TestNackAsksAgainAfterARoundTripAndGivesUp(t *testing.T) {
	leakCheck(t)
	n, sent := nackRecorder(t, time.Millisecond)
	n.gap(10, 10, time.Now())
	for range nackMaxTries {
		require.Equal(t, []uint16{10}, <-sent)
	}
	// Due again, it is forgotten instead: the tracker goes quiet.
	n.mu.Lock()
	if e := n.missing[10]; e != nil {
		e.askedAt = time.Now().Add(-time.Hour)
	}
	n.mu.Unlock()
	n.run()
	require.Zero(t, n.pending.Load())
	require.Empty(t, sent)
	require.EqualValues(t, nackMaxTries, n.asked.Load())
}

func TestNackIgnoresJumpsAndForgetsOldPackets(t *testing.T) {
	leakCheck(t)
	n, _ := nackRecorder(t, time.Hour)
	n.gap(100, 100+nackMaxGap, time.Now())
	require.Zero(t, n.pending.Load(), "a jump is a restart, not loss")

	n.mu.Lock()
	n.missing[5] = &nackEntry{missedAt: time.Now().Add(-2 * nackMaxAge)}
	n.missing[6] = &nackEntry{missedAt: time.Now(), askedAt: time.Now(), tries: 1}
	n.mu.Unlock()
	n.run()
	n.mu.Lock()
	defer n.mu.Unlock()
	require.NotContains(t, n.missing, uint32(5), "too old to matter")
	require.Contains(t, n.missing, uint32(6), "asked for an hour-long round trip ago: not due")
	require.True(t, n.armed, "and the timer waits for it")
}

func TestReceiveWindowDropsDuplicatesAndReportsGaps(t *testing.T) {
	leakCheck(t)
	n, sent := nackRecorder(t, time.Hour)
	tr := &InboundTrack{Kind: webrtc.RTPCodecTypeVideo, Codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{ClockRate: 90000}}, nack: n}
	now := time.Now()
	require.True(t, tr.recordArrival(65534, 0, now))
	require.True(t, tr.recordArrival(1, 0, now), "across the wrap: 65535 and 0 are missing")
	require.Equal(t, []uint16{65535, 0}, <-sent)
	require.True(t, tr.recordArrival(0, 0, now), "a retransmission fills the gap")
	require.False(t, tr.recordArrival(0, 0, now), "and its copy is a duplicate")
	require.False(t, tr.recordArrival(1, 0, now))
	require.EqualValues(t, 2, tr.duplicates.Load())
	require.EqualValues(t, 1, tr.lost(), "65535 is still missing")

	// A jump further than the window forgets what came before it, and a
	// packet from before the window is dropped.
	require.True(t, tr.recordArrival(1+seqWindow+10, 0, now))
	require.True(t, tr.recordArrival(seqWindow+5, 0, now), "inside the new window, never seen")
	require.False(t, tr.recordArrival(3, 0, now), "older than the window")
}
