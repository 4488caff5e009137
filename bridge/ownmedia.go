package bridge

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/voip/media"
)

// toneHz is the bot's own tone. Tests give people other tones, so that the
// bot's can never pass for a person's.
const toneHz = 440

// ownLeg is one of the bot's own sources (echo, tone, silence, file) as an
// ordinary leg of a bridge: it answers at once, takes no call slot, and
// makes its media once the party it serves has negotiated formats.
type ownLeg struct {
	id   leg.ID
	kind leg.Kind
	cfg  CallsConfig
	log  zerolog.Logger

	mu      sync.Mutex
	sources []voip.Leg
	closed  bool
	done    chan struct{}
}

func newOwnLeg(id leg.ID, kind leg.Kind, cfg CallsConfig, log zerolog.Logger) *ownLeg {
	return &ownLeg{id: id, kind: kind, cfg: cfg, log: log, done: make(chan struct{})}
}

func (o *ownLeg) ID() leg.ID                { return o.id }
func (o *ownLeg) Kind() leg.Kind            { return o.kind }
func (o *ownLeg) Direction() leg.Direction  { return leg.Outbound }
func (o *ownLeg) Peer() string              { return "" }
func (o *ownLeg) Video() bool               { return o.kind == leg.KindTone || o.kind == leg.KindFile }
func (o *ownLeg) Answer()                   {}
func (o *ownLeg) Done() <-chan struct{}     { return o.done }
func (o *ownLeg) Hangup(leg.Reason, string) { o.close() }

// SetMuted and Hold: the bot's own source has no one to tell.
func (o *ownLeg) SetMuted(bool, bool) {}
func (o *ownLeg) Hold(bool)           {}

// start makes the sources for peer: one per kind of media peer takes, in
// the format it negotiated; for echo, an echo leg that sends the peer its
// own media back.
func (o *ownLeg) start(peer voip.Leg) ([]voip.Leg, error) {
	var made []voip.Leg
	var errs []error
	if o.kind == leg.KindEcho {
		made = append(made, voip.NewEchoLeg(fmt.Sprintf("%s-%s", o.id, peer.ID()), peer))
	}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		out := peer.Outbound(kind)
		if out == nil {
			continue
		}
		src, err := o.source(fmt.Sprintf("%s-%s", o.id, kind), kind, webrtc.RTPCodecParameters{RTPCodecCapability: out.Codec()})
		if err != nil {
			errs = append(errs, fmt.Errorf("starting the %s source for %s: %w", o.kind, kind, err))
			continue
		}
		if src != nil {
			made = append(made, src)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		for _, s := range made {
			_ = s.Close()
		}
		return nil, errors.New("the source was stopped")
	}
	o.sources = append(o.sources, made...)
	return made, errors.Join(errs...)
}

// source makes the source of one kind of media; nil when the source sends
// nothing of that kind.
func (o *ownLeg) source(id string, kind webrtc.RTPCodecType, codec webrtc.RTPCodecParameters) (*voip.SourceLeg, error) {
	audio := kind == webrtc.RTPCodecTypeAudio
	switch {
	case o.kind == leg.KindEcho:
		return nil, nil
	case audio && o.kind == leg.KindTone:
		return media.Tone(id, codec, toneHz)
	case audio && o.kind == leg.KindSilence:
		return media.Silence(id, codec)
	case audio && o.kind == leg.KindFile && o.cfg.AudioFile != "":
		return media.PlayFile(id, o.cfg.AudioFile)
	case !audio && o.kind == leg.KindTone:
		if !strings.EqualFold(codec.MimeType, webrtc.MimeTypeVP8) {
			o.log.Warn().Str("codec", codec.MimeType).Msg("The test pattern is VP8; the call negotiated another video format, so it gets no video")
			return nil, nil
		}
		return media.Pattern(id)
	case !audio && o.kind == leg.KindFile && o.cfg.VideoFile != "":
		return media.PlayFile(id, o.cfg.VideoFile)
	}
	return nil, nil
}

// close stops the sources.
func (o *ownLeg) close() {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closed = true
	sources := o.sources
	o.mu.Unlock()
	for _, s := range sources {
		if err := s.Close(); err != nil {
			o.log.Debug().Err(err).Msg("Closing a media source")
		}
	}
	close(o.done)
}
