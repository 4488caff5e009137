package livekit

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// A VP8 frame cut into packets comes back whole; encrypted whole, it is
// decrypted with the sender's key, the VP8 header left clear; a frame
// with a packet missing is dropped.
func TestVP8FramesAndE2EE(t *testing.T) {
	keyframe := append([]byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0xb0, 0x00, 0x90, 0x00}, bytes.Repeat([]byte{7}, 3000)...)
	var enc Encryptor
	require.NoError(t, enc.SetKey(2, []byte("0123456789abcdef")))
	ring := NewKeyRing()
	require.NoError(t, ring.SetKey("a", 2, []byte("0123456789abcdef")))
	sealed, err := enc.EncryptVP8(nil, keyframe)
	require.NoError(t, err)
	require.Equal(t, keyframe[:10], sealed[:10], "a keyframe's 10-byte header stays clear")

	seq := uint16(65530)
	pkts := vp8Packets(sealed, rtp.Header{Version: 2, Timestamp: 9000, SSRC: 5}, &seq)
	require.Greater(t, len(pkts), 2)
	require.True(t, pkts[len(pkts)-1].Marker)
	var frames vp8Frames
	var whole []byte
	for _, p := range pkts {
		whole = frames.add(&p.Header, p.Payload)
	}
	require.Equal(t, sealed, whole)
	plain, err := ring.DecryptVP8(nil, whole, "a")
	require.NoError(t, err)
	require.Equal(t, keyframe, plain)

	seq = 1
	pkts = vp8Packets(sealed, rtp.Header{Version: 2, Timestamp: 12000, SSRC: 5}, &seq)
	var got []byte
	for i, p := range pkts {
		if i == 1 {
			continue // lost
		}
		got = frames.add(&p.Header, p.Payload)
	}
	require.Nil(t, got, "a frame with a packet missing is dropped")

	delta := append([]byte{0x31, 0x00, 0x00}, bytes.Repeat([]byte{9}, 200)...)
	sealed, err = enc.EncryptVP8(nil, delta)
	require.NoError(t, err)
	require.Equal(t, delta[:3], sealed[:3], "an interframe's 3-byte header stays clear")
	plain, err = ring.DecryptVP8(nil, sealed, "a")
	require.NoError(t, err)
	require.Equal(t, delta, plain)
}
