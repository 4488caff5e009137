//go:build linux

package jamid

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAnalyse(t *testing.T) {
	x := make([]float64, playbackRate)
	for i := range x {
		x[i] = 0.5*math.Sin(2*math.Pi*660*float64(i)/playbackRate) + 0.05*math.Sin(2*math.Pi*440*float64(i)/playbackRate)
	}
	h := analyse(x, playbackRate)
	require.InDelta(t, 660, h.Hz, 1)
	require.InDelta(t, -9.0, h.DBFS, 0.2, "a sine of amplitude 0.5 is at -9 dBFS RMS")
	require.True(t, math.IsInf(analyse(make([]float64, 4800), playbackRate).DBFS, -1), "digital silence")
}
