package livekit

import (
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/voipbot/voipbot/voip"
)

// Video: the bridged party's camera is published as the bot's, and the
// party sees the active speaker's camera (switching with the speaker, a
// keyframe asked for at each switch). Without E2EE packets pass as they
// are; with it each frame is put together, decrypted or encrypted, and
// cut again.

// vp8 is the video format the leg takes and sends (what Element Call and
// every browser send).
var vp8 = voip.VideoCodecs[0]

// videoStream is the index of the leg's video stream (after audio).
const videoStream = 1

// videoSource is a remote participant's camera, for keyframe requests.
type videoSource struct {
	rp   *lksdk.RemoteParticipant
	ssrc webrtc.SSRC
}

// publishVideo publishes the bot's camera track.
func (p *Participant) publishVideo() error {
	track, err := lksdk.NewLocalTrack(vp8.RTPCodecCapability, lksdk.WithRTCPHandler(p.videoRTCP))
	if err != nil {
		return err
	}
	opts := &lksdk.TrackPublicationOptions{Name: "camera", Source: livekit.TrackSource_CAMERA, VideoWidth: 640, VideoHeight: 480}
	if p.opts.Encryptor != nil {
		opts.Encryption = livekit.Encryption_GCM
	}
	if p.videoPub, err = p.room.LocalParticipant.PublishTrack(track, opts); err != nil {
		return err
	}
	p.localVideo = track
	return nil
}

// videoRTCP: the SFU asks the bot's camera for a keyframe (a subscriber
// joined or lost packets): the bridged party is asked.
func (p *Participant) videoRTCP(pkt rtcp.Packet) {
	switch pkt.(type) {
	case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
		if leg := p.legReady.Load(); leg != nil {
			leg.KeyframeRequested(videoStream)
		}
	}
}

// writeVideo publishes one packet of the bridged party's video.
func (p *Participant) writeVideo(h *rtp.Header, payload []byte) error {
	if p.localVideo == nil {
		return nil
	}
	if p.opts.Encryptor == nil {
		return p.localVideo.WriteRTP(&rtp.Packet{Header: *h, Payload: payload}, nil)
	}
	frame := p.outFrames.add(h, payload)
	if frame == nil {
		return nil
	}
	sealed, err := p.opts.Encryptor.EncryptVP8(nil, frame)
	if err != nil {
		return nil // no key yet: nothing goes out rather than plaintext
	}
	for _, pkt := range vp8Packets(sealed, *h, &p.outVideoSeq) {
		if err := p.localVideo.WriteRTP(pkt, nil); err != nil {
			return err
		}
	}
	return nil
}

// readVideo hands the forwarder the next packet of the speaker's camera.
func (p *Participant) readVideo(b []byte) (int, error) {
	select {
	case pkt := <-p.videoIn:
		return copy(b, pkt), nil
	case <-p.done:
		return 0, errClosed
	}
}

// readVideoTrack takes a remote camera's packets: the speaker's go to the
// forwarder (decrypted frame by frame in an encrypted call), the others
// are read and dropped.
func (p *Participant) readVideoTrack(track *webrtc.TrackRemote, identity string) {
	defer p.readers.Done()
	buf := make([]byte, 1500)
	var frames vp8Frames
	var seq uint16
	var h rtp.Header
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		if *p.speaker.Load() != identity {
			continue
		}
		payload, ok := voip.ParseRTP(&h, buf[:n])
		if !ok {
			continue
		}
		h.PayloadType = uint8(vp8.PayloadType)
		if p.opts.Keys == nil {
			h.Extension, h.Extensions = false, nil
			pkt, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
			if err == nil {
				p.deliverVideo(pkt)
			}
			continue
		}
		frame := frames.add(&h, payload)
		if frame == nil {
			continue
		}
		plain, err := p.opts.Keys.DecryptVP8(nil, frame, identity)
		if err != nil {
			p.decryptFailures.Add(1)
			continue
		}
		for _, pkt := range vp8Packets(plain, h, &seq) {
			if data, err := pkt.Marshal(); err == nil {
				p.deliverVideo(data)
			}
		}
	}
}

func (p *Participant) deliverVideo(pkt []byte) {
	select {
	case p.videoIn <- pkt:
	default:
		p.dropped.Add(1)
	}
}

// requestSpeakerKeyframe asks the speaker's camera for a keyframe (the
// bridged party asked, or the speaker changed).
func (p *Participant) requestSpeakerKeyframe() {
	p.mu.Lock()
	src, ok := p.cameras[*p.speaker.Load()]
	p.mu.Unlock()
	if ok {
		go src.rp.WritePLI(src.ssrc)
	}
}
