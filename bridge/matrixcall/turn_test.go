package matrixcall

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"

	"github.com/voipbot/voipbot/matrix"
)

func TestICEServers(t *testing.T) {
	var resp *matrix.TURNServer
	var err error
	s := newICEServers([]ICEServerConfig{{URLs: []string{"stun:stun.example.com"}}},
		func(context.Context) (*matrix.TURNServer, error) { return resp, err }, zerolog.Nop())
	stun := webrtc.ICEServer{URLs: []string{"stun:stun.example.com"}}
	assert.Equal(t, []webrtc.ICEServer{stun}, s.current(), "configured servers before any fetch")

	resp = &matrix.TURNServer{URIs: []string{"turn:turn.example.com:3478"}, Username: "1:@bot:hs", Password: "pw", TTL: 24 * time.Hour}
	next, ok := s.refreshOnce(context.Background(), 0)
	assert.True(t, ok)
	assert.Equal(t, 24*time.Hour-turnRefreshMargin, next, "renewed 10 minutes before it expires")
	turn := webrtc.ICEServer{URLs: []string{"turn:turn.example.com:3478"}, Username: "1:@bot:hs", Credential: "pw"}
	assert.Equal(t, []webrtc.ICEServer{stun, turn}, s.current())

	resp.TTL = 5 * time.Minute
	next, _ = s.refreshOnce(context.Background(), 0)
	assert.Equal(t, 150*time.Second, next, "short TTLs are renewed at half-life")

	err = errors.New("M_UNRECOGNIZED")
	next, ok = s.refreshOnce(context.Background(), 3)
	assert.False(t, ok)
	assert.Equal(t, 4*time.Minute, next, "failures back off")
	assert.Equal(t, []webrtc.ICEServer{stun, turn}, s.current(), "a failed refresh keeps the last credentials")

	err = nil
	resp = &matrix.TURNServer{TTL: 24 * time.Hour} // Conduit's answer when it has none
	s.refreshOnce(context.Background(), 0)
	assert.Equal(t, []webrtc.ICEServer{stun}, s.current(), "empty uris means no TURN")
}
