package matrixcall

import (
	"context"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/matrix"
)

// turnFetcher is how TURN credentials are fetched: the homeserver's
// /voip/turnServer through *matrix.Client.
type turnFetcher func(ctx context.Context) (*matrix.TURNServer, error)

// TURN refresh timing: renew before the credentials expire (js-sdk refetches
// when less than 10 minutes are left); retry failures with backoff.
const (
	turnRefreshMargin = 10 * time.Minute
	turnMinRefresh    = time.Minute
	turnRetryMin      = 30 * time.Second
	turnRetryMax      = 30 * time.Minute
)

// iceServers holds the ICE servers calls use: those from the config, plus
// the homeserver's TURN server, kept fresh.
type iceServers struct {
	static []webrtc.ICEServer
	fetch  turnFetcher
	log    zerolog.Logger

	mu   sync.Mutex
	turn *webrtc.ICEServer
}

func newICEServers(cfg []ICEServerConfig, fetch turnFetcher, log zerolog.Logger) *iceServers {
	s := &iceServers{fetch: fetch, log: log.With().Str("component", "turn").Logger()}
	for _, c := range cfg {
		server := webrtc.ICEServer{URLs: c.URLs, Username: c.Username}
		if c.Credential != "" {
			// pion tells "no credential" (an error for TURN) by nil.
			server.Credential = c.Credential
		}
		s.static = append(s.static, server)
	}
	return s
}

// current is what a new call should use.
func (s *iceServers) current() []webrtc.ICEServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]webrtc.ICEServer{}, s.static...)
	if s.turn != nil {
		out = append(out, *s.turn)
	}
	return out
}

// refreshOnce fetches TURN credentials and says when to fetch again.
func (s *iceServers) refreshOnce(ctx context.Context, failures int) (next time.Duration, ok bool) {
	resp, err := s.fetch(ctx)
	if err != nil {
		backoff := min(turnRetryMin<<min(failures, 10), turnRetryMax)
		s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("Cannot get TURN credentials from the homeserver; calls use the configured ICE servers meanwhile")
		return backoff, false
	}
	s.mu.Lock()
	if len(resp.URIs) == 0 {
		s.turn = nil
	} else {
		s.turn = &webrtc.ICEServer{URLs: resp.URIs, Username: resp.Username, Credential: resp.Password}
	}
	s.mu.Unlock()
	if len(resp.URIs) == 0 {
		s.log.Info().Msg("The homeserver offers no TURN server")
	} else {
		s.log.Info().Strs("uris", resp.URIs).Dur("ttl", resp.TTL).Msg("TURN credentials from the homeserver")
	}
	return max(resp.TTL-turnRefreshMargin, resp.TTL/2, turnMinRefresh), true
}

// run keeps the TURN credentials fresh until ctx ends; first is when the
// next fetch is due after the one made at start.
func (s *iceServers) run(ctx context.Context, first time.Duration) {
	next, failures := first, 0
	for {
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		var ok bool
		if next, ok = s.refreshOnce(ctx, failures); ok {
			failures = 0
		} else {
			failures++
		}
	}
}

// ICEServers are the STUN and TURN servers a new call uses (calls.ice_servers
// and the homeserver's TURN server): other leg kinds' media uses them too.
func (m *Manager) ICEServers() []webrtc.ICEServer { return m.ice.current() }
