//go:build linux

package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/elementcall"
	"github.com/voipbot/voipbot/internal/testbed/jamid"
)

// TestElementCallJamiJoins: a room routed to a Jami account has its
// Element Call going on; when jamid calls the bot, the call joins the
// room's Element Call (rather than ringing the room's members): the
// person in the call hears jamid's tone from the bot, and jamid plays
// theirs. Hanging up on jamid takes the bot out of the call.
func TestElementCallJamiJoins(t *testing.T) {
	jb := newJamiBridge(t)
	defer stopBot(t, jb.bot)
	bed := rtcTestBed(t)
	acct := readAccount(t, filepath.Join(jb.setup.Dir, "voipbot.db"))
	botIdentity := elementcall.Identity(jb.setup.UserID.String(), acct.DeviceID.String())
	alice := newECUser(t, bed, "ecjm", toneA)
	room := alice.callRoom(t, jb.setup.UserID, false)
	require.Contains(t, body(command(t, alice.mx, room, jb.setup.UserID, "!voip route jami:"+jb.jamiID)), "now go to")
	ctx := ctxFor(t)
	_, err := alice.browser.Join(ctx, room.String(), alice.session, "")
	require.NoError(t, err)

	begin := time.Now()
	callID, err := jb.d.PlaceCallWithMedia(ctx, jb.jamiAcc, jb.botJami, jamid.AudioMedia())
	require.NoError(t, err)
	require.Equal(t, "CURRENT", jb.waitJamidState(t, callID, "CURRENT", "OVER", "FAILURE").State)
	tone, err := alice.browser.WaitParticipantTone(ctx, botIdentity, toneB, toneTolerance)
	require.NoErrorf(t, err, "alice hears jamid through the bot (last %s)", tone)
	t.Logf("alice hears jamid %s after jamid dialled: %s", time.Since(begin).Round(time.Millisecond), tone)
	jb.requireJamidHears(t, 0, toneA)

	require.NoError(t, jb.d.HangUp(ctx, jb.jamiAcc, callID))
	leftCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, waitNoMembership(leftCtx, alice, room, jb.setup.UserID), "jamid's hangup takes the bot out of the call")
}
