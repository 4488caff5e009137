package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/jsclient"
)

// BenchmarkCallSetupJS measures the setup of a voice call as matrix-js-sdk
// sees it when it places one: from just before js-sdk creates the call to
// its "connected" state (browser clock), for calls to the bot (which
// answers with echo) and, as the baseline, for calls to another js-sdk
// client that answers in its page at once. The same caller alternates
// between the two, so that the machine's drift hits both; each call is hung
// up and its end awaited on both sides before the next. It makes at least
// 20 calls of each kind per run (one unmeasured call of each first) and
// reports the median and 90th percentile of each, and the ratio of the
// medians (bot/js); ns/op is the mean setup of a call to the bot.
func BenchmarkCallSetupJS(b *testing.B) {
	bot, botUser := benchCallBot(b)
	caller, _ := newJSUser(b, "benchcaller", false, jsclient.IncomingNotify)
	callee, _ := newJSUser(b, "benchcallee", false, jsclient.IncomingAnswer)
	botRoom := jsRoomWithBot(b, caller, botUser, false)
	ctx := jsCtx(b)
	jsRoom, err := caller.CreateRoom(ctx, jsclient.CreateRoomOptions{Invite: []string{callee.UserID}, Direct: true})
	require.NoError(b, err)
	_, err = callee.JoinRoom(ctx, jsRoom)
	require.NoError(b, err)
	require.NoError(b, caller.WaitMember(ctx, jsRoom, callee.UserID, "join"))

	toBot := func() time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
		defer cancel()
		call, err := caller.PlaceCall(ctx, botRoom, "", false)
		require.NoError(b, err)
		connected, err := call.WaitState(ctx, jsclient.StateConnected)
		require.NoError(b, err)
		require.NoError(b, call.Hangup(ctx, ""))
		_, err = call.WaitState(ctx, jsclient.StateEnded)
		require.NoError(b, err)
		require.NoError(b, botIdle(ctx, bot))
		return connected.Sub(call.PlacedAt())
	}
	toJS := func() time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
		defer cancel()
		call, err := caller.PlaceCall(ctx, jsRoom, "", false)
		require.NoError(b, err)
		connected, err := call.WaitState(ctx, jsclient.StateConnected)
		require.NoError(b, err)
		answered, err := callee.WaitIncoming(ctx)
		require.NoError(b, err)
		require.Equal(b, call.ID(), answered.ID())
		require.NoError(b, call.Hangup(ctx, ""))
		_, err = call.WaitState(ctx, jsclient.StateEnded)
		require.NoError(b, err)
		_, err = answered.WaitState(ctx, jsclient.StateEnded)
		require.NoError(b, err)
		return connected.Sub(call.PlacedAt())
	}
	// Warm up: the first call of a page gets its media devices and
	// compiles what the later ones reuse.
	toBot()
	toJS()

	n := max(b.N, 20)
	botSetups := make([]time.Duration, 0, n)
	jsSetups := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		// Alternate which goes first, too.
		if i%2 == 0 {
			botSetups = append(botSetups, toBot())
			jsSetups = append(jsSetups, toJS())
		} else {
			jsSetups = append(jsSetups, toJS())
			botSetups = append(botSetups, toBot())
		}
	}
	b.StopTimer()

	reportSetups(b, "bot", botSetups, "js", jsSetups)
}

// reportSetups reports two kinds of call setup measured in the same run:
// each kind's median and 90th percentile, the ratio of the medians (a/b),
// the calls per kind, and as ns/op the mean of the first kind.
func reportSetups(b *testing.B, a string, as []time.Duration, base string, bs []time.Duration) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	median := func(ds []time.Duration) time.Duration { return ds[len(ds)/2] }
	p90 := func(ds []time.Duration) time.Duration { return ds[(len(ds)*9+9)/10-1] }
	var sum time.Duration
	for _, d := range as {
		sum += d
	}
	b.Logf("%s setups (in order): %v", a, as)
	b.Logf("%s setups (in order): %v", base, bs)
	as, bs = slices.Sorted(slices.Values(as)), slices.Sorted(slices.Values(bs))
	b.ReportMetric(ms(median(as)), a+"-p50-ms")
	b.ReportMetric(ms(p90(as)), a+"-p90-ms")
	b.ReportMetric(ms(median(bs)), base+"-p50-ms")
	b.ReportMetric(ms(p90(bs)), base+"-p90-ms")
	b.ReportMetric(float64(median(as))/float64(median(bs)), a+"/"+base+"-p50")
	b.ReportMetric(float64(len(as)), "calls/kind")
	b.ReportMetric(float64(sum)/float64(len(as)), "ns/op")
}

// benchCallBot starts a bot for calls (call media on loopback, logging at
// info as in production) for a benchmark, stopped at its end.
func benchCallBot(b *testing.B) (*testbed.Bot, id.UserID) {
	b.Helper()
	ctx := jsCtx(b)
	localpart := fmt.Sprintf("benchcallbot%d", userSeq.Add(1))
	uid, err := hs.Register(ctx, localpart, "pw-"+localpart)
	require.NoError(b, err)
	port, err := testbed.FreePort()
	require.NoError(b, err)
	s := &botSetup{UserID: uid, Password: "pw-" + localpart, Dir: b.TempDir(), HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port)}
	s.Config = filepath.Join(s.Dir, "config.yaml")
	require.NoError(b, writeBotConfig(s, hs, fmt.Sprintf("bot:\n  user_id: %q\n  password: %q\n", uid, s.Password),
		"pickle-"+localpart+"-0123456789", "info", callMedia))
	bot, err := testbed.StartBot(botBinary, s.Dir, s.Config, s.HTTPAddr, nil)
	require.NoError(b, err)
	b.Cleanup(func() {
		code, err := bot.Stop()
		if err != nil || code != 0 {
			b.Errorf("voipbot stopped with code %d: %v", code, err)
		}
		if b.Failed() {
			b.Logf("voipbot log %s:\n%s", bot.LogPath, bot.Logs())
		}
	})
	_, err = bot.WaitReady(ctx)
	require.NoError(b, err)
	return bot, uid
}
