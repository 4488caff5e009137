package voip

import (
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

func TestPacketizedDropsWhatWaitedTooLong(t *testing.T) {
	leakCheck(t)
	p := NewPacketized(webrtc.RTPCodecTypeAudio, AudioCodecs[0], "tone", "src")
	defer p.Close()
	var clock atomic.Int64 // fake nanoseconds
	p.now = func() time.Time { return time.Unix(0, clock.Load()) }

	// Made while nobody read: stale by the time someone does.
	require.NoError(t, p.Write([]byte{1}, false, 960))
	require.NoError(t, p.Write([]byte{2}, false, 960))
	clock.Add(int64(staleAfter + time.Millisecond))
	require.NoError(t, p.Write([]byte{3}, false, 960))

	buf := make([]byte, 100)
	n, err := p.Track().Read(buf)
	require.NoError(t, err)
	var pkt rtp.Packet
	require.NoError(t, pkt.Unmarshal(buf[:n]))
	require.Equal(t, []byte{3}, pkt.Payload, "the fresh packet only")
	require.EqualValues(t, 3, pkt.SequenceNumber, "numbered as sent: the receiver sees the gap")

	p.Close()
	_, err = p.Track().Read(buf)
	require.ErrorIs(t, err, io.EOF)
	require.Error(t, p.Write([]byte{4}, false, 960))
}
