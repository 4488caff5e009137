package livekit

import (
	"bytes"
	"crypto/aes"
	"testing"

	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/stretchr/testify/require"
)

// Our framing against server-sdk-go's, both ways, with a key derived as
// livekit-client derives a per-participant key.
func TestOpusFramesInteroperate(t *testing.T) {
	raw := []byte("0123456789abcdef")
	key, err := DeriveFrameKey(raw)
	require.NoError(t, err)
	block, err := aes.NewCipher(key)
	require.NoError(t, err)
	frame := append([]byte{0x78}, bytes.Repeat([]byte{0xab}, 80)...)

	ring := NewKeyRing()
	require.NoError(t, ring.SetKey("@alice:localhost:A", 4, raw))
	theirs, err := lksdk.EncryptGCMAudioSampleCustomCipher(frame, 4, block)
	require.NoError(t, err)
	plain, err := ring.DecryptOpus(nil, theirs, "@alice:localhost:A")
	require.NoError(t, err)
	require.Equal(t, frame, plain)

	var enc Encryptor
	require.NoError(t, enc.SetKey(4, raw))
	ours, err := enc.EncryptOpus(nil, frame)
	require.NoError(t, err)
	require.Equal(t, frame[0], ours[0], "the header stays clear")
	require.Equal(t, []byte{12, 4}, ours[len(ours)-2:])
	back, err := lksdk.DecryptGCMAudioSampleCustomCipher(ours, nil, block)
	require.NoError(t, err)
	require.Equal(t, frame, back)
}

func TestDecryptRefusesWhatItCannotRead(t *testing.T) {
	ring := NewKeyRing()
	require.NoError(t, ring.SetKey("a", 0, []byte("0123456789abcdef")))
	var enc Encryptor
	require.NoError(t, enc.SetKey(0, []byte("fedcba9876543210")))
	wrongKey, err := enc.EncryptOpus(nil, []byte{1, 2, 3, 4})
	require.NoError(t, err)

	for name, frame := range map[string][]byte{
		"empty": nil, "one byte": {1}, "short": make([]byte, 20),
		"wrong IV length": append(make([]byte, 40), 11, 0),
	} {
		_, err := ring.DecryptOpus(nil, frame, "a")
		require.ErrorIs(t, err, errFrame, name)
	}
	_, err = ring.DecryptOpus(nil, wrongKey, "a")
	require.ErrorContains(t, err, "message authentication failed")
	_, err = ring.DecryptOpus(nil, wrongKey, "b")
	require.ErrorIs(t, err, ErrNoKey)
	wrongKey[len(wrongKey)-1] = 9
	_, err = ring.DecryptOpus(nil, wrongKey, "a")
	require.ErrorIs(t, err, ErrNoKey, "a key index nobody set")

	var none Encryptor
	_, err = none.EncryptOpus(nil, []byte{1})
	require.ErrorIs(t, err, ErrNoKey)
}

// BenchmarkFrameE2EE: what media encryption costs per Opus frame (an
// 80-byte payload, 20 ms of voice at ~32 kbit/s): the bot's encryption of
// what it publishes, and the decryption of what a member sends; against
// the copy into a new packet that forwarding does anyway.
func BenchmarkFrameE2EE(b *testing.B) {
	raw := []byte("0123456789abcdef")
	frame := append([]byte{0x78}, bytes.Repeat([]byte{0xab}, 79)...)
	var enc Encryptor
	require.NoError(b, enc.SetKey(1, raw))
	ring := NewKeyRing()
	require.NoError(b, ring.SetKey("m", 1, raw))
	sealed, err := enc.EncryptOpus(nil, frame)
	require.NoError(b, err)
	b.Run("copy-baseline", func(b *testing.B) {
		buf := make([]byte, 0, 256)
		for range b.N {
			buf = append(buf[:0], frame...)
		}
	})
	b.Run("encrypt", func(b *testing.B) {
		buf := make([]byte, 0, 256)
		b.ReportAllocs()
		for range b.N {
			if buf, err = enc.EncryptOpus(buf, frame); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decrypt", func(b *testing.B) {
		buf := make([]byte, 0, 256)
		b.ReportAllocs()
		for range b.N {
			if buf, err = ring.DecryptOpus(buf, sealed, "m"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A shared passphrase's key (Element Call's ?password=), derived as
// server-sdk-go derives it, both ways, whoever the sender.
func TestSharedKeyFrames(t *testing.T) {
	key, err := SharedKey("s3cretpass")
	require.NoError(t, err)
	theirKey, err := lksdk.DeriveKeyFromString("s3cretpass")
	require.NoError(t, err)
	require.Equal(t, theirKey, key)
	frame := append([]byte{0x78}, bytes.Repeat([]byte{0xcd}, 60)...)

	ring := NewKeyRing()
	require.NoError(t, ring.SetShared(key))
	theirs, err := lksdk.EncryptGCMAudioSample(frame, key, 0)
	require.NoError(t, err)
	plain, err := ring.DecryptOpus(nil, theirs, "@anyone:hs:DEV")
	require.NoError(t, err)
	require.Equal(t, frame, plain)

	var enc Encryptor
	require.NoError(t, enc.SetShared(key))
	ours, err := enc.EncryptOpus(nil, frame)
	require.NoError(t, err)
	back, err := lksdk.DecryptGCMAudioSample(ours, key, nil)
	require.NoError(t, err)
	require.Equal(t, frame, back)
}
