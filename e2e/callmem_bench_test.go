package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/voipbot/voipbot/internal/bench/benchserver"
	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/matrix/callevent"
)

// BenchmarkIdleCallMemory: the bot's resident memory and goroutines per
// connected call carrying no media, and what is left once they have all
// been hung up (the goroutine count must return to where it started).
// Baseline: the same bot with no calls.
func BenchmarkIdleCallMemory(b *testing.B) {
	const calls = 20
	for range b.N {
		setup := newBotSetup(b, hs, `calls:
  max_calls: 0
  max_calls_per_room: 0
`+callMedia)
		// Trace logging (the tests' level) would dominate the bot's memory.
		bot := setup.start(b, "VOIPBOT_LOGGING_LEVEL=info")
		ctx := ctxFor(b)
		alice := newUser(b, hs, "alice", false)
		room := inviteBot(b, alice, setup.UserID, false)

		rss0, g0 := benchserver.RSS(bot.PID()), goroutines(b, bot)
		peers := make([]*goPeer, calls)
		for i := range peers {
			peers[i] = newGoPeer(b, alice, room)
			peers[i].callID = fmt.Sprintf("%d%016d", time.Now().UnixMilli(), i)
			peers[i].invite(ctx, setup.UserID)
		}
		// The answers come in any order, through one event stream.
		byID := map[string]*goPeer{}
		for _, p := range peers {
			byID[p.callID] = p
		}
		for answered := 0; answered < calls; {
			_, err := alice.WaitEvent(ctx, func(evt *event.Event) bool {
				if evt.Sender != setup.UserID || evt.Type.Type != string(callevent.TypeAnswer) {
					return false
				}
				c, err := callevent.Parse(callevent.TypeAnswer, evt.Content.VeryRaw)
				if err != nil || byID[string(c.CallInfo().CallID)] == nil {
					return false
				}
				byID[string(c.CallInfo().CallID)].applyAnswer(c.(*callevent.Answer))
				return true
			})
			require.NoError(b, err, "answers: %d of %d", answered, calls)
			answered++
		}
		waitMetric(b, bot, fmt.Sprintf(`voipbot_calls{state="connected"} %d`, calls))
		rss1, g1 := benchserver.RSS(bot.PID()), goroutines(b, bot)
		for _, p := range peers {
			p.send(ctx, callevent.TypeHangup, map[string]any{"reason": "user_hangup"})
		}
		require.NoError(b, testbed.WaitFor(ctx, func() (bool, error) {
			m, err := bot.Metrics()
			return err == nil && !strings.Contains(m, "voipbot_calls{"), err
		}))
		var g2 int
		settled := testbed.WaitFor(ctxFor(b), func() (bool, error) {
			g2 = goroutines(b, bot)
			return g2 <= g0, nil
		})
		rss2 := benchserver.RSS(bot.PID())
		require.NoError(b, settled, "goroutines back to %d after the calls ended (still %d)", g0, g2)

		b.ReportMetric(float64(rss0)/(1<<20), "baseline-RSS-MiB")
		b.ReportMetric(float64(rss1-rss0)/calls/1024, "KiB/idle-call")
		b.ReportMetric(float64(g1-g0)/calls, "goroutines/idle-call")
		b.ReportMetric(float64(g0), "goroutines-before")
		b.ReportMetric(float64(g2), "goroutines-after")
		b.ReportMetric(float64(rss2)/(1<<20), "RSS-after-MiB")
	}
}

// goroutines reads go_goroutines from the bot's /metrics.
func goroutines(b testing.TB, bot *testbed.Bot) int {
	m, err := bot.Metrics()
	require.NoError(b, err)
	for line := range strings.SplitSeq(m, "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			require.NoError(b, err)
			return n
		}
	}
	b.Fatal("no go_goroutines in /metrics")
	return 0
}
