package bridge

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/voipbot/voipbot/bridge/matrixcall"
	"github.com/voipbot/voipbot/store"
)

func TestIsCommand(t *testing.T) {
	b := &Bot{cfg: Config{Commands: CommandsConfig{Prefix: "!voip"}}}
	cases := []struct {
		name    string
		content *event.MessageEventContent
		want    bool
	}{
		{"help", &event.MessageEventContent{MsgType: event.MsgText, Body: "!voip help"}, true},
		{"bare prefix", &event.MessageEventContent{MsgType: event.MsgText, Body: "!voip"}, true},
		{"leading space and newline", &event.MessageEventContent{MsgType: event.MsgText, Body: "  !voip\nstatus"}, true},
		{"other text", &event.MessageEventContent{MsgType: event.MsgText, Body: "hello !voip"}, false},
		{"prefix as part of a word", &event.MessageEventContent{MsgType: event.MsgText, Body: "!voipx help"}, false},
		{"notice (another bot)", &event.MessageEventContent{MsgType: event.MsgNotice, Body: "!voip help"}, false},
		{"edit of a command", &event.MessageEventContent{MsgType: event.MsgText, Body: "!voip help",
			RelatesTo: &event.RelatesTo{Type: event.RelReplace, EventID: "$orig"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evt := &event.Event{Type: event.EventMessage, Content: event.Content{Parsed: tc.content}}
			require.Equal(t, tc.want, b.isCommand(evt))
		})
	}
	require.False(t, b.isCommand(&event.Event{Type: event.EventMessage}), "unparsed content is not a command")
}

func TestConfigValidate(t *testing.T) {
	calls := CallsConfig{Source: MediaEcho, Config: matrixcall.Config{InviteLifetime: time.Minute, ConnectTimeout: 30 * time.Second}}
	require.NoError(t, (&Config{Commands: CommandsConfig{Prefix: "!voip"}, Calls: calls}).Validate())
	require.ErrorContains(t, (&Config{Commands: CommandsConfig{Prefix: "two words"}, Calls: calls}).Validate(), "commands.prefix")
	bad := Config{Commands: CommandsConfig{Prefix: "!voip"}, Calls: CallsConfig{Source: "music", MaxCalls: -1, MaxCallsPerRoom: -2, Config: matrixcall.Config{InviteLifetime: time.Second}}}
	require.EqualError(t, bad.Validate(), `calls.source: "music" is not a source (echo, tone, silence, file)
calls.max_calls: must be 0 (no limit) or more
calls.max_calls_per_room: must be 0 (no limit) or more
calls.invite_lifetime: must be at least 10s
calls.connect_timeout: must be at least 1s`)
}

func TestCallsMetricFollowsCallTable(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "v.db")}, zerolog.Nop())
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.SetMembership(ctx, "!r:x", store.MembershipJoin, ""))
	require.NoError(t, st.PutCall(ctx, &store.Call{RoomID: "!r:x", CallID: "a", Direction: store.CallInbound, State: "ringing"}))
	require.NoError(t, st.PutCall(ctx, &store.Call{RoomID: "!r:x", CallID: "b", Direction: store.CallInbound, State: "connected"}))
	require.NoError(t, st.PutCall(ctx, &store.Call{RoomID: "!r:x", CallID: "c", Direction: store.CallInbound, State: store.CallStateEnded}))

	reg := prometheus.NewRegistry()
	reg.MustRegister(&callCollector{store: st})
	n, err := testutil.GatherAndCount(reg, "voipbot_calls")
	require.NoError(t, err)
	require.Equal(t, 2, n, "one series per active state; ended calls are not active")
}
