//go:build !opus

package media

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEmbeddedTonesOnly(t *testing.T) {
	_, err := Tone("tone", opusCodec, 500)
	require.ErrorContains(t, err, "no 500 Hz Opus tone in this build")
	for _, f := range EmbeddedToneFrequencies {
		leg, err := Tone("tone", opusCodec, f)
		require.NoError(t, err)
		require.NoError(t, leg.Close())
	}
}
