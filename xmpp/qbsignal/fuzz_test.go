package qbsignal

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecode: no input makes Decode panic, and a signal it accepts that
// Encode can write reads back the same (seeded with the captured frames).
func FuzzDecode(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	require.NoError(f, err)
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(b)
	}
	for _, sig := range everyType() {
		b, err := Message("1002-77@localhost", "6b1118aac222be12ba000000", sig)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		sig, err := DecodeBytes(msg)
		if err != nil {
			return
		}
		raw, err := Message("1002-77@localhost", "", sig)
		if err != nil {
			return // e.g. a key the SDK reads but no encoder could write ("#text")
		}
		again, err := DecodeBytes(raw)
		require.NoError(t, err, "%s", raw)
		require.Equal(t, sig.Type, again.Type)
		require.Equal(t, sig.SessionID, again.SessionID)
		require.Equal(t, sig.CallerID, again.CallerID)
		require.Equal(t, sig.OpponentIDs, again.OpponentIDs)
		require.Equal(t, sig.Candidates, again.Candidates)
		require.Equal(t, sig.SDP, again.SDP)
	})
}
