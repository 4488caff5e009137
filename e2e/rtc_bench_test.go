package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkElementCallJoin: how long the bot takes to be heard in a
// room's Element Call — from `!voip join tone` being sent to alice's
// browser decoding the bot's 440 Hz — against an Element Call browser
// joining the same call: from carol's click on "Join call" to alice
// decoding carol's tone. Each is done `rounds` times, alternating (the bot
// leaves and carol hangs up in between, each awaited); reports the medians
// and their ratio (bot/browser). The bot is the container image's build.
func BenchmarkElementCallJoin(b *testing.B) {
	const rounds = 5
	bed := rtcTestBed(b)
	setup := newBotSetup(b, hs, fmt.Sprintf("calls:\n  source: tone\nrtc:\n  livekit_service_url: %q\n", bed.jwt.URL))
	setup.Binary = bed.mixer
	setup.start(b)
	acct := readAccount(b, setup.Dir+"/voipbot.db")
	botIdentity := setup.UserID.String() + ":" + acct.DeviceID.String()
	alice := newECUser(b, bed, "ecja", toneA)
	carol := newECUser(b, bed, "ecjc", toneB)
	room := alice.callRoom(b, setup.UserID, false, carol.mx.UserID)
	ctx := ctxFor(b)
	_, err := carol.mx.JoinRoomByID(ctx, room)
	require.NoError(b, err)
	_, err = alice.browser.Join(ctx, room.String(), alice.session, "")
	require.NoError(b, err)

	var bot, browser []time.Duration
	for range b.N {
		for range rounds {
			sent := time.Now()
			require.Contains(b, body(command(b, alice.mx, room, setup.UserID, "!voip join tone")), "Joining")
			_, err := alice.browser.WaitParticipantTone(ctx, botIdentity, 440, toneTolerance)
			require.NoError(b, err)
			bot = append(bot, time.Since(sent))
			require.Contains(b, body(command(b, alice.mx, room, setup.UserID, "!voip leave")), "Leaving")
			leftCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			require.NoError(b, waitNoMembership(leftCtx, alice, room, setup.UserID))
			cancel()

			joined, err := carol.browser.Join(ctx, room.String(), carol.session, "")
			require.NoError(b, err)
			_, err = alice.browser.WaitParticipantTone(ctx, carol.session.Identity(), toneB, toneTolerance)
			require.NoError(b, err)
			browser = append(browser, time.Since(joined.Clicked))
			require.NoError(b, carol.browser.Leave(ctx))
			leftCtx, cancel = context.WithTimeout(ctx, 30*time.Second)
			require.NoError(b, waitNoMembership(leftCtx, alice, room, carol.mx.UserID))
			cancel()
		}
	}
	b.Logf("bot (command → heard): %v", bot)
	b.Logf("browser (click → heard): %v", browser)
	med := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	b.ReportMetric(float64(med(bot).Milliseconds()), "bot-p50-ms")
	b.ReportMetric(float64(med(browser).Milliseconds()), "browser-p50-ms")
	b.ReportMetric(float64(med(bot))/float64(med(browser)), "bot/browser-p50")
}
