package call

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/matrix/callevent"
)

func holdOffers(effects []Effect) []bool {
	var out []bool
	for _, e := range effects {
		if h, ok := e.(HoldOffer); ok {
			out = append(out, h.Hold)
		}
	}
	return out
}

// A bridged party's hold puts the peer on hold with a negotiate offer of
// ours: at once when connected, else once connected; one at a time; a hold
// offer that fails or is never answered leaves the call as it was.
func TestHoldPeer(t *testing.T) {
	m, _ := NewInbound(opts(), alice, invite(aliceA, callevent.Version1), 0)
	_, err := m.Answer()
	require.NoError(t, err)
	_, err = m.LocalDescription("v=0")
	require.NoError(t, err)
	eff, err := m.HoldPeer(true)
	require.NoError(t, err)
	assert.Empty(t, holdOffers(eff), "not connected yet")
	eff, err = m.MediaConnected()
	require.NoError(t, err)
	assert.Equal(t, []bool{true}, holdOffers(eff), "offered once connected")

	// A resume while the hold offer is out waits for its answer.
	eff, err = m.HoldPeer(false)
	require.NoError(t, err)
	assert.Empty(t, holdOffers(eff))
	eff, err = m.LocalNegotiationOffer("v=0 hold")
	require.NoError(t, err)
	assert.Len(t, sentOf(eff, "m.call.negotiate"), 1)
	eff, err = m.Remote(alice, negotiateAnswer())
	require.NoError(t, err)
	var apply ApplyAnswer
	for _, e := range eff {
		if a, ok := e.(ApplyAnswer); ok {
			apply = a
		}
	}
	assert.True(t, apply.Hold, "a hold answer that cannot be applied changes nothing")
	assert.Equal(t, []bool{false}, holdOffers(eff), "the resume goes out after the answer")

	// The resume offer fails: the call goes on, and a later hold is offered.
	_, err = m.NegotiationFailed(errors.New("pion says no"), true)
	require.Error(t, err)
	assert.Equal(t, StateConnected, m.State)
	eff, err = m.HoldPeer(true)
	require.NoError(t, err)
	assert.Empty(t, holdOffers(eff), "the peer was never resumed: it is still on hold")
	eff, err = m.HoldPeer(false)
	require.NoError(t, err)
	assert.Equal(t, []bool{false}, holdOffers(eff))

	// Never answered: as if never made.
	_, err = m.TimerFired(TimerNegotiate)
	require.Error(t, err)
	assert.Equal(t, StateConnected, m.State, "the call goes on")
}

// A call that rings a whole room (no invitee) is answered by whoever
// answers first, but never by our own user.
func TestRoomCallAnsweredByAnyMember(t *testing.T) {
	m, _ := NewOutbound(opts(), "")
	_, err := m.LocalDescription("v=0")
	require.NoError(t, err)
	_, err = m.Remote(botElse.User, answer(botElse))
	require.Error(t, err, "our own user's other device does not answer our call")
	eff, err := m.Remote(eve, answer(evePty))
	require.NoError(t, err)
	assert.Equal(t, StateConnecting, m.State)
	assert.Equal(t, eve, m.Peer.User)
	assert.NotEmpty(t, eff)
}
