package benchserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// RawInterceptors chooses the raw baseline's interceptors: pion's default
// set, or only its RTCP report interceptors, the same work voipbot's audio
// legs do (reports, nothing else).
type RawInterceptors string

// The raw baseline's interceptor sets.
const (
	RawDefault RawInterceptors = "default"
	RawReports RawInterceptors = "reports"
)

// rawServer is the baseline: what a minimal pion forwarder does, as in
// pion's reflect example: TrackRemote.ReadRTP into
// TrackLocalStaticRTP.WriteRTP.
type rawServer struct {
	api *webrtc.API
}

var rawOpus = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}

func newRawServer(iface string, loopback bool, set RawInterceptors) (*rawServer, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: rawOpus, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	switch set {
	case RawDefault, "":
		if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
			return nil, err
		}
	case RawReports:
		if err := webrtc.ConfigureRTCPReports(ir); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown raw interceptor set %q (default, reports)", set)
	}
	// The same network settings as voipbot's engine in the benchmarks.
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(loopback)
	se.SetInterfaceFilter(func(name string) bool { return name == iface })
	return &rawServer{api: webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))}, nil
}

type rawCall struct {
	pc     *webrtc.PeerConnection
	local  *webrtc.TrackLocalStaticRTP
	target atomic.Pointer[webrtc.TrackLocalStaticRTP]
	wg     sync.WaitGroup
}

func (r *rawServer) answer(ctx context.Context, offer string) (*rawCall, string, error) {
	pc, err := r.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", err
	}
	c := &rawCall{pc: pc}
	fail := func(err error) (*rawCall, string, error) {
		_ = pc.Close()
		return nil, "", err
	}
	if c.local, err = webrtc.NewTrackLocalStaticRTP(rawOpus, "audio", "raw"); err != nil {
		return fail(err)
	}
	pc.OnTrack(func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for {
				pkt, _, err := track.ReadRTP()
				if err != nil {
					return
				}
				if t := c.target.Load(); t != nil {
					_ = t.WriteRTP(pkt)
				}
			}
		}()
	})
	if err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(fmt.Errorf("setting offer: %w", err))
	}
	sender, err := pc.AddTrack(c.local)
	if err != nil {
		return fail(err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err = pc.SetLocalDescription(answer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	local := pc.LocalDescription()
	if local == nil {
		return fail(errors.New("no local description"))
	}
	return c, local.SDP, nil
}

// forwardTo makes the call's inbound audio go out on other's track (itself
// for an echo).
func (c *rawCall) forwardTo(other *rawCall) { c.target.Store(other.local) }

func (c *rawCall) close() error {
	err := c.pc.Close()
	c.wg.Wait()
	return err
}
