package matrix

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/store"
)

const botID = id.UserID("@bot:x")

// syncEvent builds an event as it arrives in a sync response.
func syncEvent(t *testing.T, fields map[string]any) *event.Event {
	t.Helper()
	raw, err := json.Marshal(fields)
	require.NoError(t, err)
	var evt event.Event
	require.NoError(t, json.Unmarshal(raw, &evt))
	return &evt
}

func msg(t *testing.T, id, sender, body string) *event.Event {
	return syncEvent(t, map[string]any{"type": "m.room.message", "event_id": id, "sender": sender,
		"origin_server_ts": time.Now().UnixMilli(), "content": map[string]any{"msgtype": "m.text", "body": body}})
}

func member(t *testing.T, id, sender, target, membership, prev string) *event.Event {
	fields := map[string]any{"type": "m.room.member", "event_id": id, "sender": sender, "state_key": target,
		"content": map[string]any{"membership": membership}}
	if prev != "" {
		fields["unsigned"] = map[string]any{"prev_content": map[string]any{"membership": prev}}
	}
	return syncEvent(t, fields)
}

func newTestSyncer(t *testing.T) (*syncer, *store.Store, *recorder) {
	t.Helper()
	st, _ := openStore(t)
	in := newTestIntake(t, st)
	rec := newRecorder()
	in.on(event.EventMessage, nil, rec.handle)
	in.on(event.StateMember, nil, func(_ context.Context, evt *Event) error { rec.all <- evt; return nil })
	s := newSyncer(botID, in, in.metrics, newHealth(true, 40*time.Second), zerolog.Nop())
	s.roomsFromSync = true
	return s, st, rec
}

func joined(events map[id.RoomID][]*event.Event) *mautrix.RespSync {
	resp := &mautrix.RespSync{Rooms: mautrix.RespSyncRooms{Join: map[id.RoomID]*mautrix.SyncJoinedRoom{}}}
	for room, evts := range events {
		resp.Rooms.Join[room] = &mautrix.SyncJoinedRoom{Timeline: mautrix.SyncTimeline{SyncEventsList: mautrix.SyncEventsList{Events: evts}}}
	}
	return resp
}

// handled returns the IDs of the events handled from the batches processed
// so far. It sends a marker message into each room and collects until every
// marker is through: events of a room are handled in order, so nothing
// handled later can belong to the earlier batches.
func handled(t *testing.T, s *syncer, rec *recorder, rooms ...id.RoomID) []id.EventID {
	t.Helper()
	markers := map[id.RoomID][]*event.Event{}
	for _, room := range rooms {
		markers[room] = []*event.Event{msg(t, "$marker"+string(room), "@alice:x", "marker")}
	}
	resp := joined(markers)
	resp.NextBatch = "marker"
	require.NoError(t, s.ProcessResponse(context.Background(), resp, "before-marker"))
	var ids []id.EventID
	for pending := len(rooms); pending > 0; {
		select {
		case evt := <-rec.all:
			if evt.ID == "$marker"+id.EventID(evt.RoomID) {
				pending--
			} else {
				ids = append(ids, evt.ID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("markers not handled; got %v", ids)
		}
	}
	return ids
}

func TestInitialSyncTakesOnlyOwnMemberships(t *testing.T) {
	s, st, rec := newTestSyncer(t)
	resp := joined(map[id.RoomID][]*event.Event{"!r:x": {
		msg(t, "$old-command", "@alice:x", "!voip status"),
		member(t, "$own", "@bot:x", "@bot:x", "join", ""),
		member(t, "$alice", "@alice:x", "@alice:x", "join", ""),
	}})
	resp.NextBatch = "s1"
	require.NoError(t, s.ProcessResponse(context.Background(), resp, ""))
	nb, err := st.NextBatch(context.Background(), botID)
	require.NoError(t, err)
	require.Equal(t, "s1", nb, "the position is stored with the batch")
	require.Equal(t, []id.EventID{"$own"}, handled(t, s, rec, "!r:x"), "history is not replayed on the first sync")
}

func TestOwnEchoAndEventsBeforeOwnJoinAreSkipped(t *testing.T) {
	s, _, rec := newTestSyncer(t)
	resp := joined(map[id.RoomID][]*event.Event{
		"!new:x": {
			msg(t, "$before-join", "@alice:x", "!voip help"),
			member(t, "$join", "@bot:x", "@bot:x", "join", "invite"),
			msg(t, "$after-join", "@alice:x", "!voip help"),
		},
		"!old:x": {
			member(t, "$profile", "@bot:x", "@bot:x", "join", "join"), // a profile change, not a join
			msg(t, "$echo", "@bot:x", "a notice of the bot's own"),
			msg(t, "$other", "@alice:x", "hello"),
		},
	})
	resp.Rooms.Join["!new:x"].State.Events = []*event.Event{member(t, "$state", "@carol:x", "@carol:x", "leave", "join")}
	resp.NextBatch = "s2"
	require.NoError(t, s.ProcessResponse(context.Background(), resp, "s1"))
	got := handled(t, s, rec, "!new:x", "!old:x")
	require.ElementsMatch(t, []id.EventID{"$join", "$after-join", "$profile", "$other"}, got)
}

func TestAppserviceDropsRoomsFromSync(t *testing.T) {
	s, _, rec := newTestSyncer(t)
	s.roomsFromSync = false
	resp := joined(map[id.RoomID][]*event.Event{"!r:x": {msg(t, "$dup", "@alice:x", "!voip help")}})
	resp.NextBatch = "s2"
	require.NoError(t, s.ProcessResponse(context.Background(), resp, "s1"))
	s.roomsFromSync = true // let the markers through
	require.Empty(t, handled(t, s, rec, "!r:x"))
}

func TestFailedCommitStopsSync(t *testing.T) {
	s, st, _ := newTestSyncer(t)
	require.NoError(t, st.Close())
	resp := joined(map[id.RoomID][]*event.Event{"!r:x": {msg(t, "$m", "@alice:x", "!voip help")}})
	resp.NextBatch = "s2"
	err := s.ProcessResponse(context.Background(), resp, "s1")
	require.ErrorContains(t, err, "storing 1 events", "an event that cannot be stored must not be skipped silently")
}

func TestIsOwnJoin(t *testing.T) {
	require.True(t, isOwnJoin(member(t, "$a", "@bot:x", "@bot:x", "join", ""), botID))
	require.True(t, isOwnJoin(member(t, "$a", "@bot:x", "@bot:x", "join", "invite"), botID))
	require.False(t, isOwnJoin(member(t, "$a", "@bot:x", "@bot:x", "join", "join"), botID))
	require.False(t, isOwnJoin(member(t, "$a", "@bot:x", "@bot:x", "leave", "join"), botID))
	require.False(t, isOwnJoin(member(t, "$a", "@alice:x", "@alice:x", "join", ""), botID))
}

func TestInitialSyncKeepsToDeviceMessages(t *testing.T) {
	s, _, rec := newTestSyncer(t)
	toDevice := event.Type{Type: "org.voipbot.test", Class: event.ToDeviceEventType}
	s.intake.on(toDevice, nil, func(_ context.Context, evt *Event) error { rec.all <- evt; return nil })
	resp := &mautrix.RespSync{NextBatch: "s1"}
	resp.ToDevice.Events = []*event.Event{syncEvent(t, map[string]any{"type": "org.voipbot.test", "sender": "@alice:x", "content": map[string]any{"n": 1}})}
	require.NoError(t, s.ProcessResponse(context.Background(), resp, ""))
	select {
	case evt := <-rec.all:
		require.Equal(t, toDevice, evt.Type)
	case <-time.After(10 * time.Second):
		t.Fatal("a to-device message in the first sync was dropped")
	}
}
