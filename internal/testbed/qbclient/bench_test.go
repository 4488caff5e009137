package qbclient_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/qbclient"
)

// BenchmarkQuickBloxSetupSDK is the baseline of a QuickBlox call's setup:
// SDK to SDK through Prosody, audio, answered at once (getUserMedia, then
// accept). Each op is one call, from the caller's placing it (before its
// local media) to its SDK's connected; hanging up is not timed. Reported:
// the median of the run's calls (ms/setup), and of call() to connected
// (ms/call-connected: without the caller's getUserMedia); ns/op is the
// same span as the test sees it (event latency included). For a median
// worth the name, run it with -benchtime=20x.
func BenchmarkQuickBloxSetupSDK(b *testing.B) {
	setIncoming(b, bob, qbclient.IncomingAccept)
	var setups, fromCall []time.Duration
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := alice.Call(ctx, []uint64{bobID}, false, nil)
		require.NoError(b, err)
		_, err = out.WaitState(ctx, qbclient.StateConnected)
		require.NoError(b, err)
		b.StopTimer()
		in, err := bob.WaitIncoming(ctx)
		require.NoError(b, err)
		_, err = in.WaitState(ctx, qbclient.StateConnected)
		require.NoError(b, err)
		times := out.Times()
		setups = append(setups, times.Setup())
		fromCall = append(fromCall, times.Connected.Sub(times.Calling))
		endCall(b, out, in)
		cancel()
		b.StartTimer()
	}
	b.ReportMetric(ms(median(setups)), "ms/setup")
	b.ReportMetric(ms(median(fromCall)), "ms/call-connected")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
