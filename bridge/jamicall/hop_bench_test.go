package jamicall

import (
	"context"
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/voipbot/voipbot/jami/media"
	"github.com/voipbot/voipbot/voip"
)

// BenchmarkBridgeHop is the CPU of one Opus packet carried from a peer
// through the bot to a Matrix (WebRTC) peer, all in this process over
// loopback: the peer's send, the bot's receive, forward and send, and the
// WebRTC receiver's read. jami-matrix has a Jami device as the first peer
// (SDES-SRTP over UDP ICE: jami/media, and the bot's Jami media leg);
// matrix-matrix, the baseline, a WebRTC peer (DTLS-SRTP, pion) on a
// voip.Session, as a Matrix ⇄ Matrix bridge has it. Both run with the
// bot's default settings and the same receiving peer, one packet at a
// time (each waits for the last to arrive), so cpu-ns/pkt is the process's
// user+system CPU over the packets, and ns/op the hop's latency.
func BenchmarkBridgeHop(b *testing.B) {
	engine, err := voip.NewEngine(voip.Config{Interfaces: []string{"lo"}, IncludeLoopback: true}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = engine.Close() })
	b.Run("matrix-matrix", func(b *testing.B) {
		h := newHop(b, engine)
		src := h.webrtcSource(b, engine)
		h.run(b, src)
	})
	b.Run("jami-matrix", func(b *testing.B) {
		h := newHop(b, engine)
		src := h.jamiSource(b)
		h.run(b, src)
	})
}

// hop is the bot's forwarder with its Matrix leg to the receiving peer.
type hop struct {
	ctx  context.Context
	fwd  *voip.Forwarder
	got  chan struct{}
	errs chan error
}

func newHop(b *testing.B, engine *voip.Engine) *hop {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	b.Cleanup(cancel)
	h := &hop{ctx: ctx, got: make(chan struct{}, 1), errs: make(chan error, 1)}
	h.fwd = voip.NewForwarder("bench", zerolog.Nop(), voip.OnError(func(err error) { h.fail(err) }))
	b.Cleanup(func() { _ = h.fwd.Close() })

	// The receiving peer, a bare pion PeerConnection as a browser is.
	carol := newPeer(b)
	if _, err := carol.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		b.Fatal(err)
	}
	carol.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			select {
			case h.got <- struct{}{}:
			default:
			}
		}
	})
	out, err := engine.NewSession("bot-out", nil, voip.SessionOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = out.Close() })
	offerTo(b, ctx, carol, out)
	if err := h.fwd.Add(out); err != nil {
		b.Fatal(err)
	}
	return h
}

func (h *hop) fail(err error) {
	select {
	case h.errs <- err:
	default:
	}
}

// run sends b.N packets one at a time with send, each once the last one
// reached the receiving peer.
func (h *hop) run(b *testing.B, send func(seq uint16) error) {
	// The first packets open the path (the forwarder's destinations, the
	// receiver's track): wait for one to arrive before measuring.
	var seq uint16
	warm := time.NewTicker(20 * time.Millisecond)
	defer warm.Stop()
	for arrived := false; !arrived; {
		seq++
		if err := send(seq); err != nil {
			b.Fatal(err)
		}
		select {
		case <-h.got:
			arrived = true
		case <-warm.C:
		case err := <-h.errs:
			b.Fatal(err)
		case <-h.ctx.Done():
			b.Fatal("no packet reached the receiving peer")
		}
	}
	before := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		seq++
		if err := send(seq); err != nil {
			b.Fatal(err)
		}
		select {
		case <-h.got:
		case err := <-h.errs:
			b.Fatal(err)
		case <-time.After(5 * time.Second):
			b.Fatal("a packet was lost on loopback")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-before)/float64(b.N), "cpu-ns/pkt")
}

// webrtcSource is a WebRTC peer sending to the bot's Matrix leg, the
// baseline's first peer.
func (h *hop) webrtcSource(b *testing.B, engine *voip.Engine) func(uint16) error {
	alice := newPeer(b)
	track, err := webrtc.NewTrackLocalStaticRTP(voip.AudioCodecs[0].RTPCodecCapability, "alice-audio", "alice")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := alice.AddTrack(track); err != nil {
		b.Fatal(err)
	}
	in, err := engine.NewSession("bot-in", nil, voip.SessionOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = in.Close() })
	offerTo(b, h.ctx, alice, in)
	if err := h.fwd.Add(in); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 160)
	return func(seq uint16) error {
		return track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: payload})
	}
}

// jamiSource is a Jami device's media session calling the bot's, and the
// bot's Jami media leg in the forwarder.
func (h *hop) jamiSource(b *testing.B) func(uint16) error {
	loop := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	device, err := media.NewSession(media.Options{Audio: true, IPs: loop, IncludeLoopback: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = device.Close() })
	bot, err := media.NewSession(media.Options{Audio: true, IPs: loop, IncludeLoopback: true})
	if err != nil {
		b.Fatal(err)
	}
	offer, err := device.Offer(h.ctx)
	if err != nil {
		b.Fatal(err)
	}
	answer, err := bot.Answer(h.ctx, offer)
	if err != nil {
		b.Fatal(err)
	}
	if err := device.SetAnswer(answer); err != nil {
		b.Fatal(err)
	}
	var g errgroup.Group
	g.Go(func() error { return device.Connect(h.ctx) })
	g.Go(func() error { return bot.Connect(h.ctx) })
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	ml := newMediaLeg("jami-bench", bot, nil, zerolog.Nop())
	b.Cleanup(func() { _ = ml.Close() })
	if err := h.fwd.Add(ml.PacketLeg); err != nil {
		b.Fatal(err)
	}
	st := device.Streams()[0]
	payload := make([]byte, 160)
	return func(seq uint16) error {
		hdr := rtp.Header{Version: 2, PayloadType: st.SendPayloadType, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 0x4a414d49}
		return st.WriteRTP(&hdr, payload)
	}
}

// newPeer is a bare pion PeerConnection on loopback with Opus.
func newPeer(b *testing.B) *webrtc.PeerConnection {
	var m webrtc.MediaEngine
	if err := m.RegisterCodec(voip.AudioCodecs[0], webrtc.RTPCodecTypeAudio); err != nil {
		b.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(&m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pc.Close() })
	return pc
}

// offerTo connects a peer (the offerer, with every candidate in its
// offer) to a bot session, which answers as the Matrix leg does.
func offerTo(b *testing.B, ctx context.Context, peer *webrtc.PeerConnection, s *voip.Session) {
	offer, err := peer.CreateOffer(nil)
	if err != nil {
		b.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(peer)
	if err := peer.SetLocalDescription(offer); err != nil {
		b.Fatal(err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		b.Fatal("the peer did not gather")
	}
	if err := s.SetRemoteDescription(ctx, *peer.LocalDescription()); err != nil {
		b.Fatal(err)
	}
	codecs := s.NegotiatedCodecs(webrtc.RTPCodecTypeAudio)
	if len(codecs) == 0 {
		b.Fatal(errors.New("no audio format negotiated"))
	}
	if err := s.AddOutbound(ctx, voip.NewOutboundTrack(codecs[0].RTPCodecCapability, s.ID()+"-audio", s.ID())); err != nil {
		b.Fatal(err)
	}
	answer, err := s.CreateAnswer(ctx, 2*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	if err := peer.SetRemoteDescription(answer); err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the process's user and system CPU so far, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
