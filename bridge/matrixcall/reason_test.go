package matrixcall

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/bridge/call"
	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/matrix/callevent"
)

func reasonOpts() call.Options {
	return call.Options{Room: testRoom, CallID: "1700000000000abcdefghijklmnop", Us: call.Party{User: testBot, PartyID: callevent.PartyID(botDev)},
		Timeouts: call.Timeouts{InviteLifetime: time.Minute, Connect: 30 * time.Second}}
}

func ringingInbound(t *testing.T) *call.Machine {
	inv := &callevent.Invite{Common: callevent.Common{CallID: "1700000000000abcdefghijklmnop", PartyID: "ALICE", Version: callevent.Version1},
		Lifetime: 60000, Offer: callevent.SessionDescription{Type: callevent.SDPOffer, SDP: "v=0"}}
	m, _ := call.NewInbound(reasonOpts(), alice, inv, 0)
	require.Equal(t, call.StateRinging, m.State)
	return m
}

// What a conversation's reason becomes on the wire, for a call that rings
// here (the bridged caller, waiting for the far end) and for one that does
// not.
func TestHangupInputMapsReasons(t *testing.T) {
	cases := []struct {
		reason leg.Reason
		typ    callevent.Type
		wire   callevent.HangupReason
	}{
		{leg.Declined, callevent.TypeReject, ""},
		{leg.Hangup, callevent.TypeReject, ""},
		{leg.Busy, callevent.TypeReject, callevent.ReasonUserBusy},
		{leg.NoAnswer, callevent.TypeReject, callevent.ReasonInviteTimeout},
		{leg.Failed, callevent.TypeReject, callevent.ReasonUnknownError},
	}
	for _, tc := range cases {
		m := ringingInbound(t)
		effects, err := hangupInput(m, tc.reason, "far end")
		require.NoError(t, err)
		send := firstSend(t, effects)
		assert.Equal(t, tc.typ, send.Type, tc.reason)
		assert.Equal(t, tc.wire, send.Content.(*callevent.Reject).Reason, tc.reason)
		assert.Equal(t, call.StateEnded, m.State)
	}
	// An outbound call that rings there is hung up with the reason.
	for r, wire := range map[leg.Reason]callevent.HangupReason{
		leg.Hangup: callevent.ReasonUserHangup, leg.NoAnswer: callevent.ReasonInviteTimeout,
		leg.Busy: callevent.ReasonUserBusy, leg.Failed: callevent.ReasonUnknownError, leg.Shutdown: callevent.ReasonUserHangup,
	} {
		m, _ := call.NewOutbound(reasonOpts(), alice)
		_, err := m.LocalDescription("v=0")
		require.NoError(t, err)
		effects, err := hangupInput(m, r, "")
		require.NoError(t, err)
		send := firstSend(t, effects)
		assert.Equal(t, callevent.TypeHangup, send.Type, r)
		assert.Equal(t, wire, send.Content.(*callevent.Hangup).Reason, r)
	}
}

func firstSend(t *testing.T, effects []call.Effect) call.Send {
	t.Helper()
	for _, e := range effects {
		if s, ok := e.(call.Send); ok {
			return s
		}
	}
	t.Fatal("nothing sent")
	return call.Send{}
}

// What the far end's Matrix answer means to the conversation.
func TestEndOfMapsMatrixReasons(t *testing.T) {
	placed := func() *call.Machine {
		m, _ := call.NewOutbound(reasonOpts(), alice)
		_, err := m.LocalDescription("v=0")
		require.NoError(t, err)
		require.Equal(t, call.StateInviteSent, m.State)
		return m
	}
	reject := func(reason callevent.HangupReason) *callevent.Reject {
		return &callevent.Reject{Common: callevent.Common{CallID: "1700000000000abcdefghijklmnop", PartyID: "ALICEDEV", Version: callevent.Version1}, Reason: reason}
	}
	m := placed()
	_, err := m.Remote(alice, reject(""))
	require.NoError(t, err)
	assert.Equal(t, leg.End{Reason: leg.Declined, By: leg.ByPeer, Detail: m.Reason}, endOf(m))

	m = placed()
	_, err = m.Remote(alice, reject(callevent.ReasonUserBusy))
	require.NoError(t, err)
	assert.Equal(t, leg.Busy, endOf(m).Reason, "js-sdk's busy reject is busy")

	m = placed()
	_, err = m.TimerFired(call.TimerInvite)
	require.NoError(t, err)
	assert.Equal(t, leg.End{Reason: leg.NoAnswer, By: leg.ByBot, Detail: m.Reason}, endOf(m))

	m = placed()
	_, err = m.MediaFailed("ice")
	require.NoError(t, err)
	assert.Equal(t, leg.Failed, endOf(m).Reason)

	m = ringingInbound(t)
	_, err = m.Remote(alice, &callevent.Hangup{Common: callevent.Common{CallID: m.CallID, PartyID: "ALICE", Version: callevent.Version1}})
	require.NoError(t, err)
	assert.Equal(t, leg.End{Reason: leg.Hangup, By: leg.ByPeer, Detail: m.Reason}, endOf(m), "a caller giving up before an answer")
}
