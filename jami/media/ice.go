package media

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/pion/ice/v4"

	"github.com/voipbot/voipbot/internal/pionlog"
)

// component is one ICE component of a section: an agent of its own, its
// host candidates, and once connected its conn.
type component struct {
	id    uint16 // 1 RTP, 2 RTCP
	agent *ice.Agent
	cands []ice.Candidate
	conn  *ice.Conn
}

// iceCredentials makes a ufrag and password of the lengths RFC 8445
// asks for at least (4 and 22 ice-chars), as pjnath's are.
func iceCredentials() (ufrag, pwd string, err error) {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 8+24)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("making ICE credentials: %w", err)
	}
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b[:8]), string(b[8:]), nil
}

// newComponent makes an agent with the session's credentials and gathers
// its UDP host candidates.
func (s *Session) newComponent(ctx context.Context, id uint16, ufrag, pwd string) (*component, error) {
	opts := []ice.AgentOption{
		ice.WithLocalCredentials(ufrag, pwd),
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeUDP6}),
		ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost}),
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithLoggerFactory(pionlog.New(s.log)),
	}
	if len(s.opts.IPs) > 0 {
		ips := s.opts.IPs
		opts = append(opts, ice.WithIPFilter(func(ip net.IP) bool {
			a, ok := netip.AddrFromSlice(ip)
			return ok && slices.Contains(ips, a.Unmap())
		}))
		if slices.ContainsFunc(ips, netip.Addr.IsLoopback) {
			opts = append(opts, ice.WithIncludeLoopback())
		}
	} else if s.opts.IncludeLoopback {
		opts = append(opts, ice.WithIncludeLoopback())
	}
	if len(s.opts.Interfaces) > 0 {
		names := s.opts.Interfaces
		opts = append(opts, ice.WithInterfaceFilter(func(n string) bool { return slices.Contains(names, n) }))
	}
	if s.opts.PortMin != 0 || s.opts.PortMax != 0 {
		opts = append(opts, ice.WithPortRange(s.opts.PortMin, s.opts.PortMax))
	}
	agent, err := ice.NewAgentWithOptions(opts...)
	if err != nil {
		return nil, fmt.Errorf("making the ICE agent of component %d: %w", id, err)
	}
	c := &component{id: id, agent: agent}
	done := make(chan struct{})
	var cands []ice.Candidate
	if err := agent.OnCandidate(func(cand ice.Candidate) {
		if cand == nil {
			close(done)
			return
		}
		cands = append(cands, cand)
	}); err != nil {
		_ = agent.GracefulClose()
		return nil, fmt.Errorf("gathering ICE candidates of component %d: %w", id, err)
	}
	if err := agent.GatherCandidates(); err != nil {
		_ = agent.GracefulClose()
		return nil, fmt.Errorf("gathering ICE candidates of component %d: %w", id, err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		_ = agent.GracefulClose()
		return nil, fmt.Errorf("gathering ICE candidates of component %d: %w", id, ctx.Err())
	}
	if len(cands) == 0 {
		_ = agent.GracefulClose()
		return nil, fmt.Errorf("gathering ICE candidates of component %d: no usable address", id)
	}
	// IPv4 first: the m= and c= lines take the first candidate, and jamid
	// on IPv4 only cannot reach an IPv6 default.
	slices.SortStableFunc(cands, func(a, b ice.Candidate) int {
		return boolInt(isIPv6(a)) - boolInt(isIPv6(b))
	})
	c.cands = cands
	return c, nil
}

func isIPv6(c ice.Candidate) bool {
	a, err := netip.ParseAddr(c.Address())
	return err == nil && a.Unmap().Is6()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// candidateLine is a candidate as jamid writes it (RFC 5245 15.1), with
// our component number: pion's agents all think they are component 1.
// The priority is the RFC's for that component.
func candidateLine(c ice.Candidate, comp uint16) string {
	prio := c.Priority() - uint32(comp-1) // the low byte is 256 - component
	return fmt.Sprintf("%s %d UDP %d %s %d typ %s", c.Foundation(), comp, prio, c.Address(), c.Port(), c.Type())
}

// defaultCandidate is the candidate of the m=, c= and a=rtcp lines: the
// selected one once connected, else the first host candidate.
func (c *component) defaultCandidate() ice.Candidate {
	if c.conn != nil {
		if p, err := c.agent.GetSelectedCandidatePair(); err == nil && p != nil {
			return p.Local
		}
	}
	return c.cands[0]
}

func (c *component) close() error {
	if err := c.agent.GracefulClose(); err != nil {
		return fmt.Errorf("closing the ICE agent of component %d: %w", c.id, err)
	}
	return nil
}
