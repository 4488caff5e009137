package sip

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseDTMFRelay(t *testing.T) {
	for _, c := range []struct {
		body  string
		digit rune
		d     time.Duration
		ok    bool
	}{
		{"Signal=5\r\nDuration=160\r\n", '5', 160 * time.Millisecond, true}, // jamid's
		{"Signal=#\r\nDuration=250\r\n", '#', 250 * time.Millisecond, true},
		{"signal = a\r\n", 'A', 0, true},
		{"Signal=16\r\nDuration=160\r\n", 0, 160 * time.Millisecond, false}, // hook flash
		{"Signal=x\r\n", 0, 0, false},
		{"Duration=99999999999999999999\r\nSignal=1", '1', 0, true},
		{"", 0, 0, false},
	} {
		digit, d, ok := ParseDTMFRelay([]byte(c.body))
		require.Equal(t, c.ok, ok, "%q", c.body)
		require.Equal(t, c.digit, digit, "%q", c.body)
		require.Equal(t, c.d, d, "%q", c.body)
	}
}
