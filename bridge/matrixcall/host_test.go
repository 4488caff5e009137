package matrixcall

import (
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/voip/media"
)

// testConfig is what the tests set: the Matrix call settings, and what the
// test host does with calls (the conversation layer's part, kept minimal:
// slots, answer at once, echo or tone).
type testConfig struct {
	Config
	MaxCalls, MaxCallsPerRoom int
	// Tone: the host plays a tone instead of echoing.
	Tone bool
}

// testHost stands in for package bridge: it admits calls up to the limits,
// answers every call that rings, and connects each to an echo (or tone)
// through a forwarder of its own.
type testHost struct {
	cfg testConfig
	log zerolog.Logger

	mu    sync.Mutex
	slots map[leg.ID]id.RoomID
}

func newTestHost(cfg testConfig, log zerolog.Logger) *testHost {
	return &testHost{cfg: cfg, log: log, slots: map[leg.ID]id.RoomID{}}
}

func (h *testHost) Admit(l leg.ID, room id.RoomID, replaces leg.ID) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	total, inRoom := 0, 0
	for other, r := range h.slots {
		if other == replaces {
			continue
		}
		total++
		if r == room {
			inRoom++
		}
	}
	if (h.cfg.MaxCalls > 0 && total >= h.cfg.MaxCalls) || (h.cfg.MaxCallsPerRoom > 0 && inRoom >= h.cfg.MaxCallsPerRoom) {
		return "at the test's limit"
	}
	h.slots[l] = room
	return ""
}

func (h *testHost) Ringing(l *Leg) leg.Events {
	ev := h.events()
	l.Answer()
	return ev
}

// events makes the events of one call: its own forwarder.
func (h *testHost) events() *testEvents {
	return &testEvents{h: h, fwd: voip.NewForwarder("test", h.log)}
}

// testEvents connects one call's media to its source; it does the work in
// the callbacks, which a real host queues (these do nothing slow).
type testEvents struct {
	h   *testHost
	fwd *voip.Forwarder

	mu      sync.Mutex
	media   voip.Leg
	sources []voip.Leg
}

func (e *testEvents) Answered(leg.Leg) {}
func (e *testEvents) MediaReady(_ leg.Leg, m voip.Leg) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.media = m
	_ = e.fwd.Add(m)
	if !e.h.cfg.Tone {
		echo := voip.NewEchoLeg("echo", m)
		e.sources = append(e.sources, echo)
		_ = e.fwd.Add(echo)
		return
	}
	if out := m.Outbound(webrtc.RTPCodecTypeAudio); out != nil {
		src, err := media.Tone("tone", webrtc.RTPCodecParameters{RTPCodecCapability: out.Codec()}, 440)
		if err == nil {
			e.sources = append(e.sources, src)
			_ = e.fwd.Add(src)
		}
	}
}
func (e *testEvents) Preferred(_ leg.Leg, t *voip.InboundTrack) { _ = e.fwd.Select(t) }
func (e *testEvents) Connected(leg.Leg)                         {}
func (e *testEvents) Receiving(_ leg.Leg, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.media != nil {
		e.fwd.SetReceiving(e.media, on)
	}
}
func (e *testEvents) PeerMuted(leg.Leg, bool, bool)     {}
func (e *testEvents) DTMF(leg.Leg, rune, time.Duration) {}
func (e *testEvents) Ended(l leg.Leg, _ leg.End) {
	e.h.mu.Lock()
	delete(e.h.slots, l.ID())
	e.h.mu.Unlock()
	e.mu.Lock()
	sources := e.sources
	e.mu.Unlock()
	go func() {
		<-l.Done()
		for _, s := range sources {
			_ = s.Close()
		}
		_ = e.fwd.Close()
	}()
}
