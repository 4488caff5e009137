package voip

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v4"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/internal/pionlog"
)

// Engine builds the pion API of each session from the media config. It is
// the only place pion is configured.
type Engine struct {
	cfg      Config
	log      zerolog.Logger
	lf       pionlog.Factory         // pion's loggers, shared by all sessions
	udpMux   *ice.MultiUDPMuxDefault // shared by all sessions when udp_mux_port is set
	net      transport.Net           // nil: the host's network
	reporter reporter                // RTCP reports of every session
	hosts    hostCount               // how many host candidates a session gathers
}

// EngineOption changes how an Engine reaches the network.
type EngineOption func(*Engine)

// WithNet makes sessions use a virtual network (pion vnet) instead of the
// host's: for impairment tests.
func WithNet(n transport.Net) EngineOption { return func(e *Engine) { e.net = n } }

// NewEngine prepares sessions with cfg. With udp_mux_port set it binds that
// port now: every session shares it.
// Config is the configuration the engine runs with.
func (e *Engine) Config() Config { return e.cfg }

func NewEngine(cfg Config, log zerolog.Logger, opts ...EngineOption) (*Engine, error) {
	e := &Engine{cfg: cfg, log: log, lf: pionlog.New(log)}
	for _, opt := range opts {
		opt(e)
	}
	if cfg.UDPMuxPort != 0 {
		var err error
		if e.net == nil {
			e.udpMux, err = newBatchedUDPMux(cfg, e.interfaceAllowed, e.lf)
		} else {
			e.udpMux, err = e.virtualUDPMux()
		}
		if err != nil {
			return nil, fmt.Errorf("media.udp_mux_port: %w", err)
		}
	}
	return e, nil
}

// virtualUDPMux is the shared port on a virtual network (tests): pion's
// own mux, as the batched sockets need a real one.
func (e *Engine) virtualUDPMux() (*ice.MultiUDPMuxDefault, error) {
	opts := []ice.UDPMuxFromPortOption{
		ice.UDPMuxFromPortWithLogger(e.lf.NewLogger("udpmux")),
		ice.UDPMuxFromPortWithInterfaceFilter(e.interfaceAllowed),
		ice.UDPMuxFromPortWithNet(e.net),
	}
	if e.cfg.IncludeLoopback {
		opts = append(opts, ice.UDPMuxFromPortWithLoopback())
	}
	return ice.NewMultiUDPMuxFromPort(int(e.cfg.UDPMuxPort), opts...)
}

// Describe says where the engine's media goes, for status replies and the
// start-up log.
func (e *Engine) Describe() string {
	var where string
	switch {
	case e.cfg.UDPMuxPort != 0:
		where = fmt.Sprintf("UDP port %d shared by all calls", e.cfg.UDPMuxPort)
	case e.cfg.UDPPortMin != 0:
		where = fmt.Sprintf("UDP ports %d-%d", e.cfg.UDPPortMin, e.cfg.UDPPortMax)
	default:
		where = "any free UDP port"
	}
	if len(e.cfg.Interfaces) > 0 {
		where += " on " + strings.Join(e.cfg.Interfaces, ", ")
	}
	if len(e.cfg.PublicIPs) > 0 {
		where += ", announced as " + strings.Join(e.cfg.PublicIPs, ", ")
	}
	return where
}

// Close releases the shared UDP port (once a probe of the host candidates
// has ended).
func (e *Engine) Close() error {
	e.hosts.probes.Wait()
	if e.udpMux != nil {
		return e.udpMux.Close()
	}
	return nil
}

func (e *Engine) interfaceAllowed(name string) bool {
	return len(e.cfg.Interfaces) == 0 || slices.Contains(e.cfg.Interfaces, name)
}

// Interceptors chooses the RTP/RTCP processing of a session beyond what
// the engine decides itself: pion's NACK responder and TWCC are registered
// for sessions that may carry video, where retransmission and the sender's
// bandwidth estimation need them, and left out of audio-only ones, where
// they would only cost a goroutine and per-packet work each. Lost video
// packets are asked for by the session itself (see nackTracker), not by
// pion's NACK generator.
//
// RTCP sender and receiver reports are not pion's interceptors either: the
// engine sends them for every session from one goroutine (see reporter).
type Interceptors struct {
	// PionStats adds pion's statistics interceptor, whose numbers
	// PeerConnection.GetStats reports. Leg stats do not need it: the forwarder
	// counts what it forwards, and loss and jitter, itself.
	PionStats bool
}

// SessionOptions restrict what one session negotiates.
type SessionOptions struct {
	// Audio and Video are the formats offered or accepted, in order of
	// preference; nil means all of AudioCodecs or VideoCodecs. A non-nil
	// empty Video means no video. Restricting a session to the format its
	// bridge partner uses is how a bridge avoids transcoding.
	Audio, Video []Codec
	Interceptors Interceptors
	ICEServers   []webrtc.ICEServer
	// GatherUntil is what a local description waits for within the wait
	// its caller gives: all candidates (the default) or the host ones.
	GatherUntil GatherUntil
}

// newAPI builds a fresh MediaEngine, interceptor registry and setting engine
// for one session: pion's interceptors keep per-connection state.
func (e *Engine) newAPI(opts SessionOptions, onStats func(stats.Getter)) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	audio := opts.Audio
	if audio == nil {
		audio = AudioCodecs
	}
	video := opts.Video
	if video == nil {
		video = VideoCodecs
	}
	for _, c := range audio {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("registering %s: %w", c.MimeType, err)
		}
	}
	for _, d := range DTMFCodecs {
		if hasClock(audio, d.ClockRate) {
			if err := me.RegisterCodec(d, webrtc.RTPCodecTypeAudio); err != nil {
				return nil, fmt.Errorf("registering %s: %w", d.MimeType, err)
			}
		}
	}
	for _, c := range video {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("registering %s: %w", c.MimeType, err)
		}
	}

	ir := &interceptor.Registry{}
	lf := e.lf
	in := opts.Interceptors
	mayVideo := len(video) > 0
	if in.PionStats {
		// First in the chain: RTCP an interceptor writes itself passes
		// only through those registered before it.
		st, err := stats.NewInterceptor(stats.WithLoggerFactory(lf))
		if err != nil {
			return nil, err
		}
		st.OnNewPeerConnection(func(_ string, g stats.Getter) { onStats(g) })
		ir.Add(st)
	}
	if mayVideo {
		// Only the responder: the session asks for lost packets itself
		// (see nackTracker).
		resp, err := nack.NewResponderInterceptor(nack.WithResponderLoggerFactory(lf))
		if err != nil {
			return nil, err
		}
		ir.Add(resp)
	}
	if mayVideo {
		for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
				return nil, err
			}
		}
		tw, err := twcc.NewSenderInterceptor(twcc.WithLoggerFactory(lf))
		if err != nil {
			return nil, err
		}
		ir.Add(tw)
	}

	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled) // a server needs no mDNS socket per call
	se.SetICETimeouts(e.cfg.ICEDisconnected, e.cfg.ICEFailed, e.cfg.ICEKeepalive)
	se.SetInterfaceFilter(e.interfaceAllowed)
	se.SetIncludeLoopbackCandidate(e.cfg.IncludeLoopback)
	if e.net != nil {
		se.SetNet(e.net)
	}
	switch {
	case e.udpMux != nil:
		se.SetICEUDPMux(e.udpMux)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	case e.cfg.UDPPortMin != 0:
		if err := se.SetEphemeralUDPPortRange(e.cfg.UDPPortMin, e.cfg.UDPPortMax); err != nil {
			return nil, fmt.Errorf("media.udp_port_min/max: %w", err)
		}
	}
	if len(e.cfg.PublicIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        e.cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return nil, fmt.Errorf("media.public_ips: %w", err)
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

func hasClock(codecs []Codec, rate uint32) bool {
	return slices.ContainsFunc(codecs, func(c Codec) bool { return c.ClockRate == rate })
}
