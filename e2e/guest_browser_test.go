package e2e

import (
	"flag"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/guestclient"
	"github.com/voipbot/voipbot/internal/testbed/jsclient"
)

// toneGuest is the guest's tone: distinct from the Matrix people's and
// from the bot's 440 Hz.
const toneGuest = 770

// browserGuestBot is a bot with call links whose media uses the
// machine's interfaces (Chromium offers no loopback candidates).
func browserGuestBot(t *testing.T) (*botSetup, *testbed.Bot) {
	t.Helper()
	setup := newBotSetupFor(t, func(s *botSetup) string {
		return fmt.Sprintf("calls:\n  source: tone\nguests:\n  public_url: \"http://%s\"\n", s.HTTPAddr)
	})
	return setup, setup.start(t)
}

func newGuest(t *testing.T, name string, hz int) *guestclient.Guest {
	t.Helper()
	g, err := guestclient.Launch(jsCtx(t), guestclient.Options{Name: name, ToneHz: float64(hz), ArtifactsDir: t.TempDir(), Logf: t.Logf})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's page console (end):\n%s", name, g.ConsoleTail(60))
		}
		assert.NoError(t, g.Close())
	})
	return g
}

// TestGuestCallsRoom: a guest in Chromium (playing 770 Hz) opens a call
// link; the room's member, a matrix-js-sdk user in another Chromium
// (660 Hz, answering at once), is rung and answers; each hears the other's
// tone; the guest's hangup ends the member's call; called again, the
// member's hangup ends the guest's call, and the page says why.
func TestGuestCallsRoom(t *testing.T) {
	setup, bot := browserGuestBot(t)
	member := newToneUser(t, "guestm", toneB, false, jsclient.IncomingAnswer)
	room := jsRoomWithBot(t, member, setup.UserID, false)
	reply := jsCommand(t, member, room, setup.UserID, "!voip link").Body
	m := linkRE.FindStringSubmatch(reply)
	require.NotNilf(t, m, "a link in %q", reply)
	url := m[1] + m[2]
	ctx := jsCtx(t)

	guest := newGuest(t, "Gwen", toneGuest)
	status, _, err := guest.Open(ctx, url)
	require.NoError(t, err)
	require.Equal(t, 200, status)
	opened := time.Now()
	require.NoError(t, guest.Join(ctx))
	call, err := member.WaitIncoming(ctx)
	require.NoError(t, err, "the member is rung")
	waitConnected(t, call)
	_, err = guest.WaitState(ctx, guestclient.StateConnected)
	require.NoError(t, err)
	heard, err := call.WaitRemoteTones(ctx, []float64{toneGuest}, toneTolerance)
	require.NoErrorf(t, err, "the member hears the guest (last %s)", heard)
	t.Logf("link opened → the member hears the guest: %s (%s)", time.Since(opened).Round(time.Millisecond), heard)
	tone, err := guest.WaitRemoteTone(ctx, toneB, toneTolerance)
	require.NoErrorf(t, err, "the guest hears the member (last %s)", tone)
	t.Logf("the guest hears: %s", tone)
	waitMetric(t, bot, `voipbot_bridge_legs{kind="guest",state="connected"} 1`)

	require.NoError(t, guest.Hangup(ctx))
	waitEnded(t, call)
	waitMetric(t, bot, `voipbot_bridges 0`)

	require.NoError(t, guest.CallAgain(ctx))
	call, err = member.WaitIncoming(ctx)
	require.NoError(t, err, "the member is rung again")
	waitConnected(t, call)
	_, err = guest.WaitState(ctx, guestclient.StateConnected)
	require.NoError(t, err)
	require.NoError(t, call.Hangup(ctx, ""))
	_, err = guest.WaitState(ctx, guestclient.StateEnded)
	require.NoError(t, err)
	assert.Equal(t, "hangup", guest.EndReason().Reason, "the page says the call was hung up")
	waitMetric(t, bot, `voipbot_bridges 0`)
	assert.Empty(t, guest.ConsoleErrors(), "no errors in the page's console")
}

// BenchmarkGuestLinkToAudio: a guest clicks Join on a call link's page →
// the room's member (js-sdk, answering at once) hears the guest's tone;
// the median of -guest-calls calls (10). A link takes 5 joins at once
// (its rate limit), so every fourth call opens a new link's page.
func BenchmarkGuestLinkToAudio(b *testing.B) {
	setup := newBotSetup(b, hs, "")
	pickle := setup.Secrets[1]
	setup.writeConfig(b, hs, fmt.Sprintf("bot:\n  user_id: %q\n  password: %q\n", setup.UserID, setup.Password), pickle,
		fmt.Sprintf("calls:\n  source: tone\nguests:\n  public_url: \"http://%s\"\n", setup.HTTPAddr))
	bot := setup.start(b)
	member := newToneUser(b, "guestbm", toneB, false, jsclient.IncomingAnswer)
	room := jsRoomWithBot(b, member, setup.UserID, false)
	ctx := jsCtx(b)
	g, err := guestclient.Launch(ctx, guestclient.Options{Name: "Bench", ToneHz: toneGuest, ArtifactsDir: b.TempDir(), Logf: b.Logf})
	require.NoError(b, err)
	defer g.Close()
	fresh := func() {
		m := linkRE.FindStringSubmatch(jsCommand(b, member, room, setup.UserID, "!voip link").Body)
		require.NotNil(b, m)
		status, _, err := g.Open(ctx, m[1]+m[2])
		require.NoError(b, err)
		require.Equal(b, 200, status)
	}

	once := func(i int) time.Duration {
		if i%4 == 0 {
			fresh()
		}
		start := time.Now()
		if i%4 == 0 {
			require.NoError(b, g.Join(ctx))
		} else {
			require.NoError(b, g.CallAgain(ctx))
		}
		call, err := member.WaitIncoming(ctx)
		require.NoError(b, err)
		_, err = call.WaitRemoteTones(ctx, []float64{toneGuest}, toneTolerance)
		require.NoError(b, err)
		took := time.Since(start)
		require.NoError(b, g.Hangup(ctx))
		waitEnded(b, call)
		require.NoError(b, bridgesIdle(ctx, bot))
		return took
	}
	once(0) // warm up: the page's first capture
	n := max(b.N, *guestCalls)
	took := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		took = append(took, once(i+1))
	}
	b.StopTimer()
	slices.Sort(took)
	b.Logf("Join → the member hears the guest: %v", took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "p50-ms")
	b.ReportMetric(float64(took[(len(took)*9+9)/10-1])/float64(time.Millisecond), "p90-ms")
}

var guestCalls = flag.Int("guest-calls", 10, "calls of BenchmarkGuestLinkToAudio")
