//go:build vpx

// Command genpattern encodes the test pattern the default build embeds:
//
//	go run -tags vpx ./voip/media/internal/genpattern -o voip/media/testpattern.ivf
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/voipbot/voipbot/voip/media"
)

func main() {
	out := flag.String("o", "testpattern.ivf", "output file")
	frames := flag.Int("frames", 60, "frames to encode (15 per second)")
	flag.Parse()
	f, err := os.Create(*out)
	if err == nil {
		err = media.WritePatternIVF(f, *frames)
		if closeErr := f.Close(); err == nil {
			err = closeErr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
