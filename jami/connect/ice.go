package connect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
)

// ICEConfig is where the control connection's ICE-TCP candidates come from.
type ICEConfig struct {
	// TCP is the listener of the passive TCP candidates (shared by every
	// connection, told apart by ICE username): jami-daemon's pjnath
	// refuses to start ICE with a peer that offers only active ones.
	TCP net.Listener
	// IPs restricts the host candidates to these addresses (all of the
	// machine's, loopback excepted, if empty).
	IPs []netip.Addr
	// Loopback lets loopback addresses be candidates (tests).
	Loopback bool
	// Log receives pion's ICE log.
	Log logging.LoggerFactory
}

// iceTCP makes ICE-TCP agents sharing one TCP mux.
type iceTCP struct {
	cfg ICEConfig
	mux *ice.TCPMuxDefault
}

func newICETCP(cfg ICEConfig) *iceTCP {
	if cfg.Log == nil {
		cfg.Log = logging.NewDefaultLoggerFactory()
	}
	mux := ice.NewTCPMuxDefault(ice.TCPMuxParams{
		Listener:       cfg.TCP,
		Logger:         cfg.Log.NewLogger("ice-tcp"),
		ReadBufferSize: 64,
		// dhtnet writes TLS records of up to 16 KiB in one frame.
		WriteBufferSize: 4 << 20,
	})
	return &iceTCP{cfg: cfg, mux: mux}
}

func (t *iceTCP) Close() error { return t.mux.Close() }

// agent makes an agent for one connection and gathers its candidates.
func (t *iceTCP) agent(ctx context.Context) (*ice.Agent, ICE, error) {
	keep := func(ip net.IP) bool {
		if len(t.cfg.IPs) == 0 {
			return true
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return false
		}
		for _, want := range t.cfg.IPs {
			if want == a.Unmap() {
				return true
			}
		}
		return false
	}
	opts := []ice.AgentOption{
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeTCP4, ice.NetworkTypeTCP6}),
		ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost}),
		ice.WithTCPMux(t.mux),
		ice.WithIPFilter(keep),
		ice.WithLoggerFactory(t.cfg.Log),
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
	}
	if t.cfg.Loopback {
		opts = append(opts, ice.WithIncludeLoopback())
	}
	agent, err := ice.NewAgentWithOptions(opts...)
	if err != nil {
		return nil, ICE{}, fmt.Errorf("making the ICE-TCP agent: %w", err)
	}
	desc, err := gather(ctx, agent)
	if err != nil {
		_ = agent.Close()
		return nil, ICE{}, err
	}
	return agent, desc, nil
}

// gather collects the agent's candidates into an ICE description.
func gather(ctx context.Context, agent *ice.Agent) (ICE, error) {
	done := make(chan struct{})
	var once sync.Once
	if err := agent.OnCandidate(func(c ice.Candidate) {
		if c == nil {
			once.Do(func() { close(done) })
		}
	}); err != nil {
		return ICE{}, err
	}
	if err := agent.GatherCandidates(); err != nil {
		return ICE{}, fmt.Errorf("gathering ICE-TCP candidates: %w", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return ICE{}, fmt.Errorf("gathering ICE-TCP candidates: %w", ctx.Err())
	}
	ufrag, pwd, err := agent.GetLocalUserCredentials()
	if err != nil {
		return ICE{}, err
	}
	cands, err := agent.GetLocalCandidates()
	if err != nil {
		return ICE{}, err
	}
	desc := ICE{Ufrag: ufrag, Pwd: pwd}
	for _, c := range cands {
		jc, err := fromPion(c)
		if err != nil {
			continue
		}
		desc.Candidates = append(desc.Candidates, jc)
	}
	if !hasPassive(desc) {
		return ICE{}, errors.New("gathering ICE-TCP candidates: no passive TCP candidate (is the TCP listener on an address the filter keeps?)")
	}
	return desc, nil
}

func hasPassive(d ICE) bool {
	for _, c := range d.Candidates {
		if c.Transport == TCP && c.TCPType == "passive" {
			return true
		}
	}
	return false
}

// fromPion is a pion candidate in Jami's form.
func fromPion(c ice.Candidate) (Candidate, error) {
	return ParseCandidate(c.Marshal())
}

// toPion is a Jami candidate for pion (RFC syntax: lower-case transport).
func toPion(c Candidate) (ice.Candidate, error) {
	line := fmt.Sprintf("%s %d %s %d %s %d typ %s", c.Foundation, c.Component, strings.ToLower(string(c.Transport)), c.Priority, c.Addr.Addr(), c.Addr.Port(), c.Type)
	if c.Transport == TCP {
		line += " tcptype " + c.TCPType
	}
	return ice.UnmarshalCandidate(line)
}

// connectICE runs the checks with the peer's description and gives the
// selected pair's connection as a byte stream. The callee controls, the
// caller is controlled (jami-daemon's roles).
func connectICE(ctx context.Context, agent *ice.Agent, remote ICE, controlling bool) (net.Conn, error) {
	added := 0
	for _, c := range remote.Candidates {
		if c.Transport != TCP || c.Component != 1 {
			continue
		}
		pc, err := toPion(c)
		if err != nil {
			continue
		}
		if err := agent.AddRemoteCandidate(pc); err == nil {
			added++
		}
	}
	if added == 0 {
		return nil, errors.New("the peer offers no TCP candidate")
	}
	var conn *ice.Conn
	var err error
	if controlling {
		conn, err = agent.Dial(ctx, remote.Ufrag, remote.Pwd)
	} else {
		conn, err = agent.Accept(ctx, remote.Ufrag, remote.Pwd)
	}
	if err != nil {
		return nil, fmt.Errorf("ICE-TCP checks: %w", err)
	}
	return &frameStream{Conn: conn}, nil
}

// frameStream reads an ICE connection, whose reads give one RFC 4571
// frame each, as a byte stream (what TLS wants); each write is a frame.
type frameStream struct {
	*ice.Conn
	buf  []byte
	rest []byte
}

// maxFrameSize is the largest frame written: pion's ICE-TCP reader takes
// none larger (its receive MTU), so neither a bot peer nor we ever see one
// it would refuse. TLS above runs over the byte stream, so a record split
// across frames is read whole. Reads take whatever frame comes.
const (
	maxFrameSize  = 8192
	readFrameSize = 0xFFFF
)

func (s *frameStream) Read(p []byte) (int, error) {
	for len(s.rest) == 0 {
		if s.buf == nil {
			s.buf = make([]byte, readFrameSize)
		}
		n, err := s.Conn.Read(s.buf)
		if n == 0 && err != nil {
			return 0, err
		}
		s.rest = s.buf[:n] // an empty frame carries nothing: read on
	}
	n := copy(p, s.rest)
	s.rest = s.rest[n:]
	return n, nil
}

// Write sends p in frames of at most maxFrameSize bytes.
func (s *frameStream) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), maxFrameSize)
		if _, err := s.Conn.Write(p[:n]); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}
