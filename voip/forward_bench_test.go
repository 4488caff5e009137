package voip

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
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
