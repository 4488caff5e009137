package media

import (
	"errors"
)

// opusSamples returns the duration of an Opus packet in 48 kHz samples, from
// its TOC byte and frame count (RFC 6716 section 3.1).
func opusSamples(packet []byte) (uint32, error) {
	if len(packet) == 0 {
		return 0, errors.New("an empty Opus packet")
	}
	toc := packet[0]
	config := toc >> 3
	var frame uint32
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = []uint32{480, 960, 1920, 2880}[config&3]
	case config < 16: // hybrid: 10, 20 ms
		frame = []uint32{480, 960}[config&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = []uint32{120, 240, 480, 960}[config&3]
	}
	switch toc & 3 {
	case 0:
		return frame, nil
	case 1, 2:
		return 2 * frame, nil
	default:
		if len(packet) < 2 {
			return 0, errors.New("an Opus packet without its frame count")
		}
		return uint32(packet[1]&0x3f) * frame, nil
	}
}

// opusSilence is one 20 ms Opus frame of silence (CELT, mono), what
// browsers send while muted.
var opusSilence = []byte{0xf8, 0xff, 0xfe}
