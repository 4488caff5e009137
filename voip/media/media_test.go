package media

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/transport/v4/test"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/voip"
)

var (
	opusCodec = voip.AudioCodecs[0]
	pcmuCodec = voip.AudioCodecs[1]
	pcmaCodec = voip.AudioCodecs[2]
)

// packets reads n packets of the leg's first track.
func packets(t *testing.T, leg voip.Leg, n int) []rtp.Packet {
	t.Helper()
	var track *voip.InboundTrack
	leg.OnInbound(func(tr *voip.InboundTrack) { track = tr })
	require.NotNil(t, track)
	out := make([]rtp.Packet, 0, n)
	buf := make([]byte, 1500)
	for len(out) < n {
		k, err := track.Read(buf)
		require.NoError(t, err)
		var p rtp.Packet
		require.NoError(t, p.Unmarshal(append([]byte(nil), buf[:k]...)))
		out = append(out, p)
	}
	return out
}

func TestOpusToneIsPacedOpus(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	leg, err := Tone("tone", opusCodec, 440)
	require.NoError(t, err)
	t.Cleanup(func() { _ = leg.Close() })
	pkts := packets(t, leg, 10)
	for i, p := range pkts {
		d, err := opusSamples(p.Payload)
		require.NoError(t, err)
		require.EqualValues(t, 960, d, "20 ms frames")
		require.Greater(t, len(p.Payload), 20, "a tone, not the 3-byte silence frame")
		if i > 0 {
			require.Equal(t, pkts[i-1].SequenceNumber+1, p.SequenceNumber)
			require.Equal(t, pkts[i-1].Timestamp+960, p.Timestamp)
		}
	}
	require.NoError(t, leg.Close())
	<-leg.Done()
}

func TestG711ToneAndEncoders(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	// Reference points of G.711.
	require.Equal(t, byte(0xff), linearToMuLaw(0))
	require.Equal(t, byte(0x80), linearToMuLaw(32767))
	require.Equal(t, byte(0x00), linearToMuLaw(-32768))
	require.Equal(t, byte(0xd5), linearToALaw(0))
	require.Equal(t, byte(0xaa), linearToALaw(32767))
	require.Equal(t, byte(0x2a), linearToALaw(-32768))

	for _, c := range []webrtc.RTPCodecParameters{pcmuCodec, pcmaCodec} {
		leg, err := Tone("tone", c, 440)
		require.NoError(t, err)
		t.Cleanup(func() { _ = leg.Close() })
		pkts := packets(t, leg, 3)
		require.Len(t, pkts[0].Payload, 160, "20 ms at 8 kHz")
		distinct := map[byte]bool{}
		for _, b := range pkts[1].Payload {
			distinct[b] = true
		}
		require.Greater(t, len(distinct), 10, "%s: a waveform, not a constant", c.MimeType)
		require.NoError(t, leg.Close())
	}

	_, err := Tone("tone", voip.VideoCodecs[0], 440)
	require.ErrorContains(t, err, "Opus, PCMU or PCMA")
	_, err = Tone("tone", pcmuCodec, 5000)
	require.ErrorContains(t, err, "outside")
}

func TestSilence(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	leg, err := Silence("s", opusCodec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = leg.Close() })
	require.Equal(t, opusSilence, packets(t, leg, 2)[1].Payload)
	require.NoError(t, leg.Close())
	leg, err = Silence("s", pcmuCodec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = leg.Close() })
	require.Equal(t, bytes.Repeat([]byte{0xff}, 160), packets(t, leg, 1)[0].Payload)
	require.NoError(t, leg.Close())
}

func TestPatternLoopsAndJumpsToKeyframeOnRequest(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	leg, err := Pattern("p")
	require.NoError(t, err)
	t.Cleanup(func() { _ = leg.Close() })
	var track *voip.InboundTrack
	leg.OnInbound(func(tr *voip.InboundTrack) { track = tr })
	require.Equal(t, webrtc.RTPCodecTypeVideo, track.Kind)

	frames := 0
	var depacketizer codecs.VP8Packet
	buf := make([]byte, 1500)
	requested := false
	for frames < 5 {
		n, err := track.Read(buf)
		require.NoError(t, err)
		var p rtp.Packet
		require.NoError(t, p.Unmarshal(buf[:n]))
		_, err = depacketizer.Unmarshal(p.Payload)
		require.NoError(t, err)
		if depacketizer.S == 1 && requested {
			// First packet of the frame after the request: a keyframe
			// (the VP8 payload header's P bit is 0).
			require.Zero(t, p.Payload[len(p.Payload)-len(depacketizer.Payload)]&1, "keyframe after the request")
			requested = false
		}
		if p.Marker {
			frames++
			if frames == 2 {
				track.RequestKeyframe()
				requested = true
			}
		}
	}
	require.NoError(t, leg.Close())
}

// TestRecordThenPlayBack records a tone and the pattern through a bridge
// tap, then plays the files back: the Ogg holds the tone's packets, the IVF
// the pattern's frames.
func TestRecordThenPlayBack(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	dir := t.TempDir()
	rec, err := NewRecorder(dir, "call", zerolog.Nop())
	require.NoError(t, err)
	tone, err := Tone("tone", opusCodec, 440)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tone.Close() })
	pattern, err := Pattern("pattern")
	require.NoError(t, err)
	t.Cleanup(func() { _ = pattern.Close() })
	br := voip.NewForwarder("rec", zerolog.Nop())
	seen := &countTap{done: make(chan struct{}), audio: 25, video: 20}
	br.Tap(nil, rec)
	br.Tap(nil, seen)
	require.NoError(t, br.Add(tone))
	require.NoError(t, br.Add(pattern))
	select {
	case <-seen.done:
	case <-time.After(15 * time.Second):
		t.Fatal("media did not flow")
	}
	require.NoError(t, tone.Close())
	require.NoError(t, pattern.Close())
	require.NoError(t, br.Close())

	files := rec.Files()
	require.Len(t, files, 2)
	ogg := filepath.Join(dir, "call-tone-tone-tone.ogg")
	ivf := filepath.Join(dir, "call-pattern-pattern-ivf.ivf")
	require.ElementsMatch(t, []string{ogg, ivf}, files)

	played, err := PlayFile("again", ogg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = played.Close() })
	again := packets(t, played, 20)
	require.Greater(t, len(again[5].Payload), 20, "the recorded tone plays back")
	require.NoError(t, played.Close())

	data, err := os.ReadFile(ivf)
	require.NoError(t, err)
	r, hdr, err := ivfreader.NewWith(bytes.NewReader(data))
	require.NoError(t, err)
	require.Equal(t, "VP80", hdr.FourCC)
	n := 0
	for {
		if _, _, err = r.ParseNextFrame(); err != nil {
			break
		}
		n++
	}
	require.ErrorIs(t, err, io.EOF)
	require.GreaterOrEqual(t, n, 5, "frames of the pattern were recorded")

	video, err := PlayFile("video", ivf)
	require.NoError(t, err)
	t.Cleanup(func() { _ = video.Close() })
	frames := packets(t, video, 12)
	var stamps []uint32
	for _, p := range frames {
		if p.Marker {
			stamps = append(stamps, p.Timestamp)
		}
	}
	require.GreaterOrEqual(t, len(stamps), 2)
	require.EqualValues(t, 90000/15, stamps[1]-stamps[0], "the recording keeps the 15 fps timing")
}

type countTap struct {
	mu           sync.Mutex // one forwarder per track calls Packet
	audio, video int
	done         chan struct{}
	closed       bool
}

func (c *countTap) Packet(t *voip.InboundTrack, h *rtp.Header, _ []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Kind == webrtc.RTPCodecTypeAudio {
		c.audio--
	} else if h.Marker {
		c.video--
	}
	if c.audio <= 0 && c.video <= 0 && !c.closed {
		c.closed = true
		close(c.done)
	}
}

func (c *countTap) Close() error { return nil }

func TestWAVRecording(t *testing.T) {
	dir := t.TempDir()
	rec, err := NewRecorder(dir, "x", zerolog.Nop())
	require.NoError(t, err)
	track := voip.NewPacketized(webrtc.RTPCodecTypeAudio, pcmuCodec, "a", "leg").Track()
	for i := range 3 {
		rec.Packet(track, &rtp.Header{SequenceNumber: uint16(i)}, bytes.Repeat([]byte{0xff}, 160))
	}
	require.NoError(t, rec.Close())
	data, err := os.ReadFile(filepath.Join(dir, "x-leg-a.wav"))
	require.NoError(t, err)
	require.Len(t, data, 46+480)
	require.Equal(t, "RIFF", string(data[:4]))
	require.EqualValues(t, len(data)-8, binary.LittleEndian.Uint32(data[4:]))
	require.EqualValues(t, 7, binary.LittleEndian.Uint16(data[20:]), "mu-law")
	require.EqualValues(t, 8000, binary.LittleEndian.Uint32(data[24:]))
	require.Equal(t, "data", string(data[38:42]))
	require.EqualValues(t, 480, binary.LittleEndian.Uint32(data[42:]))
}

func TestPlayFileRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.bin")
	require.NoError(t, os.WriteFile(bad, []byte("hello"), 0o600))
	_, err := PlayFile("x", bad)
	require.ErrorContains(t, err, "neither Ogg nor IVF")
	_, err = PlayFile("x", filepath.Join(dir, "missing.ogg"))
	require.ErrorContains(t, err, "opening media file")
	_, err = PlayOgg("x", []byte("OggS\x00garbage"))
	require.Error(t, err)
	_, err = PlayIVF("x", []byte("DKIF"))
	require.Error(t, err)
}

func TestOggPacketsSpanningPages(t *testing.T) {
	// One page with two packets, the second continued on the next page.
	page := func(lacing []byte, body []byte) []byte {
		hdr := make([]byte, 27)
		copy(hdr, "OggS")
		hdr[26] = byte(len(lacing))
		return append(append(hdr, lacing...), body...)
	}
	long := bytes.Repeat([]byte{7}, 300)
	stream := append(page([]byte{3, 255}, append([]byte{1, 2, 3}, long[:255]...)), page([]byte{45}, long[255:])...)
	r := newOggPackets(bytes.NewReader(stream))
	p, err := r.next()
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2, 3}, p)
	p, err = r.next()
	require.NoError(t, err)
	require.Equal(t, long, p)
	_, err = r.next()
	require.ErrorIs(t, err, io.EOF)
}

func TestOpusDurations(t *testing.T) {
	for _, tc := range []struct {
		packet []byte
		want   uint32
	}{
		{[]byte{0xf8}, 960},           // CELT 20 ms, one frame
		{[]byte{0x08}, 960},           // SILK NB 20 ms
		{[]byte{0xf9}, 1920},          // two 20 ms frames
		{[]byte{0xfb, 0x03}, 3 * 960}, // code 3: three frames
		{[]byte{0xe0}, 120},           // CELT 2.5 ms
	} {
		got, err := opusSamples(tc.packet)
		require.NoError(t, err)
		require.Equal(t, tc.want, got, "%x", tc.packet)
	}
	_, err := opusSamples(nil)
	require.Error(t, err)
}
