package store

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"
)

func TestAccountRoundTripAndSingleUser(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)

	got, err := s.Account(ctx)
	require.NoError(t, err)
	require.Nil(t, got, "no login before the first one")

	a := &Account{UserID: "@bot:example.com", DeviceID: "DEV1", AccessToken: "tok1",
		Homeserver: "https://hs.example.com", LoggedInAt: time.UnixMilli(1700000000000)}
	require.NoError(t, s.PutAccount(ctx, a))
	got, err = s.Account(ctx)
	require.NoError(t, err)
	require.Equal(t, a, got)

	a.AccessToken = "tok2"
	require.NoError(t, s.PutAccount(ctx, a), "the same user may replace its token")
	got, err = s.Account(ctx)
	require.NoError(t, err)
	require.Equal(t, "tok2", got.AccessToken)

	err = s.PutAccount(ctx, &Account{UserID: "@other:example.com", DeviceID: "D", AccessToken: "t", Homeserver: "h"})
	require.ErrorContains(t, err, "@bot:example.com")
}

func TestAccountSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "voipbot.db")
	s, err := Open(ctx, Config{Path: path}, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, s.PutAccount(ctx, &Account{UserID: "@bot:example.com", DeviceID: "DEV", AccessToken: "t", Homeserver: "h", LoggedInAt: time.UnixMilli(5)}))
	require.NoError(t, s.CommitIntake(ctx, &Intake{SyncUser: "@bot:example.com", NextBatch: "s1"}))
	require.NoError(t, s.Close())

	s, err = Open(ctx, Config{Path: path}, zerolog.Nop())
	require.NoError(t, err)
	defer s.Close()
	a, err := s.Account(ctx)
	require.NoError(t, err)
	require.Equal(t, "DEV", string(a.DeviceID))
	nb, err := s.NextBatch(ctx, "@bot:example.com")
	require.NoError(t, err)
	require.Equal(t, "s1", nb)
}

func inboxEvent(queue, eventID string) *InboxEvent {
	raw, _ := json.Marshal(map[string]any{"event_id": eventID, "type": "m.room.message"})
	return &InboxEvent{Queue: queue, EventID: id.EventID("$" + eventID), Source: 1, Event: raw, ReceivedAt: time.UnixMilli(1000)}
}

func TestIntakeCommitsEventsWithSyncPosition(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)

	nb, err := s.NextBatch(ctx, "@bot:example.com")
	require.NoError(t, err)
	require.Empty(t, nb)

	in := &Intake{SyncUser: "@bot:example.com", NextBatch: "s2",
		Events: []*InboxEvent{inboxEvent("!a:x", "1"), inboxEvent("!b:x", "2"), inboxEvent("!a:x", "3")}}
	require.NoError(t, s.CommitIntake(ctx, in))
	require.Less(t, in.Events[0].Seq, in.Events[1].Seq)
	require.Less(t, in.Events[1].Seq, in.Events[2].Seq)

	nb, err = s.NextBatch(ctx, "@bot:example.com")
	require.NoError(t, err)
	require.Equal(t, "s2", nb)
	n, err := s.InboxLen(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	require.NoError(t, s.DeleteInbox(ctx, in.Events[1].Seq))
	pending, err := s.ResumeInbox(ctx)
	require.NoError(t, err)
	require.Len(t, pending, 2)
	require.Equal(t, "$1", string(pending[0].EventID))
	require.Equal(t, "$3", string(pending[1].EventID))
	require.Equal(t, 1, pending[0].Attempts)
	require.JSONEq(t, string(in.Events[0].Event), string(pending[0].Event))
	require.Equal(t, int64(1000), pending[0].ReceivedAt.UnixMilli())

	pending, err = s.ResumeInbox(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, pending[0].Attempts, "each resume counts an attempt")

	require.NoError(t, s.ResetSyncPosition(ctx, "@bot:example.com"))
	nb, err = s.NextBatch(ctx, "@bot:example.com")
	require.NoError(t, err)
	require.Empty(t, nb)
}

func TestIntakeFailureCommitsNothing(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	require.NoError(t, s.CommitIntake(ctx, &Intake{TxnID: "t1"}))
	// A repeated transaction ID violates the primary key: the events of the
	// failed commit must not be left behind.
	err := s.CommitIntake(ctx, &Intake{TxnID: "t1", Events: []*InboxEvent{inboxEvent("!a:x", "1")}})
	require.Error(t, err)
	n, err := s.InboxLen(ctx)
	require.NoError(t, err)
	require.Zero(t, n)

	require.ErrorContains(t, s.CommitIntake(ctx, &Intake{}), "exactly one")
	require.ErrorContains(t, s.CommitIntake(ctx, &Intake{TxnID: "x", NextBatch: "y"}), "exactly one")
}

func TestAppserviceTxnDedupAndPrune(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	seen, err := s.TxnSeen(ctx, "txn-1")
	require.NoError(t, err)
	require.False(t, seen)
	require.NoError(t, s.CommitIntake(ctx, &Intake{TxnID: "txn-1", Events: []*InboxEvent{inboxEvent("!a:x", "1")}}))
	seen, err = s.TxnSeen(ctx, "txn-1")
	require.NoError(t, err)
	require.True(t, seen)

	n, err := s.PruneTxns(ctx, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "a fresh transaction ID is kept")
	n, err = s.PruneTxns(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

func TestRoomMembershipAndSettings(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	room, err := s.Room(ctx, "!r:x")
	require.NoError(t, err)
	require.Nil(t, room)

	require.ErrorContains(t, s.SetRoomSettings(ctx, "!r:x", RoomSettings{}), "not in that room")

	require.NoError(t, s.SetMembership(ctx, "!r:x", MembershipInvite, "@alice:x"))
	require.NoError(t, s.SetMembership(ctx, "!r:x", MembershipJoin, ""))
	room, err = s.Room(ctx, "!r:x")
	require.NoError(t, err)
	require.Equal(t, MembershipJoin, room.Membership)
	require.Equal(t, "@alice:x", string(room.Inviter), "the inviter is kept after joining")
	require.NoError(t, s.SetRoomSettings(ctx, "!r:x", RoomSettings{}))

	n, err := s.CountRooms(ctx, MembershipJoin)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	require.Error(t, s.SetMembership(ctx, "!r:x", Membership("knock-knock"), ""), "unknown memberships are refused by the schema")
}

// TestRoomsRoutedTo: the joined rooms whose route is a target, newest
// first; a room the bot left does not count.
func TestRoomsRoutedTo(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	const route = "jami:0123456789abcdef0123456789abcdef01234567"
	for _, r := range []id.RoomID{"!a:x", "!b:x", "!c:x"} {
		require.NoError(t, s.SetMembership(ctx, r, MembershipJoin, "@alice:x"))
	}
	require.NoError(t, s.SetRoomSettings(ctx, "!a:x", RoomSettings{Route: route}))
	require.NoError(t, s.SetRoomSettings(ctx, "!b:x", RoomSettings{Route: "echo"}))
	require.NoError(t, s.SetRoomSettings(ctx, "!c:x", RoomSettings{Route: route}))
	rooms, err := s.RoomsRoutedTo(ctx, route)
	require.NoError(t, err)
	require.ElementsMatch(t, []id.RoomID{"!a:x", "!c:x"}, rooms)
	require.NoError(t, s.SetMembership(ctx, "!c:x", MembershipLeave, ""))
	rooms, err = s.RoomsRoutedTo(ctx, route)
	require.NoError(t, err)
	require.Equal(t, []id.RoomID{"!a:x"}, rooms)
	rooms, err = s.RoomsRoutedTo(ctx, "jami:ffffffffffffffffffffffffffffffffffffffff")
	require.NoError(t, err)
	require.Empty(t, rooms)
}

func TestCallRecords(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	require.NoError(t, s.SetMembership(ctx, "!r:x", MembershipJoin, "@alice:x"))

	c := &Call{RoomID: "!r:x", CallID: "1700000000000abcdefghijklmnop", OurPartyID: "BOTDEVICE",
		PeerUserID: "@alice:x", PeerPartyID: "a+b/c=", Direction: CallInbound, Version: "1",
		State: "ringing", Lifetime: 60 * time.Second, InviteEventID: "$inv"}
	require.NoError(t, s.PutCall(ctx, c))
	require.False(t, c.CreatedAt.IsZero())

	got, err := s.Call(ctx, "!r:x", c.CallID)
	require.NoError(t, err)
	require.Equal(t, c.State, got.State)
	require.Equal(t, c.PeerPartyID, got.PeerPartyID)
	require.Equal(t, 60*time.Second, got.Lifetime)
	require.True(t, got.AnsweredAt.IsZero())

	other := &Call{RoomID: "!r:x", CallID: "2", OurPartyID: "BOTDEVICE", PeerUserID: "@bob:x",
		Direction: CallOutbound, State: "invite_sent"}
	require.NoError(t, s.PutCall(ctx, other))
	counts, err := s.CountCallsByState(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"ringing": 1, "invite_sent": 1}, counts)

	c.State = "connected"
	c.AnsweredAt = time.UnixMilli(1700000001000)
	c.ConnectedAt = time.UnixMilli(1700000002000)
	require.NoError(t, s.PutCall(ctx, c))
	c.State = CallStateEnded
	c.HangupReason = "user_hangup"
	c.HangupBy = "remote"
	c.EndedAt = time.UnixMilli(1700000009000)
	require.NoError(t, s.PutCall(ctx, c))

	got, err = s.Call(ctx, "!r:x", c.CallID)
	require.NoError(t, err)
	require.Equal(t, "user_hangup", got.HangupReason)
	require.Equal(t, int64(1700000002000), got.ConnectedAt.UnixMilli())
	require.Equal(t, int64(1700000009000), got.EndedAt.UnixMilli())

	active, err := s.ActiveCalls(ctx)
	require.NoError(t, err)
	require.Len(t, active, 1)
	require.Equal(t, "2", active[0].CallID)

	missing, err := s.Call(ctx, "!r:x", "nope")
	require.NoError(t, err)
	require.Nil(t, missing)

	require.ErrorContains(t, s.PutCall(ctx, &Call{RoomID: "!r:x", CallID: "3", State: "ringing"}), "direction")
	require.ErrorContains(t, s.PutCall(ctx, &Call{RoomID: "!r:x", CallID: "3", Direction: CallInbound}), "state")
	err = s.PutCall(ctx, &Call{RoomID: "!unknown:x", CallID: "4", Direction: CallInbound, State: "ringing"})
	require.Error(t, err, "a call in a room the bot never was in violates the foreign key")
}

func TestDHTState(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	n, err := st.DHTNode(ctx)
	require.NoError(t, err)
	require.Nil(t, n, "nothing before the first start")
	require.NoError(t, st.PutDHTNode(ctx, &DHTNode{NodeID: []byte{1, 2}, AccountArchive: []byte("archive"), KeyPEM: "key", CertPEM: "cert"}))
	n, err = st.DHTNode(ctx)
	require.NoError(t, err)
	require.Equal(t, &DHTNode{NodeID: []byte{1, 2}, AccountArchive: []byte("archive"), KeyPEM: "key", CertPEM: "cert"}, n)

	require.NoError(t, st.PutDHTValue(ctx, DHTValue{Hash: []byte{9}, ValueID: 1 << 63, Packed: []byte("v1")}))
	require.NoError(t, st.PutDHTValue(ctx, DHTValue{Hash: []byte{9}, ValueID: 1 << 63, Packed: []byte("v2")}))
	values, err := st.DHTValues(ctx)
	require.NoError(t, err)
	require.Equal(t, []DHTValue{{Hash: []byte{9}, ValueID: 1 << 63, Packed: []byte("v2")}}, values, "the full 64-bit id survives")
	require.NoError(t, st.DeleteDHTValue(ctx, []byte{9}, 1<<63))
	values, err = st.DHTValues(ctx)
	require.NoError(t, err)
	require.Empty(t, values)

	now := time.UnixMilli(time.Now().UnixMilli())
	require.NoError(t, st.ReplaceDHTPeers(ctx, []DHTPeer{{Address: "192.0.2.1:4222", NodeID: []byte{1}, LastSeen: now}}))
	require.NoError(t, st.ReplaceDHTPeers(ctx, []DHTPeer{{Address: "192.0.2.2:4222", NodeID: []byte{2}, LastSeen: now}}))
	peers, err := st.DHTPeers(ctx)
	require.NoError(t, err)
	require.Equal(t, []DHTPeer{{Address: "192.0.2.2:4222", NodeID: []byte{2}, LastSeen: now}}, peers)
}
