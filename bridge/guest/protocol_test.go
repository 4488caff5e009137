package guest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecode(t *testing.T) {
	m, err := decode([]byte(`{"type":"call","sessionID":"s1","callType":1,"sdp":"v=0","userInfo":{"name":"Ann"}}`))
	require.NoError(t, err)
	assert.Equal(t, "Ann", m.UserInfo["name"])
	m, err = decode([]byte(`{"type":"iceCandidates","sessionID":"s1","iceCandidates":[{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}]}`))
	require.NoError(t, err)
	ci := m.ICECandidates[0].init()
	assert.Equal(t, "0", *ci.SDPMid)
	assert.Equal(t, uint16(0), *ci.SDPMLineIndex)
	_, err = decode([]byte(`{"type":"hangUp","sessionID":"s1"}`))
	require.NoError(t, err)

	for name, bad := range map[string]string{
		"not JSON":         `{"type":`,
		"two values":       `{"type":"hangUp","sessionID":"s"} {}`,
		"unknown field":    `{"type":"hangUp","sessionID":"s","admin":true}`,
		"bot's type":       `{"type":"accept","sessionID":"s","sdp":"v=0"}`,
		"no session":       `{"type":"hangUp"}`,
		"long session":     `{"type":"hangUp","sessionID":"` + strings.Repeat("s", 65) + `"}`,
		"bad call type":    `{"type":"call","sessionID":"s","callType":3,"sdp":"v=0"}`,
		"call without sdp": `{"type":"call","sessionID":"s","callType":2}`,
		"long name":        `{"type":"call","sessionID":"s","callType":2,"sdp":"v=0","userInfo":{"name":"` + strings.Repeat("n", 65) + `"}}`,
		"many candidates":  `{"type":"iceCandidates","sessionID":"s","iceCandidates":[` + strings.Repeat(`{"candidate":"c"},`, 64) + `{"candidate":"c"}]}`,
		"non-string info":  `{"type":"update","sessionID":"s","userInfo":{"audio_muted":true}}`,
		"nested object":    `{"type":"update","sessionID":"s","userInfo":{"a":{"b":"c"}}}`,
		"untyped":          `{"sessionID":"s"}`,
	} {
		_, err := decode([]byte(bad))
		assert.ErrorIs(t, err, errProtocol, name)
	}
}
