// Package livekit is the bot as a participant in a LiveKit room (the SFU
// behind Element Call), seen by the forwarder as one voip.Leg: what the
// bot publishes is the leg's outbound audio, and the leg's inbound audio is
// the room's active speaker's. Mechanics only: which room, with which
// identity and keys, is the Element Call leg kind's (bridge/rtc) to say.
//
// A single-stream party (a Jami or legacy Matrix caller) hears everyone:
// the participants' audio is decoded, mixed and encoded again (mixer.go),
// which needs libopus (-tags opus). The pure-Go build has no Opus codec:
// there the party hears one participant at a time, the SFU's active
// speaker (which it ranks by the RFC 6464 audio levels the clients send),
// switching as it changes.
package livekit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/voip/media/opuscodec"
)

// Options say how the bot takes part.
type Options struct {
	// ID names the leg.
	ID string
	// Keys, when set, holds the other participants' media keys: their
	// audio is decrypted with them. Nil for a call without E2EE.
	Keys *KeyRing
	// Encryptor, when set, encrypts what the bot publishes.
	Encryptor *Encryptor
	// Accept, when set, says whether a participant's media may be heard
	// (Element Call plays only participants that match a membership).
	Accept func(identity string) bool
	// Video: the bridged party has video, so the bot publishes a camera
	// and carries the speaker's.
	Video bool
	// OnChange is called (on a goroutine of its own, never concurrently)
	// when participants come and go or the room is left.
	OnChange func()
	Log      zerolog.Logger
}

// opus is the format the bot sends and the leg forwards.
var opus = voip.AudioCodecs[0]

// inQueue bounds the packets waiting for the forwarder's reader: more than
// a few are late anyway.
const inQueue = 64

// Participant is the bot in a LiveKit room.
type Participant struct {
	opts  Options
	room  *lksdk.Room
	leg   *voip.PacketLeg
	local *webrtc.TrackLocalStaticRTP
	pub   *lksdk.LocalTrackPublication
	log   zerolog.Logger

	// in carries the active speaker's packets to the leg's reader.
	in   chan []byte
	done chan struct{}
	// speaker is the identity whose audio is heard (without a mixer).
	speaker atomic.Pointer[string]
	// mix mixes everyone's audio, nil in a build without an Opus codec.
	mix   *mixer
	mixWG sync.WaitGroup

	// Video (Options.Video): the bot's camera, and the speaker's on its
	// way to the forwarder.
	legReady    atomic.Pointer[voip.PacketLeg] // p.leg, for RTCP that may come first
	localVideo  *lksdk.LocalTrack
	videoPub    *lksdk.LocalTrackPublication
	videoIn     chan []byte
	outFrames   vp8Frames // the writer's only
	outVideoSeq uint16    // the writer's only

	mu       sync.Mutex
	remotes  map[string]int // identity -> subscribed audio tracks
	cameras  map[string]videoSource
	order    []string // identities in the order they began to send
	closed   bool
	readers  sync.WaitGroup
	changes  chan struct{}
	changeWG sync.WaitGroup

	// Counted by the readers.
	decryptFailures atomic.Uint64
	dropped         atomic.Uint64
}

// Join connects to the LiveKit room at url with token (from the call's
// JWT service) and publishes the bot's audio.
func Join(ctx context.Context, url, token string, opts Options) (*Participant, error) {
	p := &Participant{
		opts: opts, log: opts.Log.With().Str("leg", opts.ID).Logger(),
		in: make(chan []byte, inQueue), done: make(chan struct{}),
		remotes: map[string]int{}, changes: make(chan struct{}, 1),
		cameras: map[string]videoSource{}, videoIn: make(chan []byte, 4*inQueue),
	}
	p.speaker.Store(new(string))
	p.changeWG.Add(1)
	go p.notify()
	if opuscodec.Available {
		mix, err := newMixer(p.deliver, opts.Accept)
		if err != nil {
			p.end()
			p.changeWG.Wait()
			return nil, fmt.Errorf("making the audio mixer: %w", err)
		}
		p.mix = mix
		p.mixWG.Add(1)
		go func() {
			defer p.mixWG.Done()
			mix.run(p.done)
		}()
	}

	cb := lksdk.NewRoomCallback()
	cb.OnTrackSubscribed = p.subscribed
	cb.OnActiveSpeakersChanged = p.speakers
	cb.OnParticipantDisconnected = func(rp *lksdk.RemoteParticipant) { p.gone(rp.Identity()) }
	cb.OnDisconnected = func() { p.end() }
	p.room = lksdk.NewRoom(cb)
	if err := p.room.JoinWithContextAndToken(ctx, url, token, lksdk.WithLogger(newLogger(p.log))); err != nil {
		p.end()
		p.changeWG.Wait()
		p.mixWG.Wait()
		return nil, fmt.Errorf("joining the LiveKit room at %s: %w", url, err)
	}
	local, err := webrtc.NewTrackLocalStaticRTP(opus.RTPCodecCapability, "audio", "voipbot-"+opts.ID)
	if err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("making the bot's audio track: %w", err)
	}
	p.local = local
	pubOpts := &lksdk.TrackPublicationOptions{Name: "microphone", Source: livekit.TrackSource_MICROPHONE}
	if opts.Encryptor != nil {
		pubOpts.Encryption = livekit.Encryption_GCM
	}
	if p.pub, err = p.room.LocalParticipant.PublishTrack(local, pubOpts); err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("publishing the bot's audio: %w", err)
	}
	streams := []voip.PacketStream{{
		Kind: webrtc.RTPCodecTypeAudio, Codec: opus, SendPayloadType: uint8(opus.PayloadType),
		ReadRTP: p.readRTP, WriteRTP: p.writeRTP, ID: opts.ID + "-audio", StreamID: opts.ID,
	}}
	if opts.Video {
		if err = p.publishVideo(); err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("publishing the bot's video: %w", err)
		}
		streams = append(streams, voip.PacketStream{
			Kind: webrtc.RTPCodecTypeVideo, Codec: vp8, SendPayloadType: uint8(vp8.PayloadType),
			ReadRTP: p.readVideo, WriteRTP: p.writeVideo, RequestKeyframe: p.requestSpeakerKeyframe,
			ID: opts.ID + "-video", StreamID: opts.ID,
		})
	}
	p.leg = voip.NewPacketLeg(opts.ID, streams, voip.WithCloser(p.Close))
	p.legReady.Store(p.leg)
	return p, nil
}

// Leg is the participant as the forwarder sees it.
func (p *Participant) Leg() voip.Leg { return p.leg }

// Identity is the bot's identity in the room.
func (p *Participant) Identity() string { return p.room.LocalParticipant.Identity() }

// Remotes lists the identities that send audio, in the order they began.
func (p *Participant) Remotes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.order)
}

// Mixing says whether everyone's audio is mixed (else the active speaker's
// is carried: a build without an Opus codec).
func (p *Participant) Mixing() bool { return p.mix != nil }

// Speaker is the identity heard now ("" for none, or everyone when
// Mixing).
func (p *Participant) Speaker() string { return *p.speaker.Load() }

// SetMuted tells the room whether the bot's audio is muted.
func (p *Participant) SetMuted(muted bool) {
	if p.pub != nil {
		p.pub.SetMuted(muted)
	}
}

// DecryptFailures counts frames that could not be decrypted (no key yet,
// or a wrong one); Dropped counts packets the forwarder was too slow for.
func (p *Participant) DecryptFailures() uint64 { return p.decryptFailures.Load() }

// Dropped counts packets dropped because the forwarder did not keep up.
func (p *Participant) Dropped() uint64 { return p.dropped.Load() }

// Done is closed when the participant has left the room.
func (p *Participant) Done() <-chan struct{} { return p.done }

// Close leaves the room and waits for the readers.
func (p *Participant) Close() error {
	p.room.Disconnect()
	p.end()
	p.readers.Wait()
	p.changeWG.Wait()
	p.mixWG.Wait()
	return nil
}

func (p *Participant) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.done)
	close(p.changes)
}

// changed wakes the OnChange goroutine (coalescing bursts).
func (p *Participant) changed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	select {
	case p.changes <- struct{}{}:
	default:
	}
}

func (p *Participant) notify() {
	defer p.changeWG.Done()
	for range p.changes {
		if p.opts.OnChange != nil {
			p.opts.OnChange()
		}
	}
	if p.opts.OnChange != nil {
		p.opts.OnChange() // the room was left
	}
}

// writeRTP publishes one of the bot's packets (encrypted when the call is).
func (p *Participant) writeRTP(h *rtp.Header, payload []byte) error {
	if p.opts.Encryptor != nil {
		enc, err := p.opts.Encryptor.EncryptOpus(nil, payload)
		if err != nil {
			return nil // no key yet: nothing goes out rather than plaintext
		}
		payload = enc
	}
	return p.local.WriteRTP(&rtp.Packet{Header: *h, Payload: payload})
}

// readRTP hands the forwarder the next packet of the active speaker.
func (p *Participant) readRTP(b []byte) (int, error) {
	select {
	case pkt := <-p.in:
		return copy(b, pkt), nil
	case <-p.done:
		return 0, errClosed
	}
}

// errClosed ends the leg's reads when the participant has left.
var errClosed = io.EOF

// subscribed starts reading a remote track (pion callback: no blocking).
func (p *Participant) subscribed(track *webrtc.TrackRemote, _ *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
	identity := rp.Identity()
	if track.Kind() == webrtc.RTPCodecTypeVideo {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		p.cameras[identity] = videoSource{rp: rp, ssrc: track.SSRC()}
		p.readers.Add(1)
		p.mu.Unlock()
		go p.readVideoTrack(track, identity)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.remotes[identity]++
	if !slices.Contains(p.order, identity) {
		p.order = append(p.order, identity)
	}
	p.readers.Add(1)
	p.mu.Unlock()
	p.pickSpeaker(nil)
	p.changed()
	go p.read(track, identity)
}

// read takes a remote audio track's packets: the active speaker's go to
// the forwarder, the others are read and dropped (an unread track would
// fill pion's buffers).
func (p *Participant) read(track *webrtc.TrackRemote, identity string) {
	defer p.readers.Done()
	defer p.trackEnded(identity)
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				p.log.Debug().Err(err).Str("identity", identity).Msg("A remote audio track ended")
			}
			return
		}
		if p.mix == nil && *p.speaker.Load() != identity {
			continue
		}
		payload, ok := voip.ParseRTP(&h, buf[:n])
		if !ok {
			continue
		}
		if p.opts.Keys != nil {
			plain, err := p.opts.Keys.DecryptOpus(nil, payload, identity)
			if err != nil {
				p.decryptFailures.Add(1)
				continue
			}
			payload = plain
		}
		if p.mix != nil {
			p.mix.push(identity, payload)
			continue
		}
		h.PayloadType = uint8(opus.PayloadType)
		pkt, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
		if err != nil {
			continue
		}
		p.deliver(pkt)
	}
}

// deliver hands a packet to the leg's reader, dropping it if the reader
// is behind.
func (p *Participant) deliver(pkt []byte) {
	select {
	case p.in <- pkt:
	default:
		p.dropped.Add(1)
	}
}

func (p *Participant) trackEnded(identity string) {
	p.mu.Lock()
	if p.remotes[identity]--; p.remotes[identity] <= 0 {
		delete(p.remotes, identity)
		p.order = slices.DeleteFunc(p.order, func(s string) bool { return s == identity })
	}
	p.mu.Unlock()
	p.pickSpeaker(nil)
	p.changed()
}

func (p *Participant) gone(identity string) {
	p.mu.Lock()
	delete(p.remotes, identity)
	delete(p.cameras, identity)
	p.order = slices.DeleteFunc(p.order, func(s string) bool { return s == identity })
	p.mu.Unlock()
	if p.opts.Keys != nil {
		p.opts.Keys.Forget(identity)
	}
	if p.mix != nil {
		p.mix.drop(identity)
	}
	p.pickSpeaker(nil)
	p.changed()
}

// speakers follows the SFU's active speakers (loudest first).
func (p *Participant) speakers(list []lksdk.Participant) {
	ids := make([]string, 0, len(list))
	for _, sp := range list {
		ids = append(ids, sp.Identity())
	}
	p.pickSpeaker(ids)
}

// pickSpeaker chooses whom the leg carries: the loudest active speaker
// that sends audio and may be heard; else the current one while it still
// sends (silence does not switch); else the first that began to send.
func (p *Participant) pickSpeaker(active []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ok := func(id string) bool {
		return p.remotes[id] > 0 && (p.opts.Accept == nil || p.opts.Accept(id))
	}
	pick := ""
	for _, id := range active {
		if ok(id) {
			pick = id
			break
		}
	}
	if cur := *p.speaker.Load(); pick == "" && ok(cur) {
		pick = cur
	}
	if pick == "" {
		for _, id := range p.order {
			if ok(id) {
				pick = id
				break
			}
		}
	}
	if pick != *p.speaker.Load() {
		p.log.Debug().Str("identity", pick).Msg("Now carrying this participant's audio and video")
		p.speaker.Store(&pick)
		if src, ok := p.cameras[pick]; ok {
			go src.rp.WritePLI(src.ssrc) // the new speaker's camera starts with a keyframe
		}
	}
}

// Reconsider re-applies Accept (after memberships changed).
func (p *Participant) Reconsider() { p.pickSpeaker(nil) }
