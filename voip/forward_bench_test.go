package voip

import (
	"io"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
)

// discardWriter stands for a sender's SRTP stream.
type discardWriter struct{ packets int }

func (d *discardWriter) WriteRTP(_ *rtp.Header, p []byte) (int, error) {
	d.packets++
	return len(p), nil
}
func (d *discardWriter) Write(b []byte) (int, error) { d.packets++; return len(b), nil }

// benchContext binds a track to a discardWriter, as a PeerConnection binds
// it to a sender.
type benchContext struct{ w *discardWriter }

func (c benchContext) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{AudioCodecs[0]}
}
func (c benchContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (c benchContext) SSRC() webrtc.SSRC                                      { return 1234 }
func (c benchContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (c benchContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c benchContext) WriteStream() webrtc.TrackLocalWriter                   { return c.w }
func (c benchContext) ID() string                                             { return "bench" }
func (c benchContext) RTCPReader() interceptor.RTCPReader                     { return nil }

// opusPacket is a 160-byte Opus packet as the load generator sends.
func opusPacket(seq uint16) []byte {
	h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 99}
	b, _ := h.Marshal()
	return append(b, make([]byte, 160)...)
}

// BenchmarkForwardHop is the forwarder's own work per packet and destination,
// without the network and SRTP on either side (which cost the same for
// both): parse, receive statistics and duplicate check, rewrite, write;
// against the raw pion forwarder's (TrackRemote.ReadRTP's unmarshal into a
// new packet, TrackLocalStaticRTP.WriteRTP), measured in the same run.
func BenchmarkForwardHop(b *testing.B) {
	pkt := opusPacket(0)
	b.Run("voipbot", func(b *testing.B) {
		w := &discardWriter{}
		out := NewOutboundTrack(AudioCodecs[0].RTPCodecCapability, "out", "bench")
		if _, err := out.Bind(benchContext{w}); err != nil {
			b.Fatal(err)
		}
		in := &InboundTrack{Kind: webrtc.RTPCodecTypeAudio, Codec: AudioCodecs[0]}
		var h rtp.Header
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			pkt[2], pkt[3] = byte(i>>8), byte(i) // a new sequence number each time
			hl, err := h.Unmarshal(pkt)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			if in.recordArrival(h.SequenceNumber, h.Timestamp, now) {
				if err := out.forward(in, &h, pkt[hl:], now); err != nil {
					b.Fatal(err)
				}
			}
		}
		if w.packets == 0 {
			b.Fatal("nothing written")
		}
	})
	b.Run("raw-pion", func(b *testing.B) {
		w := &discardWriter{}
		local, err := webrtc.NewTrackLocalStaticRTP(AudioCodecs[0].RTPCodecCapability, "out", "bench")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := local.Bind(benchContext{w}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			pkt[2], pkt[3] = byte(i>>8), byte(i)
			p := &rtp.Packet{}
			if err := p.Unmarshal(pkt); err != nil {
				b.Fatal(err)
			}
			if err := local.WriteRTP(p); err != nil {
				b.Fatal(err)
			}
		}
		if w.packets == 0 {
			b.Fatal("nothing written")
		}
	})
}

// benchLeg is a leg of one audio track each way: its inbound track is fed
// by the benchmark (its reader waits for nothing), its outbound track
// writes to a discardWriter.
type benchLeg struct {
	in   *InboundTrack
	out  *OutboundTrack
	w    *discardWriter
	done chan struct{}
}

func newBenchLeg(b *testing.B) *benchLeg {
	l := &benchLeg{w: &discardWriter{}, done: make(chan struct{})}
	l.in = &InboundTrack{Kind: webrtc.RTPCodecTypeAudio, Codec: AudioCodecs[0], ID: "peer-audio", Leg: "peer",
		read: func([]byte) (int, error) { <-l.done; return 0, io.EOF }}
	l.out = NewOutboundTrack(AudioCodecs[0].RTPCodecCapability, "peer-out", "peer")
	if _, err := l.out.Bind(benchContext{l.w}); err != nil {
		b.Fatal(err)
	}
	return l
}

func (l *benchLeg) ID() string                                  { return "peer" }
func (l *benchLeg) OnInbound(fn func(*InboundTrack))            { fn(l.in) }
func (l *benchLeg) Stats() LegStats                             { return LegStats{Leg: "peer"} }
func (l *benchLeg) Done() <-chan struct{}                       { return l.done }
func (l *benchLeg) Close() error                                { close(l.done); return nil }
func (l *benchLeg) Outbound(webrtc.RTPCodecType) *OutboundTrack { return l.out }

// peerTrack is the forwarder's handler of the peer's track.
func peerTrack(f *Forwarder) *trackForwarder {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.legs[0].tracks[0]
}

// echoHop is one way of sending a packet back to where it came from
// through a forwarder: parse, then the hot path of the peer's track.
type echoHop struct {
	peer *benchLeg
	echo *EchoLeg
	f    *Forwarder
	tf   *trackForwarder
	pkt  []byte
	h    rtp.Header
	seq  uint16
}

// newEchoHop sets one up: through an EchoLeg beside the peer, or as the
// forwarder's echo mode did before echo became a leg (the peer's track
// forwarded straight to the peer's own sender).
func newEchoHop(b *testing.B, withEchoLeg bool) *echoHop {
	e := &echoHop{peer: newBenchLeg(b), pkt: opusPacket(0)}
	e.f = NewForwarder("bench", zerolog.Nop(), OnError(func(err error) { b.Fatal(err) }))
	if err := e.f.Add(e.peer); err != nil {
		b.Fatal(err)
	}
	if withEchoLeg {
		e.echo = NewEchoLeg("echo", e.peer)
		if err := e.f.Add(e.echo); err != nil {
			b.Fatal(err)
		}
	}
	e.tf = peerTrack(e.f)
	if !withEchoLeg {
		// What Echo() made route do: the leg's track feeds its own sender.
		e.tf.dests.Store(&[]*destination{{out: e.peer.out, to: e.tf.from}})
	}
	b.Cleanup(func() {
		if got := e.peer.w.packets; got == 0 || got != int(e.tf.track.packets.Load()) {
			b.Errorf("%d of %d packets came back", got, e.tf.track.packets.Load())
		}
		if e.echo != nil {
			_ = e.echo.Close()
		}
		_ = e.peer.Close()
		_ = e.f.Close()
	})
	return e
}

func (e *echoHop) packet(b *testing.B) {
	e.seq++
	e.pkt[2], e.pkt[3] = byte(e.seq>>8), byte(e.seq)
	hl, err := e.h.Unmarshal(e.pkt)
	if err != nil {
		b.Fatal(err)
	}
	e.tf.handle(&e.h, e.pkt[hl:], len(e.pkt), time.Now())
}

// BenchmarkEchoHop is one packet sent back to its sender through the
// forwarder, in-forwarder being the forwarder's echo mode before echo
// became a leg and echo-leg an EchoLeg beside the peer (two hops in
// process: into the echo, and from it to the peer's sender). ratio runs
// both in alternating batches of packets, so that both see the same load,
// and reports each one's time per packet and echo-leg's as a multiple of
// in-forwarder's.
func BenchmarkEchoHop(b *testing.B) {
	for _, withEchoLeg := range []bool{false, true} {
		name := "in-forwarder"
		if withEchoLeg {
			name = "echo-leg"
		}
		b.Run(name, func(b *testing.B) {
			e := newEchoHop(b, withEchoLeg)
			b.ReportAllocs()
			for b.Loop() {
				e.packet(b)
			}
		})
	}
	b.Run("ratio", func(b *testing.B) {
		const batch = 256
		old, echo := newEchoHop(b, false), newEchoHop(b, true)
		var oldTime, echoTime time.Duration
		b.ReportAllocs()
		for b.Loop() {
			t0 := time.Now()
			for range batch {
				old.packet(b)
			}
			t1 := time.Now()
			for range batch {
				echo.packet(b)
			}
			echoTime += time.Since(t1)
			oldTime += t1.Sub(t0)
		}
		packets := float64(b.N * batch)
		b.ReportMetric(float64(oldTime.Nanoseconds())/packets, "in-forwarder-ns/pkt")
		b.ReportMetric(float64(echoTime.Nanoseconds())/packets, "echo-leg-ns/pkt")
		b.ReportMetric(float64(echoTime)/float64(oldTime), "echo-leg/in-forwarder")
	})
}
