package voip

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// GatherUntil says what a local description waits for before it is
// returned, within the wait its caller gives (OfferOptions.GatherWait, the
// gatherWait of CreateAnswer and RestartICE). What is not in the
// description trickles (Handler.OnLocalCandidates).
type GatherUntil int

const (
	// GatherComplete waits for gathering to complete: the host candidates,
	// and those of every STUN and TURN server, which take a round trip to
	// the server each, or the server's timeout if it does not answer.
	GatherComplete GatherUntil = iota
	// GatherHosts waits only for the host candidates this machine yields
	// (Engine.HostCandidates), which are gathered without the network in a
	// millisecond or two; server-reflexive and relay candidates trickle.
	// Until the engine knows how many host candidates to expect, or when
	// fewer come, it waits as GatherComplete does.
	GatherHosts
)

// hostProbeTimeout bounds the gathering that learns the host count.
const hostProbeTimeout = 5 * time.Second

// hostCount is what the engine knows about the host candidates of its
// sessions.
type hostCount struct {
	mu      sync.Mutex
	n       int           // 0: not known yet
	probing chan struct{} // closed when the running probe ends; nil if none runs
	probes  sync.WaitGroup
}

// HostCandidates is how many host candidates a session of the engine
// gathers with its interfaces, network types and ports: learned by a probe
// (ProbeHostCandidates, or the first session that waits for them), then
// kept up to date by every session whose gathering completes. 0 until
// known.
func (e *Engine) HostCandidates() int {
	e.hosts.mu.Lock()
	defer e.hosts.mu.Unlock()
	return e.hosts.n
}

// ProbeHostCandidates learns how many host candidates a session gathers,
// gathering once with a connection of the engine's settings and no ICE
// servers. A service may call it at start so that its first call does not
// wait for the probe.
func (e *Engine) ProbeHostCandidates(ctx context.Context) (int, error) {
	n, err := e.probeHosts(ctx)
	if err != nil {
		return 0, err
	}
	e.noteHosts(n)
	return n, nil
}

// hostCandidates is the host count for a session that waits for it: if
// not known yet, it starts a probe (one at a time, for every waiting
// session) and waits for it as long as ctx lets it. 0 if not known in time.
func (e *Engine) hostCandidates(ctx context.Context) int {
	h := &e.hosts
	h.mu.Lock()
	if h.n > 0 {
		defer h.mu.Unlock()
		return h.n
	}
	probing := h.probing
	if probing == nil {
		probing = make(chan struct{})
		h.probing = probing
		h.probes.Add(1)
		go func() {
			defer h.probes.Done()
			pctx, cancel := context.WithTimeout(context.Background(), hostProbeTimeout)
			defer cancel()
			n, err := e.probeHosts(pctx)
			if err != nil {
				e.log.Warn().Err(err).Msg("Failed to learn how many host candidates this machine has")
			}
			e.noteHosts(n)
			h.mu.Lock()
			h.probing = nil
			h.mu.Unlock()
			close(probing)
		}()
	}
	h.mu.Unlock()
	select {
	case <-probing:
		return e.HostCandidates()
	case <-ctx.Done():
		return 0
	}
}

// noteHosts records the host count a gathering found (0: none learnt).
func (e *Engine) noteHosts(n int) {
	if n <= 0 {
		return
	}
	e.hosts.mu.Lock()
	defer e.hosts.mu.Unlock()
	e.hosts.n = n
}

// probeHosts gathers the candidates of a connection without ICE servers
// (host candidates only) and counts them.
func (e *Engine) probeHosts(ctx context.Context) (int, error) {
	api, err := e.newAPI(SessionOptions{Video: []Codec{}}, nil)
	if err != nil {
		return 0, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return 0, fmt.Errorf("creating the probe connection: %w", err)
	}
	defer func() { _ = pc.Close() }()
	var mu sync.Mutex
	hosts := 0
	complete := make(chan struct{})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case c == nil:
			select {
			case <-complete:
			default:
				close(complete)
			}
		case c.Typ == webrtc.ICECandidateTypeHost:
			hosts++
		}
	})
	if _, err = pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return 0, err
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return 0, err
	}
	if err = pc.SetLocalDescription(offer); err != nil {
		return 0, err
	}
	select {
	case <-complete:
	case <-ctx.Done():
		return 0, fmt.Errorf("gathering host candidates: %w", ctx.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	if hosts == 0 {
		return 0, fmt.Errorf("no host candidate on %s", e.Describe())
	}
	return hosts, nil
}
