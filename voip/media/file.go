package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/voipbot/voipbot/voip"
)

// maxFileSize bounds a file played in a loop: it is held in memory.
const maxFileSize = 64 << 20

// mtu is the payload budget of a video packet.
const mtu = 1200

// PlayFile makes a source leg playing an Ogg/Opus (.ogg, .opus) or IVF
// (VP8, VP9) file in a loop, at the pace of its timestamps.
func PlayFile(id, path string) (*voip.SourceLeg, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening media file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s is over %d MiB; a looped file is held in memory", path, maxFileSize>>20)
	}
	switch {
	case bytes.HasPrefix(data, []byte("OggS")):
		return PlayOgg(id, data)
	case bytes.HasPrefix(data, []byte("DKIF")):
		return PlayIVF(id, data)
	default:
		return nil, fmt.Errorf("%s is neither Ogg nor IVF", path)
	}
}

// PlayOgg plays an Ogg/Opus stream in a loop.
func PlayOgg(id string, data []byte) (*voip.SourceLeg, error) {
	r := newOggPackets(bytes.NewReader(data))
	var packets [][]byte
	var durations []uint32
	for i := 0; ; i++ {
		p, err := r.next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("reading Ogg: %w", err)
		}
		switch {
		case i == 0:
			if !bytes.HasPrefix(p, []byte("OpusHead")) {
				return nil, errors.New("the Ogg stream is not Opus")
			}
			continue
		case i == 1 && bytes.HasPrefix(p, []byte("OpusTags")):
			continue
		}
		d, err := opusSamples(p)
		if err != nil {
			return nil, fmt.Errorf("packet %d of the Opus stream: %w", i, err)
		}
		packets = append(packets, p)
		durations = append(durations, d)
	}
	if len(packets) == 0 {
		return nil, errors.New("the Ogg stream has no audio")
	}
	codec := webrtc.RTPCodecParameters{RTPCodecCapability: voip.AudioCodecs[0].RTPCodecCapability, PayloadType: voip.AudioCodecs[0].PayloadType}
	stream := voip.NewPacketized(webrtc.RTPCodecTypeAudio, codec, id+"-ogg", id)
	return play(id, stream, nil, func(done <-chan struct{}) error {
		p := newPacer()
		var step uint32
		for i := 0; p.wait(time.Duration(durations[i])*time.Second/48000, done); i = (i + 1) % len(packets) {
			if stream.Write(packets[i], false, step) != nil {
				return nil
			}
			step = durations[i]
		}
		return nil
	}), nil
}

// ivfFrame is one frame of an IVF file.
type ivfFrame struct {
	data     []byte
	duration time.Duration // until the next frame, for pacing
	ticks    uint32        // the same in 90 kHz RTP clock ticks, exactly
	keyframe bool
}

// PlayIVF plays an IVF (VP8 or VP9) stream in a loop. A keyframe request
// from a receiver makes it jump to the next keyframe.
func PlayIVF(id string, data []byte) (*voip.SourceLeg, error) {
	// The IVF header (libvpx): "DKIF", version, header size, FourCC, width,
	// height, then the time base as rate (16-19) and scale (20-23): a pts
	// unit lasts scale/rate seconds.
	if len(data) < 32 || string(data[:4]) != "DKIF" {
		return nil, errors.New("not an IVF stream")
	}
	fourCC := string(data[8:12])
	rate, scale := binary.LittleEndian.Uint32(data[16:]), binary.LittleEndian.Uint32(data[20:])
	if rate == 0 || scale == 0 {
		return nil, errors.New("IVF header has a zero time base")
	}
	var codec webrtc.RTPCodecParameters
	var payloader rtp.Payloader
	var isKey func([]byte) bool
	switch fourCC {
	case "VP80":
		codec = voip.VideoCodecs[0]
		payloader = &codecs.VP8Payloader{EnablePictureID: true}
		isKey = func(f []byte) bool { return len(f) > 0 && f[0]&1 == 0 }
	case "VP90":
		codec = voip.VideoCodecs[2]
		payloader = &codecs.VP9Payloader{}
		// Uncompressed header: frame marker, profile, show_existing_frame,
		// frame_type (0: keyframe).
		isKey = func(f []byte) bool { return len(f) > 0 && f[0]&0x0c == 0 }
	default:
		return nil, fmt.Errorf("IVF codec %q is not VP8 or VP9", fourCC)
	}
	setDuration := func(f *ivfFrame, pts uint64) {
		f.duration = time.Duration(pts) * time.Second * time.Duration(scale) / time.Duration(rate)
		f.ticks = uint32(pts * 90000 * uint64(scale) / uint64(rate))
	}
	var frames []ivfFrame
	var lastPTS uint64
	for pos := int(binary.LittleEndian.Uint16(data[6:])); pos < len(data); {
		if pos+12 > len(data) {
			return nil, fmt.Errorf("IVF frame %d: truncated header", len(frames))
		}
		size := int(binary.LittleEndian.Uint32(data[pos:]))
		pts := binary.LittleEndian.Uint64(data[pos+4:])
		pos += 12
		if size > len(data)-pos {
			return nil, fmt.Errorf("IVF frame %d: truncated", len(frames))
		}
		if n := len(frames); n > 0 {
			setDuration(&frames[n-1], pts-lastPTS)
		}
		lastPTS = pts
		frames = append(frames, ivfFrame{data: data[pos : pos+size], keyframe: isKey(data[pos : pos+size])})
		pos += size
	}
	if len(frames) == 0 || !frames[0].keyframe {
		return nil, errors.New("the IVF stream must start with a keyframe")
	}
	if n := len(frames); n > 1 {
		// The last frame lasts as long as the one before it, then the loop restarts.
		frames[n-1].duration, frames[n-1].ticks = frames[n-2].duration, frames[n-2].ticks
	} else {
		frames[0].duration, frames[0].ticks = time.Second/30, 90000/30
	}
	stream := voip.NewPacketized(webrtc.RTPCodecTypeVideo, codec, id+"-ivf", id)
	return play(id, stream, nil, func(done <-chan struct{}) error {
		p := newPacer()
		var step uint32
		for i := 0; p.wait(frames[i].duration, done); i = (i + 1) % len(frames) {
			select {
			case <-stream.KeyframeRequests():
				i = nextKeyframe(frames, i)
			default:
			}
			pkts := payloader.Payload(mtu, frames[i].data)
			for j, pl := range pkts {
				if stream.Write(pl, j == len(pkts)-1, step) != nil {
					return nil
				}
				step = 0
			}
			step = frames[i].ticks
		}
		return nil
	}), nil
}

// nextKeyframe returns the index of the first keyframe at or after i,
// wrapping around (frame 0 is one).
func nextKeyframe(frames []ivfFrame, i int) int {
	for j := range frames {
		if k := (i + j) % len(frames); frames[k].keyframe {
			return k
		}
	}
	return 0
}
