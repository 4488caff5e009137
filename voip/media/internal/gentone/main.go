//go:build opus

// Command gentone encodes the Opus tones the default (pure-Go) build embeds:
// one second of each, as 2-byte big-endian lengths and packets.
//
//	go run -tags opus ./voip/media/internal/gentone -o voip/media/tones
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/voipbot/voipbot/voip/media"
)

func main() {
	out := flag.String("o", "tones", "output directory")
	flag.Parse()
	for _, freq := range []float64{330, 440, 880} {
		if err := write(filepath.Join(*out, fmt.Sprintf("%.0f.opus", freq)), freq); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

func write(path string, freq float64) error {
	packets, err := media.EncodeTone(freq, 50)
	if err != nil {
		return err
	}
	var data []byte
	for _, p := range packets {
		data = append(data, byte(len(p)>>8), byte(len(p)))
		data = append(data, p...)
	}
	return os.WriteFile(path, data, 0o644)
}
