//go:build !opus

package media

import (
	"bytes"
	"embed"
	"fmt"
	"slices"
)

// LiveOpus says whether this build encodes Opus itself (-tags opus).
const LiveOpus = false

// tones holds one second of each embedded tone as Opus packets (20 ms, mono,
// 32 kb/s), each a 2-byte big-endian length and the packet, written by
//
//	go run -tags opus ./voip/media/internal/gentone -o voip/media/tones
//
//go:embed tones/*.opus
var tones embed.FS

// EmbeddedToneFrequencies are the tones the pure-Go build can play in Opus.
var EmbeddedToneFrequencies = []float64{330, 440, 880}

// opusTone loops the embedded one-second tone of freq (a whole number of
// cycles per second, so the loop is seamless).
func opusTone(_ *sine, freq float64, _ int) (frame func() ([]byte, error), stop func() error, err error) {
	if !slices.Contains(EmbeddedToneFrequencies, freq) {
		return nil, nil, fmt.Errorf("no %.0f Hz Opus tone in this build: it has %v Hz (build with -tags opus, and cgo, for any)", freq, EmbeddedToneFrequencies)
	}
	data, err := tones.ReadFile(fmt.Sprintf("tones/%.0f.opus", freq))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the embedded tone: %w", err)
	}
	packets, err := splitLengthPrefixed(data)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded %.0f Hz tone: %w", freq, err)
	}
	i := 0
	return func() ([]byte, error) {
		p := packets[i]
		i = (i + 1) % len(packets)
		return p, nil
	}, nil, nil
}

func splitLengthPrefixed(data []byte) ([][]byte, error) {
	var out [][]byte
	for r := bytes.NewReader(data); r.Len() > 0; {
		var hdr [2]byte
		if _, err := r.Read(hdr[:]); err != nil {
			return nil, err
		}
		n := int(hdr[0])<<8 | int(hdr[1])
		if n == 0 || n > r.Len() {
			return nil, fmt.Errorf("packet length %d with %d bytes left", n, r.Len())
		}
		p := make([]byte, n)
		_, _ = r.Read(p)
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no packets")
	}
	return out, nil
}
