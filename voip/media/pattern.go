//go:build !vpx

package media

import (
	_ "embed"

	"github.com/voipbot/voipbot/voip"
)

// testPatternIVF is a moving test pattern, 320x240 VP8 at 15 fps with a
// keyframe every 2 s, encoded once by `go run -tags vpx
// ./voip/media/internal/genpattern` so that the default build needs no
// libvpx.
//
//go:embed testpattern.ivf
var testPatternIVF []byte

// Pattern makes a source leg sending the moving test pattern (VP8).
func Pattern(id string) (*voip.SourceLeg, error) {
	return PlayIVF(id, testPatternIVF)
}
