package media

import (
	"os"
	"testing"
)

// FuzzParse: no description, however broken, panics the parser or the
// answer planner (what Answer runs before any socket is touched).
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/jamid-offer.sdp"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRemote(b)
		if err != nil {
			return
		}
		planAnswer(r, Options{Audio: true, Video: true})
	})
}
