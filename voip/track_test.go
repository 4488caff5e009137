package voip

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

func TestReceiveStatsCountLossAndJitter(t *testing.T) {
	tr := &InboundTrack{Codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{ClockRate: 8000}}}
	start := time.Unix(1000, 0)
	// 20 ms packets (160 ticks) arriving exactly on time: no jitter. Packet
	// 65533+5 (across the sequence wrap) is lost.
	seq := uint16(65530)
	for i := range 10 {
		if i == 5 {
			seq++
			continue
		}
		tr.recordArrival(seq, uint32(i*160), start.Add(time.Duration(i)*20*time.Millisecond))
		seq++
	}
	require.EqualValues(t, 1, tr.lost(), "one packet lost across the wrap")
	require.Zero(t, tr.jitter())

	// Every other packet 10 ms late: the jitter estimate converges towards
	// the 10 ms transit difference (RFC 3550's 1/16 gain).
	for i := 10; i < 200; i++ {
		late := time.Duration(i%2) * 10 * time.Millisecond
		tr.recordArrival(seq, uint32(i*160), start.Add(time.Duration(i)*20*time.Millisecond+late))
		seq++
	}
	require.InDelta(t, float64(10*time.Millisecond), float64(tr.jitter()), float64(time.Millisecond))

	// A copy of an old packet is dropped and counts for nothing; the lost
	// packet, arriving late, fills its gap.
	require.False(t, tr.recordArrival(seq-50, 0, start.Add(5*time.Second)))
	require.EqualValues(t, 1, tr.lost())
	require.True(t, tr.recordArrival(65535, 5*160, start.Add(5*time.Second)))
	require.EqualValues(t, 0, tr.lost(), "the late packet makes up for the lost one")
}
