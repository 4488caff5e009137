package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/internal/opqueue"
	"github.com/voipbot/voipbot/store"
	"github.com/voipbot/voipbot/voip"
)

// Bridge is one conversation: its legs (a caller, whoever it rings, the
// bot's own source) and the one media forwarder between them. Everything
// that happens to it — a leg's event, a command, a target found — runs on
// its own ordered queue, so that no leg kind waits for it and no two
// decisions about it race.
//
// Its rules, for this one-to-one conversations: an inbound leg is
// answered only once the leg it rings has answered (so the caller hears
// ringing, and a decline there is the caller's decline); a leg that ends
// ends the conversation once fewer parties than it needs are left.
type Bridge struct {
	id   leg.BridgeID
	room id.RoomID // where it started: commands and notices go there
	// ringsOwnRoom: the call came from another network and rings room
	// itself (set before the bridge runs).
	ringsOwnRoom bool
	target       Target // what it rings or plays
	reg          *registry
	q            *opqueue.Queue
	log          zerolog.Logger
	fwd          *voip.Forwarder
	events       bridgeEvents

	// Only the queue touches these.
	members []*member
	// pending is a target to ring once the origin answers (a one-shot
	// call: the bot rings the member who asked, then the target).
	pending *Target
	ending  bool
	closed  bool
	// dialing counts targets being found and rung; the bridge stays open
	// until each has come back (cancel stops them once it ends).
	dialing int
	cancels []context.CancelFunc
	rec     store.Bridge
	done    chan struct{}
	// reports are the numbers of the legs that have ended.
	reports []legReport
	// recording is set while the call is recorded.
	recording *recording

	// parties is what other goroutines may read: the live legs' peers and
	// rooms (for commands that find a bridge).
	partiesMu sync.Mutex
	parties   map[leg.ID]party
	// dtmfSent is closed once the last key passed on has been sent (dtmf);
	// only the queue touches the field.
	dtmfSent chan struct{}
}

type party struct {
	peer    string
	room    id.RoomID
	network bool
	// line describes the leg for the status command: its own Describe
	// where it has one (safe from any goroutine), else kind and peer.
	line func() string
}

// member is one leg of the bridge, as the bridge sees it.
type member struct {
	l        leg.Leg
	media    voip.Leg   // nil until the leg's media is ready
	own      *ownLeg    // set for the bot's own source
	sources  []voip.Leg // the own source's media, in the forwarder
	origin   bool       // the leg the conversation started with
	answered bool
	ended    bool
	rec      store.BridgeLeg
}

func newBridgeID() leg.BridgeID {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return leg.BridgeID("br-" + hex.EncodeToString(b[:]))
}

// newBridge makes a conversation started by origin in room, towards
// target; it is registered and recorded, and runs once started.
func (reg *registry) newBridge(room id.RoomID, target Target) *Bridge {
	b := &Bridge{
		id: newBridgeID(), room: room, target: target, reg: reg,
		q: opqueue.New(), done: make(chan struct{}),
	}
	b.log = reg.log.With().Str("bridge", string(b.id)).Stringer("room_id", room).Logger()
	b.events = bridgeEvents{b}
	b.fwd = newForwarder(b)
	b.rec = store.Bridge{BridgeID: string(b.id), RoomID: room, Target: target.String(), CreatedAt: reg.now()}
	reg.add(b)
	b.post(func() {
		b.save()
		b.startRecording()
	})
	return b
}

// Done is closed once every leg has ended and the media is closed.
func (b *Bridge) Done() <-chan struct{} { return b.done }

func (b *Bridge) post(fn func()) {
	if !b.q.Post(fn) {
		b.log.Debug().Msg("Bridge input after the bridge ended")
	}
}

// join adds a leg (on the queue).
func (b *Bridge) join(l leg.Leg, origin bool) *member {
	m := &member{l: l, origin: origin, rec: store.BridgeLeg{
		LegID: string(l.ID()), BridgeID: string(b.id), Kind: string(l.Kind()), Direction: string(l.Direction()),
		Peer: l.Peer(), State: "ringing", CreatedAt: b.reg.now(),
	}}
	b.members = append(b.members, m)
	b.setParty(l, true)
	b.saveLeg(m)
	return m
}

// setParty keeps the parties view current (on the queue).
func (b *Bridge) setParty(l leg.Leg, live bool) {
	b.partiesMu.Lock()
	defer b.partiesMu.Unlock()
	if b.parties == nil {
		b.parties = map[leg.ID]party{}
	}
	if !live {
		delete(b.parties, l.ID())
		return
	}
	p := party{peer: l.Peer(), network: l.Kind().Network()}
	if r, ok := l.(interface{ Room() id.RoomID }); ok {
		p.room = r.Room()
	}
	if d, ok := l.(interface{ Describe() string }); ok {
		p.line = d.Describe
	} else {
		kind, peer := l.Kind(), l.Peer()
		p.line = func() string { return fmt.Sprintf("%s %s", kind, peer) }
	}
	b.parties[l.ID()] = p
}

// hasParty says whether a live leg of the bridge is with peer.
func (b *Bridge) hasParty(peer string) bool {
	b.partiesMu.Lock()
	defer b.partiesMu.Unlock()
	for _, p := range b.parties {
		if p.peer == peer {
			return true
		}
	}
	return false
}

// networkParties counts the live legs that are calls with someone.
func (b *Bridge) networkParties() int {
	b.partiesMu.Lock()
	defer b.partiesMu.Unlock()
	n := 0
	for _, p := range b.parties {
		if p.network {
			n++
		}
	}
	return n
}

// hasLeg says whether l is a live leg of the bridge.
func (b *Bridge) hasLeg(l leg.ID) bool {
	b.partiesMu.Lock()
	defer b.partiesMu.Unlock()
	_, ok := b.parties[l]
	return ok
}

// inRoom says whether a live leg of the bridge is in room.
func (b *Bridge) inRoom(room id.RoomID) bool {
	b.partiesMu.Lock()
	defer b.partiesMu.Unlock()
	for _, p := range b.parties {
		if p.room == room {
			return true
		}
	}
	return false
}

// addOwn adds the bot's own source of kind as an answered leg.
func (b *Bridge) addOwn(kind leg.Kind) *member {
	o := newOwnLeg(leg.ID(fmt.Sprintf("%s-%s", b.id, kind)), kind, b.reg.cfg, b.log)
	m := b.join(o, false)
	m.own = o
	m.answered = true
	m.rec.State, m.rec.AnsweredAt = "answered", b.reg.now()
	b.saveLeg(m)
	// Sources start for each party whose media is ready already.
	for _, other := range b.members {
		if other.media != nil && other.l.Kind().Network() {
			b.startOwn(m, other.media)
		}
	}
	return m
}

// startOwn starts an own leg's sources for peer and puts them in the
// forwarder.
func (b *Bridge) startOwn(m *member, peer voip.Leg) {
	sources, err := m.own.start(peer)
	if err != nil {
		b.log.Warn().Err(err).Str("source", string(m.own.kind)).Msg("The bot's source cannot send all its media")
	}
	for _, s := range sources {
		m.sources = append(m.sources, s)
		if err := b.fwd.Add(s); err != nil {
			b.log.Warn().Err(err).Msg("Adding the bot's source to the bridge")
		}
	}
}

func (b *Bridge) member(l leg.Leg) *member {
	for _, m := range b.members {
		if m.l == l {
			return m
		}
	}
	return nil
}

func (b *Bridge) origin() *member {
	for _, m := range b.members {
		if m.origin {
			return m
		}
	}
	return nil
}

// live counts the network legs not ended.
func (b *Bridge) live() int {
	n := 0
	for _, m := range b.members {
		if !m.ended && m.l.Kind().Network() {
			n++
		}
	}
	return n
}

// hasOwn says whether the bot's own source is a live party.
func (b *Bridge) hasOwn() bool {
	for _, m := range b.members {
		if m.own != nil && !m.ended {
			return true
		}
	}
	return false
}

// answered: a leg answered (or was answered). An origin still ringing is
// answered now that the party it rang has; a one-shot call's target is
// rung now that the member who asked has answered; the bot's own source
// stops once a person is bridged in.
func (b *Bridge) answered(l leg.Leg) {
	m := b.member(l)
	if m == nil || m.ended {
		return
	}
	m.answered = true
	m.rec.State, m.rec.AnsweredAt, m.rec.Peer = "answered", b.reg.now(), l.Peer()
	b.setParty(l, true)
	b.saveLeg(m)
	if m.origin {
		if b.pending != nil {
			t := *b.pending
			b.pending = nil
			b.ring(t)
		}
		return
	}
	if why := b.reg.refusePeer(l); why != "" {
		b.log.Warn().Str("leg", string(l.ID())).Str("peer", l.Peer()).Msg("The call was answered by someone the bot may not call; hanging up")
		l.Hangup(leg.Hangup, why)
		return
	}
	if o := b.origin(); o != nil && !o.answered && !o.ended {
		o.l.Answer()
	}
	for _, own := range b.members {
		if own.own != nil && !own.ended {
			b.endMember(own, leg.End{Reason: leg.Hangup, By: leg.ByBot, Detail: "a person was bridged in"})
		}
	}
}

// mediaReady: a leg's media may be forwarded to and from.
func (b *Bridge) mediaReady(l leg.Leg, media voip.Leg) {
	m := b.member(l)
	if m == nil || m.ended {
		return
	}
	m.media = media
	if err := b.fwd.Add(media); err != nil {
		b.log.Warn().Err(err).Str("leg", string(l.ID())).Msg("Adding a leg's media to the bridge")
	}
	if b.recording != nil {
		b.fwd.Tap(media, b.recording.rec)
	}
	for _, own := range b.members {
		if own.own != nil && !own.ended {
			b.startOwn(own, media)
		}
	}
}

// receiving: a party put the bot on hold (on false) or resumed: nothing is
// forwarded to it meanwhile, and the others are put on hold too.
func (b *Bridge) receiving(l leg.Leg, on bool) {
	m := b.member(l)
	if m == nil || m.ended {
		return
	}
	if m.media != nil {
		b.fwd.SetReceiving(m.media, on)
	}
	for _, other := range b.members {
		if other != m && !other.ended && other.l.Kind().Network() {
			other.l.Hold(!on)
		}
	}
}

// peerMuted: a party muted or unmuted; the others see it as the bot's
// stream muted.
func (b *Bridge) peerMuted(l leg.Leg, audio, video bool) {
	b.log.Debug().Str("leg", string(l.ID())).Bool("audio", audio).Bool("video", video).Msg("A party muted or unmuted")
	for _, m := range b.members {
		if m.l != l && !m.ended && m.l.Kind().Network() {
			m.l.SetMuted(audio, video)
		}
	}
}

// dtmf: a party's key, signalled out of band, goes to every other party's
// audio as RFC 4733 events. Keys go one after another, in the order they
// were pressed: each sender waits for the one before it (two senders on a
// track would interleave their events, and a PIN must not be reordered).
func (b *Bridge) dtmf(l leg.Leg, digit rune, d time.Duration) {
	var outs []*voip.OutboundTrack
	for _, m := range b.members {
		if m.l == l || m.ended || m.media == nil {
			continue
		}
		if out := m.media.Outbound(webrtc.RTPCodecTypeAudio); out != nil {
			outs = append(outs, out)
		}
	}
	b.log.Info().Str("leg", string(l.ID())).Str("digit", string(digit)).Int("to", len(outs)).Msg("A party pressed a key")
	if len(outs) == 0 {
		return
	}
	prev, sent := b.dtmfSent, make(chan struct{})
	b.dtmfSent = sent
	go func() {
		defer close(sent)
		if prev != nil {
			<-prev
		}
		ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Second)
		defer cancel()
		for _, out := range outs {
			if err := voip.SendDTMF(ctx, out, string(digit), voip.DTMFOptions{Duration: d}); err != nil {
				b.log.Info().Err(err).Str("digit", string(digit)).Msg("Could not pass a key on")
			}
		}
	}()
}

// ended: a leg is over. The others are ended with a reason that says why,
// once the conversation lacks the parties it needs.
func (b *Bridge) ended(l leg.Leg, e leg.End) {
	m := b.member(l)
	if m == nil || m.ended {
		return
	}
	answered := m.answered
	b.finish(m, e)
	b.log.Info().Str("leg", string(l.ID())).Str("kind", string(l.Kind())).Str("reason", string(e.Reason)).
		Str("by", string(e.By)).Str("detail", e.Detail).Msg("Leg ended")
	if r, ok := l.(interface{ Room() id.RoomID }); ok && l.Kind() == leg.KindRTC && e.Reason == leg.Failed && !answered {
		// Joining a room's call fails in ways the room can fix (power
		// levels, a missing focus): it is told why.
		b.reg.notice(r.Room(), "Could not join this room's call: "+e.Detail)
	}
	need := 2
	if b.hasOwn() || b.target.Own() {
		need = 1
	}
	if b.live() >= need && !b.ending {
		return
	}
	b.end(m, e)
}

// end ends every leg left, each for the reason its party should hear.
func (b *Bridge) end(cause *member, e leg.End) {
	b.ending = true
	b.pending = nil
	for _, cancel := range b.cancels {
		cancel()
	}
	b.cancels = nil
	for _, m := range b.members {
		if m.ended {
			continue
		}
		r, detail := b.reasonFor(m, cause, e)
		b.endMember(m, leg.End{Reason: r, By: leg.ByBot, Detail: detail})
	}
	b.maybeClose()
}

// reasonFor is what ends m because cause ended with e. A caller still
// ringing hears the far end's answer: its decline, busy, no answer or
// failure; a party that rings is told the caller gave up; after an answer
// a hangup is a hangup.
func (b *Bridge) reasonFor(m, cause *member, e leg.End) (leg.Reason, string) {
	switch {
	case cause == nil:
		return e.Reason, e.Detail
	case m.origin && !m.answered:
		r := e.Reason
		if r == leg.Hangup {
			r = leg.Declined
		}
		return r, fmt.Sprintf("the other party: %s", e.Detail)
	case !m.answered && e.Reason == leg.NoAnswer:
		return leg.NoAnswer, "the caller's call was not answered in time"
	case !m.answered:
		return leg.Hangup, "the caller hung up"
	case e.Reason == leg.Declined:
		return leg.Hangup, "the other party hung up"
	default:
		return e.Reason, "the other party: " + e.Detail
	}
}

// endMember hangs up a leg and records it as ended; its Ended, when it
// comes, changes nothing more.
func (b *Bridge) endMember(m *member, e leg.End) {
	m.l.Hangup(e.Reason, e.Detail)
	b.finish(m, e)
}

// finish records a leg as ended, takes its media out of the forwarder and
// gives its call slot back.
func (b *Bridge) finish(m *member, e leg.End) {
	if m.ended {
		return
	}
	m.ended = true
	if m.own != nil {
		m.own.close()
	}
	for _, s := range m.sources {
		b.fwd.Remove(s)
	}
	if m.l.Kind().Network() {
		b.snapshotReport(m)
	}
	if m.media != nil {
		b.fwd.Remove(m.media)
	}
	b.reg.adm.release(m.l.ID())
	b.setParty(m.l, false)
	m.rec.State, m.rec.EndedAt = store.LegStateEnded, b.reg.now()
	m.rec.EndReason, m.rec.EndedBy, m.rec.EndDetail = string(e.Reason), string(e.By), e.Detail
	b.saveLeg(m)
}

// maybeClose closes the media and retires the bridge once every leg has
// ended and let go of its media.
func (b *Bridge) maybeClose() {
	if b.closed || b.dialing > 0 {
		return
	}
	for _, m := range b.members {
		if !m.ended {
			return
		}
	}
	b.closed = true
	b.rec.EndedAt = b.reg.now()
	if b.rec.EndReason == "" {
		b.rec.EndReason = "ended"
	}
	b.save()
	b.report()
	b.reg.remove(b)
	b.q.Close()
	legs := make([]leg.Leg, len(b.members))
	for i, m := range b.members {
		legs[i] = m.l
	}
	go func() {
		for _, l := range legs {
			<-l.Done()
		}
		if err := b.fwd.Close(); err != nil {
			b.log.Debug().Err(err).Msg("Closing the bridge's forwarder")
		}
		b.finishRecording()
		<-b.q.Done()
		close(b.done)
	}()
}

// hangup ends the conversation (a command, or the bot stopping).
func (b *Bridge) hangup(r leg.Reason, detail string) {
	b.post(func() {
		if b.rec.EndReason == "" {
			b.rec.EndReason = detail
		}
		b.end(nil, leg.End{Reason: r, By: leg.ByBot, Detail: detail})
	})
}

// ring places a leg towards t, once the target is found (off the queue).
func (b *Bridge) ring(t Target) {
	o := b.origin()
	if o == nil || o.ended || b.ending {
		return
	}
	video, caller := o.l.Video(), o.l.Peer()
	deadline := time.Time{}
	if exp, ok := o.l.(interface{ Expires() time.Time }); ok && !o.answered {
		deadline = exp.Expires()
	}
	b.target = t
	b.rec.Target = t.String()
	b.save()
	ctx, cancel := b.reg.reachContext(deadline)
	b.dialing++
	b.cancels = append(b.cancels, cancel)
	go func() {
		far, err := b.reg.dial(ctx, b, t, video, deadline, caller)
		b.post(func() {
			b.dialing--
			cancel()
			switch {
			case err != nil && b.ending:
				b.maybeClose()
			case err != nil:
				b.log.Info().Err(err).Str("target", t.String()).Msg("Cannot reach the target")
				b.reg.notice(b.room, fmt.Sprintf("Could not call %s: %v", t, err))
				b.end(nil, leg.End{Reason: reasonOf(err), By: leg.ByBot, Detail: err.Error()})
			case b.ending:
				// The caller is gone: the leg is never placed.
				far.Hangup(leg.Hangup, "the caller hung up")
				b.reg.adm.release(far.ID())
				b.maybeClose()
			default:
				b.join(far, false)
				far.Start()
			}
		})
	}()
}

// reasonOf is the reason a failure to reach a target is given to the
// caller: busy when the bot had no slot, no answer when time ran out.
func reasonOf(err error) leg.Reason {
	var busy *busyError
	switch {
	case asBusy(err, &busy):
		return leg.Busy
	case isTimeout(err):
		return leg.NoAnswer
	}
	return leg.Failed
}

// save records the bridge; saveLeg one of its legs. A failure is logged:
// the call goes on (its Matrix record is kept by its own kind).
func (b *Bridge) save() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.reg.store.PutBridge(ctx, &b.rec); err != nil {
		b.log.Err(err).Msg("Failed to store the bridge")
	}
}

func (b *Bridge) saveLeg(m *member) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.reg.store.PutBridgeLeg(ctx, &m.rec); err != nil {
		b.log.Err(err).Msg("Failed to store a leg of the bridge")
	}
}

// describe says what the bridge is, in a line, for the status command.
func (b *Bridge) describe() string {
	b.partiesMu.Lock()
	lines := make([]string, 0, len(b.parties))
	for _, p := range b.parties {
		if p.network {
			lines = append(lines, p.line())
		}
	}
	n := len(b.parties)
	b.partiesMu.Unlock()
	slices.Sort(lines)
	if b.target.Own() {
		return fmt.Sprintf("bridge `%s`: sending %s", b.id, b.target)
	}
	s := fmt.Sprintf("bridge `%s`: to %s, %d parties", b.id, b.target, n)
	if len(lines) > 0 {
		s += ": " + strings.Join(lines, "; ")
	}
	return s
}

// bridgeEvents is how legs report to the bridge: every method queues.
type bridgeEvents struct{ b *Bridge }

var _ leg.Events = bridgeEvents{}

func (e bridgeEvents) Answered(l leg.Leg) { e.b.post(func() { e.b.answered(l) }) }
func (e bridgeEvents) MediaReady(l leg.Leg, m voip.Leg) {
	e.b.post(func() { e.b.mediaReady(l, m) })
}
func (e bridgeEvents) Preferred(_ leg.Leg, t *voip.InboundTrack) {
	e.b.post(func() {
		if err := e.b.fwd.Select(t); err != nil {
			e.b.log.Warn().Err(err).Msg("Selecting a leg's user-media stream")
		}
	})
}
func (e bridgeEvents) Connected(l leg.Leg) {
	e.b.post(func() {
		if m := e.b.member(l); m != nil && !m.ended {
			m.rec.State = "connected"
			e.b.saveLeg(m)
		}
	})
}
func (e bridgeEvents) Receiving(l leg.Leg, on bool) {
	e.b.post(func() { e.b.receiving(l, on) })
}
func (e bridgeEvents) PeerMuted(l leg.Leg, audio, video bool) {
	e.b.post(func() { e.b.peerMuted(l, audio, video) })
}
func (e bridgeEvents) Ended(l leg.Leg, end leg.End) { e.b.post(func() { e.b.ended(l, end) }) }
func (e bridgeEvents) DTMF(l leg.Leg, digit rune, d time.Duration) {
	e.b.post(func() { e.b.dtmf(l, digit, d) })
}

// newForwarder makes the bridge's media forwarder.
func newForwarder(b *Bridge) *voip.Forwarder {
	return voip.NewForwarder(string(b.id), b.log, voip.OnError(func(err error) {
		b.log.Warn().Err(err).Msg("The bridge cannot forward media")
	}))
}
