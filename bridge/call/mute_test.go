package call

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/matrix/callevent"
)

const sdpWithStream = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:voipbot track\r\n"

func sentOf(effects []Effect, t callevent.Type) []callevent.Content {
	var out []callevent.Content
	for _, e := range effects {
		if s, ok := e.(Send); ok && s.Type == t {
			out = append(out, s.Content)
		}
	}
	return out
}

// A bridged party's mute reaches the peer as stream metadata: in the answer
// if it came first, as sdp_stream_metadata_changed after.
func TestLocalMuted(t *testing.T) {
	m, _ := NewInbound(opts(), alice, invite(aliceA, callevent.Version1), 0)
	_, err := m.Answer()
	require.NoError(t, err)
	eff, err := m.SetLocalMuted(true, false)
	require.NoError(t, err)
	assert.Empty(t, sentOf(eff, callevent.TypeSDPStreamMetadataChanged), "before the answer: it carries it")
	eff, err = m.LocalDescription(sdpWithStream)
	require.NoError(t, err)
	ans := sentOf(eff, callevent.TypeAnswer)[0].(*callevent.Answer)
	assert.Equal(t, callevent.Streams{"voipbot": {Purpose: callevent.PurposeUserMedia, AudioMuted: true}}, ans.Streams())

	eff, err = m.SetLocalMuted(false, false)
	require.NoError(t, err)
	changed := sentOf(eff, callevent.TypeSDPStreamMetadataChanged)
	require.Len(t, changed, 1)
	assert.False(t, changed[0].(*callevent.SDPStreamMetadataChanged).Streams()["voipbot"].AudioMuted)
	eff, err = m.SetLocalMuted(false, false)
	require.NoError(t, err)
	assert.Empty(t, eff, "no change, nothing sent")

	// Outbound: a mute while the invite rings is told with the answer.
	m, _ = NewOutbound(opts(), alice)
	_, err = m.LocalDescription(sdpWithStream)
	require.NoError(t, err)
	_, err = m.SetLocalMuted(false, true)
	require.NoError(t, err)
	eff, err = m.Remote(alice, answer(aliceA))
	require.NoError(t, err)
	changed = sentOf(eff, callevent.TypeSDPStreamMetadataChanged)
	require.Len(t, changed, 1)
	assert.True(t, changed[0].(*callevent.SDPStreamMetadataChanged).Streams()["voipbot"].VideoMuted)
}
