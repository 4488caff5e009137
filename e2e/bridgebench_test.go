package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/jsclient"
)

// BenchmarkBridgeSetupJS measures the setup of a bridged voice call as the
// caller (matrix-js-sdk) sees it: from just before it places the call to
// the bot, in a room routed to a second js-sdk user who answers at once in
// its page, to "connected" (browser clock) — against the same caller
// calling that user directly. The caller alternates between the two; each
// call is hung up and its end awaited on both sides before the next. At
// least 10 calls of each kind (one unmeasured call of each first); reports
// the median and 90th percentile of each and the ratio of the medians
// (bridge/direct); ns/op is the mean setup through the bridge.
func BenchmarkBridgeSetupJS(b *testing.B) {
	bot, botUser := benchCallBot(b)
	caller, _ := newJSUser(b, "brbenchcaller", false, jsclient.IncomingNotify)
	callee, _ := newJSUser(b, "brbenchcallee", false, jsclient.IncomingAnswer)
	jsRoomWithBot(b, callee, botUser, false)
	botRoom := jsRoomWithBot(b, caller, botUser, false)
	reply := jsCommand(b, caller, botRoom, botUser, "!voip route matrix:"+callee.UserID)
	require.Contains(b, reply.Body, "now go to")
	ctx := jsCtx(b)
	direct, err := caller.CreateRoom(ctx, jsclient.CreateRoomOptions{Invite: []string{callee.UserID}, Direct: true})
	require.NoError(b, err)
	_, err = callee.JoinRoom(ctx, direct)
	require.NoError(b, err)
	require.NoError(b, caller.WaitMember(ctx, direct, callee.UserID, "join"))

	setup := func(room string, bridged bool) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
		defer cancel()
		call, err := caller.PlaceCall(ctx, room, "", false)
		require.NoError(b, err)
		connected, err := call.WaitState(ctx, jsclient.StateConnected)
		require.NoError(b, err)
		answered, err := callee.WaitIncoming(ctx)
		require.NoError(b, err)
		require.NoError(b, call.Hangup(ctx, ""))
		_, err = call.WaitState(ctx, jsclient.StateEnded)
		require.NoError(b, err)
		_, err = answered.WaitState(ctx, jsclient.StateEnded)
		require.NoError(b, err)
		if bridged {
			require.NoError(b, botIdle(ctx, bot))
		}
		return connected.Sub(call.PlacedAt())
	}
	setup(botRoom, true)
	setup(direct, false)

	n := max(b.N, 10)
	bridged := make([]time.Duration, 0, n)
	direct2 := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		if i%2 == 0 {
			bridged = append(bridged, setup(botRoom, true))
			direct2 = append(direct2, setup(direct, false))
		} else {
			direct2 = append(direct2, setup(direct, false))
			bridged = append(bridged, setup(botRoom, true))
		}
	}
	b.StopTimer()

	reportSetups(b, "bridge", bridged, "direct", direct2)
}
