package e2e

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHelpAndStatusInPlainRoom(t *testing.T) {
	setup := newBotSetup(t, hs, "")
	bot := setup.start(t)
	setup.addAccessToken(t)
	alice := newUser(t, hs, "alice", false)
	room := inviteBot(t, alice, setup.UserID, false)

	help := body(command(t, alice, room, setup.UserID, "!voip help"))
	require.True(t, hasLine(help, "* `!voip status`"), help)
	require.True(t, hasLine(help, "* `!voip help`"), help)

	status := body(command(t, alice, room, setup.UserID, "!voip status"))
	require.Contains(t, status, "Active calls: 0")
	require.Contains(t, status, "Rooms joined: 1")
	require.Contains(t, status, "encryption on")

	unknown := body(command(t, alice, room, setup.UserID, "!voip dance"))
	require.Contains(t, unknown, "Unknown command `dance`")

	metrics, err := bot.Metrics()
	require.NoError(t, err)
	require.Contains(t, metrics, `voipbot_commands_total{command="help",result="ok"} 1`)
	require.Contains(t, metrics, `voipbot_events_handled_total{result="ok",type="m.room.message"} 3`)
	require.Contains(t, metrics, "voipbot_sync_last_success_timestamp_seconds")
}
