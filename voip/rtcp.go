package voip

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
)

// reportInterval is how often each session sends RTCP reports. RFC 3550
// suggests 5 s for large sessions; WebRTC endpoints send about once a
// second, and so do we, spread over the second by each session's offset.
const reportInterval = time.Second

// reporter sends the RTCP sender and receiver reports of every session of
// an engine from one goroutine. pion's report interceptors would take two
// goroutines per connection and allocate for every packet received; the
// numbers a report needs are kept anyway by the forwarder (receive
// statistics) and the outbound tracks (counts, timestamps).
type reporter struct {
	mu       sync.Mutex
	sessions map[*Session]struct{}
	running  bool
	stop     chan struct{}
	done     chan struct{}
}

func (r *reporter) add(s *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions == nil {
		r.sessions = map[*Session]struct{}{}
	}
	r.sessions[s] = struct{}{}
	if !r.running {
		r.running = true
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		go r.run(r.stop, r.done)
	}
}

// remove forgets a session; the goroutine stops with the last one.
func (r *reporter) remove(s *Session) {
	r.mu.Lock()
	delete(r.sessions, s)
	stop, done := r.stop, r.done
	last := len(r.sessions) == 0 && r.running
	if last {
		r.running = false
	}
	r.mu.Unlock()
	if last {
		close(stop)
		<-done
	}
}

func (r *reporter) run(stop, done chan struct{}) {
	defer close(done)
	// Ten ticks a second; each session reports on the tick that comes
	// after its own offset, so a thousand sessions do not report at once.
	ticker := time.NewTicker(reportInterval / 10)
	defer ticker.Stop()
	var sessions []*Session
	for tick := 0; ; tick++ {
		select {
		case <-stop:
			return
		case now := <-ticker.C:
			r.mu.Lock()
			sessions = sessions[:0]
			for s := range r.sessions {
				if s.reportSlot == tick%10 {
					sessions = append(sessions, s)
				}
			}
			r.mu.Unlock()
			for _, s := range sessions {
				s.sendReports(now)
			}
		}
	}
}

// ntpTime converts a wall clock time to the 64-bit NTP format of RTCP.
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800 // 1900 to 1970
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

// ntpMiddle is the middle 32 bits of an NTP time, as LSR and DLSR use.
func ntpMiddle(ntp uint64) uint32 { return uint32(ntp >> 16) }

// lastSR is what a receiver report needs about the last sender report
// received on a stream.
type lastSR struct {
	lsr uint32    // middle 32 bits of its NTP time
	at  time.Time // when it arrived
}

// remoteReport is what the peer's last reception report said about one of
// our outbound streams.
type remoteReport struct {
	fractionLost atomic.Uint32 // in 1/256
	totalLost    atomic.Uint32
	jitter       atomic.Uint32 // in timestamp units
	rttNanos     atomic.Int64
	highestSeq   atomic.Uint32 // extended highest sequence number received
	reports      atomic.Uint64 // reception reports about the stream so far
}

// sendReports sends one compound RTCP packet: a sender report for each
// outbound stream that has sent media (a receiver report if none has), with
// a reception report block for each inbound stream.
func (s *Session) sendReports(now time.Time) {
	s.mu.Lock()
	inbound, outbound := s.inbound, s.outbound
	s.mu.Unlock()
	var blocks []rtcp.ReceptionReport
	for _, t := range inbound {
		if b, ok := receptionReport(t, t.ssrc, &s.lastSRs, now); ok {
			blocks = append(blocks, b)
		}
	}
	pkts := compoundReport(outbound, blocks, s.reportSSRC, now)
	if len(pkts) == 0 {
		return
	}
	if err := s.pc.WriteRTCP(pkts); err != nil {
		s.log.Debug().Err(err).Msg("Failed to send RTCP reports")
	}
}

// compoundReport is a sender report for each outbound stream that has
// sent media, the reception blocks riding on the first; a receiver report
// from reportSSRC if none has; nothing if there is nothing to say.
func compoundReport(outbound []*OutboundTrack, blocks []rtcp.ReceptionReport, reportSSRC uint32, now time.Time) []rtcp.Packet {
	var pkts []rtcp.Packet
	for _, o := range outbound {
		if sr, ok := o.senderReport(now); ok {
			sr.Reports, blocks = blocks, nil // the blocks ride on the first report
			pkts = append(pkts, sr)
		}
	}
	if len(pkts) == 0 && len(blocks) > 0 {
		pkts = append(pkts, &rtcp.ReceiverReport{SSRC: reportSSRC, Reports: blocks})
	}
	return pkts
}

// senderReport describes what the track has sent, if it has sent media.
func (o *OutboundTrack) senderReport(now time.Time) (*rtcp.SenderReport, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ok := o.writer != nil && o.munger.started && o.packets.Load() > 0
	return &rtcp.SenderReport{
		SSRC:        o.ssrc,
		NTPTime:     ntpTime(now),
		RTPTime:     o.munger.lastTS + uint32(now.Sub(o.munger.lastAt).Seconds()*float64(o.codec.ClockRate)),
		PacketCount: uint32(o.packets.Load()),
		OctetCount:  uint32(o.bytes.Load()),
	}, ok
}

// receptionReport is the report block for one inbound stream (RFC 3550
// 6.4.1, A.3) whose sender is ssrc: loss over the interval since the last
// report and overall, the highest sequence number, jitter, and the timing
// of the last sender report received (lastSRs: SSRC -> lastSR). One
// reporter a track: it keeps the counts of the last report.
func receptionReport(t *InboundTrack, ssrc uint32, lastSRs *sync.Map, now time.Time) (rtcp.ReceptionReport, bool) {
	r := &t.rx
	base, maxSeq, received, jitter := r.published()
	if received == 0 {
		return rtcp.ReceptionReport{}, false
	}
	expected := maxSeq - base + 1
	expectedInterval := expected - r.priorExpected
	receivedInterval := received - r.priorReceived
	r.priorExpected, r.priorReceived = expected, received
	var fraction uint8
	if lostInterval := int64(expectedInterval) - int64(receivedInterval); expectedInterval > 0 && lostInterval > 0 {
		fraction = uint8(lostInterval << 8 / int64(expectedInterval))
	}
	lost := max(int64(expected)-int64(received), 0)
	block := rtcp.ReceptionReport{
		SSRC:               ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(min(lost, 0x7fffff)),
		LastSequenceNumber: maxSeq,
		Jitter:             jitter,
	}
	if sr, ok := lastSRs.Load(ssrc); ok {
		last := sr.(lastSR)
		block.LastSenderReport = last.lsr
		block.Delay = uint32(now.Sub(last.at).Seconds() * 65536) // in 1/65536 s
	}
	return block, true
}

// handleInboundRTCP notes what RTCP arriving on a receiver says: the timing
// of the sender's reports, for our receiver reports.
func (s *Session) handleInboundRTCP(pkts []rtcp.Packet, now time.Time) {
	noteSenderReports(&s.lastSRs, pkts, now)
}

// noteSenderReports keeps the timing of the sender reports among pkts.
func noteSenderReports(lastSRs *sync.Map, pkts []rtcp.Packet, now time.Time) {
	for _, p := range pkts {
		if sr, ok := p.(*rtcp.SenderReport); ok {
			lastSRs.Store(sr.SSRC, lastSR{lsr: ntpMiddle(sr.NTPTime), at: now})
		}
	}
}

// handleOutboundRTCP notes what the peer reports about an outbound stream
// (loss, jitter, round-trip time) and passes keyframe requests on.
func (s *Session) handleOutboundRTCP(track *OutboundTrack, pkts []rtcp.Packet, now time.Time) {
	track.handleFeedback(pkts, now)
}

// handleFeedback takes the receiver's RTCP about this track: its
// reception reports (loss, jitter, round-trip time) and keyframe requests.
func (o *OutboundTrack) handleFeedback(pkts []rtcp.Packet, now time.Time) {
	for _, p := range pkts {
		var reports []rtcp.ReceptionReport
		switch p := p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			o.keyframeRequested()
		case *rtcp.ReceiverReport:
			reports = p.Reports
		case *rtcp.SenderReport:
			reports = p.Reports
		}
		for _, rr := range reports {
			if rr.SSRC != o.ssrcNow() {
				continue
			}
			o.remote.fractionLost.Store(uint32(rr.FractionLost))
			o.remote.totalLost.Store(rr.TotalLost)
			o.remote.jitter.Store(rr.Jitter)
			o.remote.highestSeq.Store(rr.LastSequenceNumber)
			o.remote.reports.Add(1)
			if rr.LastSenderReport != 0 {
				// RTT = arrival - LSR - DLSR, all in 1/65536 s (RFC 3550 6.4.1).
				rtt := int64(ntpMiddle(ntpTime(now))) - int64(rr.LastSenderReport) - int64(rr.Delay)
				if rtt >= 0 {
					o.remote.rttNanos.Store(rtt * int64(time.Second) / 65536)
				}
			}
		}
	}
}

// randomSlot spreads sessions' reports over the interval.
func randomSlot() int { return rand.IntN(10) }
