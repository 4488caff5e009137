package voip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/pion/rtp"
)

// ErrNoDTMF means the leg did not negotiate telephone-event at its audio
// codec's clock rate.
var ErrNoDTMF = errors.New("the leg did not negotiate RFC 4733 telephone events")

const dtmfSymbols = "0123456789*#ABCD"

// dtmfEvent maps a DTMF symbol to its RFC 4733 event code.
func dtmfEvent(r rune) (uint8, bool) {
	i := strings.IndexRune(dtmfSymbols, r)
	return uint8(i), i >= 0
}

// DTMFOptions shape sent tones; zero values take the defaults.
type DTMFOptions struct {
	Duration time.Duration // of each tone; default 100 ms
	Gap      time.Duration // between tones; default 70 ms
	Interval time.Duration // between packets of a tone; default 20 ms
	Volume   uint8         // 0 (loudest) to 63 dBm0 below; default 10
}

// SendDTMF sends digits (0-9, *, #, A-D) as RFC 4733 events on a leg's audio
// track, interleaved with whatever it forwards. It returns when the last
// tone has ended, or with ctx's error.
func SendDTMF(ctx context.Context, out *OutboundTrack, digits string, opts DTMFOptions) error {
	if opts.Duration == 0 {
		opts.Duration = 100 * time.Millisecond
	}
	if opts.Gap == 0 {
		opts.Gap = 70 * time.Millisecond
	}
	if opts.Interval == 0 {
		opts.Interval = 20 * time.Millisecond
	}
	if opts.Volume == 0 {
		opts.Volume = 10
	}
	if opts.Volume > 63 {
		return fmt.Errorf("DTMF volume %d is above 63", opts.Volume)
	}
	events := make([]uint8, 0, len(digits))
	for _, r := range digits {
		ev, ok := dtmfEvent(unicode.ToUpper(r))
		if !ok {
			return fmt.Errorf("%q is not a DTMF digit (0-9, *, #, A-D)", string(r))
		}
		events = append(events, ev)
	}
	clock := out.Codec().ClockRate
	payload := make([]byte, 4)
	for i, ev := range events {
		if i > 0 {
			if err := sleep(ctx, opts.Gap); err != nil {
				return err
			}
		}
		start := time.Now()
		ts := out.timestampNow(start)
		ticker := time.NewTicker(opts.Interval)
		for first := true; ; first = false {
			elapsed := time.Since(start)
			end := elapsed >= opts.Duration
			if end {
				elapsed = opts.Duration
			}
			encodeDTMF(payload, ev, end, opts.Volume, uint16(min(ticks(elapsed, clock), 0xffff)))
			// The end packet is sent three times (RFC 4733 2.5.1.4).
			repeats := 1
			if end {
				repeats = 3
			}
			for range repeats {
				if err := out.inject(payload, first, true, ts); err != nil {
					ticker.Stop()
					return err
				}
			}
			if end {
				break
			}
			select {
			case <-ctx.Done():
				ticker.Stop()
				return ctx.Err()
			case <-ticker.C:
			}
		}
		ticker.Stop()
	}
	return nil
}

func encodeDTMF(b []byte, event uint8, end bool, volume uint8, duration uint16) {
	b[0] = event
	b[1] = volume & 0x3f
	if end {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], duration)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// DTMF is a received tone.
type DTMF struct {
	Leg      string
	Digit    rune
	Duration time.Duration
}

// DTMFDetector is a Tap that reports the RFC 4733 events of the tracks it is
// attached to, once per tone (retransmitted end packets are ignored).
type DTMFDetector struct {
	fn func(DTMF)

	mu   sync.Mutex
	last map[*InboundTrack]dtmfState
}

type dtmfState struct {
	ts       uint32
	reported bool
	event    uint8
	duration uint16
}

var _ Tap = (*DTMFDetector)(nil)

// NewDTMFDetector calls fn for each tone received.
func NewDTMFDetector(fn func(DTMF)) *DTMFDetector {
	return &DTMFDetector{fn: fn, last: map[*InboundTrack]dtmfState{}}
}

// Packet implements Tap.
func (d *DTMFDetector) Packet(t *InboundTrack, h *rtp.Header, payload []byte) {
	if t.DTMFPayloadType == 0 || h.PayloadType != t.DTMFPayloadType || len(payload) < 4 {
		return
	}
	event, end, duration := payload[0], payload[1]&0x80 != 0, binary.BigEndian.Uint16(payload[2:])
	if int(event) >= len(dtmfSymbols) {
		return // flash and other events are not digits
	}
	d.mu.Lock()
	st, seen := d.last[t]
	var report []DTMF
	if seen && st.ts != h.Timestamp && !st.reported {
		// The previous tone's end packets were all lost.
		report = append(report, d.tone(t, st))
	}
	if !seen || st.ts != h.Timestamp {
		st = dtmfState{ts: h.Timestamp, event: event}
	}
	st.duration = max(st.duration, duration)
	if end && !st.reported {
		st.reported = true
		report = append(report, d.tone(t, st))
	}
	d.last[t] = st
	d.mu.Unlock()
	for _, r := range report {
		d.fn(r)
	}
}

func (d *DTMFDetector) tone(t *InboundTrack, st dtmfState) DTMF {
	return DTMF{Leg: t.Leg, Digit: rune(dtmfSymbols[st.event]),
		Duration: time.Duration(st.duration) * time.Second / time.Duration(t.Codec.ClockRate)}
}

// Close implements Tap.
func (d *DTMFDetector) Close() error { return nil }
