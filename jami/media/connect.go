package media

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/pion/ice/v4"
	"golang.org/x/sync/errgroup"
)

// Connect runs ICE on every stream not yet connected (all of them after
// an ICE restart: see NeedsConnect), both components at once, then makes
// its SRTP contexts afresh. It returns when all are connected,
// or with the first failure; the context bounds the wait (a call whose
// peer never answers our checks ends with the context's error).
func (s *Session) Connect(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("connecting media: the session is closed")
	}
	if s.state != stateNegotiated {
		s.mu.Unlock()
		return errors.New("connecting media: the offer/answer is not done")
	}
	type job struct {
		st   *Stream
		comp *component
		rs   *remoteSection
	}
	var jobs []job
	var streams []*Stream
	for _, st := range s.streams {
		if st.rejected || len(st.comps) == 0 || st.comps[0].conn != nil {
			continue
		}
		if st.Mux && len(st.comps) > 1 { // we offered two components, one is used
			if err := st.comps[1].close(); err != nil {
				s.log.Debug().Err(err).Msg("Closing the unused RTCP component")
			}
			st.comps = st.comps[:1]
		}
		for _, c := range st.comps {
			jobs = append(jobs, job{st, c, st.remoteIn})
		}
		streams = append(streams, st)
	}
	controlling, ufrag, pwd := s.controlling, s.remoteUfrag, s.remotePwd
	s.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	for _, j := range jobs {
		g.Go(func() error {
			conn, err := connectComponent(gctx, j.comp, j.rs, controlling, ufrag, pwd)
			if err != nil {
				what := "RTP"
				if j.comp.id == 2 {
					what = "RTCP"
				}
				if ctx.Err() != nil {
					err = fmt.Errorf("no ICE connectivity in time: %w", ctx.Err())
				}
				return fmt.Errorf("connecting %s of stream %s: %w", what, j.st.Label, err)
			}
			j.comp.conn = conn
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range streams {
		if err := st.startSRTP(); err != nil {
			return fmt.Errorf("connecting media: %w", err)
		}
		if s.closed {
			continue
		}
		st.connectedTo(st.comps, &s.pumps)
		if p, err := st.comps[0].agent.GetSelectedCandidatePair(); err == nil && p != nil {
			st.log.Debug().Str("local", p.Local.String()).Str("remote", p.Remote.String()).Msg("Media stream connected")
		}
	}
	return nil
}

// connectComponent gives the agent the peer's candidates of its
// component and runs the checks. A peer that listed none (no ICE in its
// SDP but credentials) is tried at its c= address and ports.
func connectComponent(ctx context.Context, c *component, rs *remoteSection, controlling bool, ufrag, pwd string) (*ice.Conn, error) {
	cands := rs.cands[c.id-1]
	if len(cands) == 0 {
		port, addr := rs.port, rs.addr
		if c.id == 2 {
			port = rs.port + 1
			if rs.rtcpPort != 0 {
				port = rs.rtcpPort
			}
			if rs.rtcpAddr.IsValid() {
				addr = rs.rtcpAddr
			}
		}
		if host, err := hostCandidate(addr, port, c.id); err == nil {
			cands = []ice.Candidate{host}
		}
	}
	for _, cand := range cands {
		if err := c.agent.AddRemoteCandidate(cand); err != nil {
			return nil, fmt.Errorf("adding the candidate %s: %w", cand, err)
		}
	}
	if controlling {
		return c.agent.Dial(ctx, ufrag, pwd)
	}
	return c.agent.Accept(ctx, ufrag, pwd)
}

// NeedsConnect reports whether a stream waits for Connect: after the
// first negotiation, and after a re-offer that restarted ICE.
func (s *Session) NeedsConnect() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.state != stateNegotiated {
		return false
	}
	for _, st := range s.streams {
		if !st.rejected && len(st.comps) > 0 && st.comps[0].conn == nil {
			return true
		}
	}
	return false
}

func hostCandidate(addr netip.Addr, port int, comp uint16) (ice.Candidate, error) {
	if !addr.IsValid() || addr.IsUnspecified() || port <= 0 || port > 0xffff {
		return nil, errors.New("no address")
	}
	network := "udp4"
	if addr.Is6() {
		network = "udp6"
	}
	return ice.NewCandidateHost(&ice.CandidateHostConfig{Network: network, Address: addr.String(), Port: port, Component: comp})
}
