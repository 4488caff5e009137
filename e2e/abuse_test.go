package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/matrix/callevent"
)

// The abuse suite: what an attacker or a broken client sends, against the
// real homeserver. After each, the bot is healthy and answers commands.

// abuseRoom is a room with the bot and several members.
type abuseRoom struct {
	setup   *botSetup
	bot     *testbed.Bot
	room    id.RoomID
	members []*testbed.User
}

// newAbuseRoom starts a bot (with extra config) and makes a room of n users
// with it; the first user created the room.
func newAbuseRoom(t *testing.T, n int, extra string) *abuseRoom {
	t.Helper()
	setup := newBotSetup(t, hs, extra)
	a := &abuseRoom{setup: setup, bot: setup.start(t)}
	for i := range n {
		a.members = append(a.members, newUser(t, hs, fmt.Sprintf("abuser%d-", i), false))
	}
	a.room = inviteBot(t, a.members[0], setup.UserID, false)
	ctx := ctxFor(t)
	for _, u := range a.members[1:] {
		_, err := a.members[0].InviteUser(ctx, a.room, &mautrix.ReqInviteUser{UserID: u.UserID})
		require.NoError(t, err)
		_, err = u.JoinRoomByID(ctx, a.room)
		require.NoError(t, err)
	}
	return a
}

// sendRaw sends any content as a call event of type t.
func sendRaw(ctx context.Context, u *testbed.User, room id.RoomID, t callevent.Type, content any) error {
	_, err := u.SendMessageEvent(ctx, room, event.Type{Type: string(t), Class: event.MessageEventType}, content)
	return err
}

// metricValue is the value of one series in a /metrics text ("" labels for
// a series without labels), or -1 if it is not there.
func metricValue(metrics, series string) float64 {
	for line := range strings.SplitSeq(metrics, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// bigCandidates is candidates content of about size bytes for callID: as
// many host candidates as fit, or with tiny set as many of the smallest
// candidates the spec allows (the most memory per byte sent once parsed).
func bigCandidates(callID, party string, size int, tiny bool) map[string]any {
	var cands []map[string]any
	for n := 100; ; {
		c := map[string]any{
			"candidate":     fmt.Sprintf("candidate:%d 1 udp 2122260223 192.0.2.%d %d typ host generation 0 ufrag abcd network-id 1", 1000+len(cands), len(cands)%250, 10000+len(cands)),
			"sdpMid":        "0",
			"sdpMLineIndex": 0,
		}
		if tiny {
			c = map[string]any{"candidate": "c", "sdpMid": ""}
		}
		raw, _ := json.Marshal(c)
		if n += len(raw) + 1; n > size {
			break
		}
		cands = append(cands, c)
	}
	return map[string]any{"call_id": callID, "party_id": party, "version": "1", "candidates": cands}
}

// TestAbuseCandidateFlood: three members send 510 candidate events of about
// 60 KB for calls the bot does not know (30 MB in all). What the bot keeps
// for a later invite is bounded: its live heap after the flood stays under a
// ceiling, and it still answers.
func TestAbuseCandidateFlood(t *testing.T) {
	a := newAbuseRoom(t, 3, "")
	// The homeserver takes about 10 such events a second: the full flood of
	// the issue (VOIPBOT_ABUSE_FLOOD=170 per member) takes a minute, CI
	// sends a third of it.
	perUser := 60
	if n, err := strconv.Atoi(os.Getenv("VOIPBOT_ABUSE_FLOOD")); err == nil {
		perUser = n
	}
	tiny := os.Getenv("VOIPBOT_ABUSE_SHAPE") != "host"
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(perUser)*time.Second)
	defer cancel()
	before, err := a.bot.Metrics()
	require.NoError(t, err)
	const callsPerUser, size = 10, 60_000
	var wg sync.WaitGroup
	errs := make(chan error, len(a.members))
	for i, u := range a.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range perUser {
				callID := fmt.Sprintf("flood-%d-%d", i, k%callsPerUser)
				if err := sendRaw(ctx, u, a.room, callevent.TypeCandidates, bigCandidates(callID, "P"+strconv.Itoa(i), size, tiny)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	handled := `voipbot_events_handled_total{result="ok",type="m.call.candidates"}`
	waitMetric(t, a.bot, fmt.Sprintf("%s %d", handled, perUser*len(a.members)))
	after, err := a.bot.Metrics()
	require.NoError(t, err)
	liveBefore, liveAfter := metricValue(before, "go_gc_heap_live_bytes"), metricValue(after, "go_gc_heap_live_bytes")
	rssBefore, rssAfter := metricValue(before, "process_resident_memory_bytes"), metricValue(after, "process_resident_memory_bytes")
	t.Logf("after %d candidate events of %d bytes (tiny candidates: %t): live heap %.1f -> %.1f MiB, RSS %.1f -> %.1f MiB",
		perUser*len(a.members), size, tiny, liveBefore/(1<<20), liveAfter/(1<<20), rssBefore/(1<<20), rssAfter/(1<<20))
	require.Positive(t, liveAfter, "the bot reports its live heap")
	reply := body(command(t, a.members[0], a.room, a.setup.UserID, "!voip help"))
	require.Contains(t, reply, "Commands")
}
