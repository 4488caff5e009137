package guestlink_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/bridge/guestlink"
)

func TestParseToken(t *testing.T) {
	good := guess(t)
	got, err := guestlink.ParseToken(good)
	require.NoError(t, err)
	require.Equal(t, good, got)
	_, err = guestlink.ParseToken(strings.Repeat("A", 42) + "w")
	require.NoError(t, err, "a last character with its low bits clear")

	for name, s := range map[string]string{
		"empty":           "",
		"short":           good[:42],
		"long":            good + "A",
		"padded":          good + "=",
		"std alphabet +":  "+" + good[1:],
		"std alphabet /":  "/" + good[1:],
		"dot":             "." + good[1:],
		"space":           " " + good[1:],
		"newline inside":  good[:20] + "\n" + good[21:],
		"non-ascii":       "é" + good[2:],
		"stray low bits":  strings.Repeat("A", 42) + "B",
		"percent-encoded": "%41" + good[3:],
	} {
		_, err := guestlink.ParseToken(s)
		require.ErrorIs(t, err, guestlink.ErrMalformed, name)
	}
}

func TestHashAndID(t *testing.T) {
	require.Equal(t, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", guestlink.Hash("abc"), "hex SHA-256")
	require.Equal(t, "ba7816bf8f", guestlink.IDOf("abc"))
	tok := guess(t)
	require.Len(t, guestlink.IDOf(tok), guestlink.IDLen)
	require.True(t, strings.HasPrefix(guestlink.Hash(tok), guestlink.IDOf(tok)))
}

func TestParseTTL(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"30m":  30 * time.Minute,
		"1m":   time.Minute,
		"2h":   2 * time.Hour,
		"1d":   24 * time.Hour,
		"7d":   7 * 24 * time.Hour,
		"30d":  guestlink.MaxTTL,
		"720h": guestlink.MaxTTL,
		" 2H ": 2 * time.Hour,
		"090m": 90 * time.Minute,
	} {
		got, err := guestlink.ParseTTL(s)
		require.NoError(t, err, s)
		require.Equal(t, want, got, s)
	}
	for s, why := range map[string]string{
		"":                      "a number and a unit",
		"d":                     "a number and a unit",
		"30":                    "a number and a unit",
		"2w":                    "a number and a unit",
		"1h30m":                 "a number and a unit",
		"-1d":                   "a number and a unit",
		"+1d":                   "a number and a unit",
		"1.5h":                  "a number and a unit",
		"30s":                   "a number and a unit",
		"0m":                    "at least 1m",
		"31d":                   "at most 30d",
		"721h":                  "at most 30d",
		"99999999999999999999d": "at most 30d",
		"9223372036854775807m":  "at most 30d",
	} {
		_, err := guestlink.ParseTTL(s)
		require.ErrorIs(t, err, guestlink.ErrBadTTL, "%q", s)
		require.ErrorContains(t, err, why, "%q", s)
	}
}

func TestFormatTTL(t *testing.T) {
	for d, want := range map[time.Duration]string{
		guestlink.MaxTTL:     "30d",
		36 * time.Hour:       "36h",
		90 * time.Minute:     "90m",
		time.Minute:          "1m",
		guestlink.DefaultTTL: "1d",
	} {
		require.Equal(t, want, guestlink.FormatTTL(d))
		back, err := guestlink.ParseTTL(want)
		require.NoError(t, err)
		require.Equal(t, d, back, "FormatTTL writes what ParseTTL reads")
	}
}
