package rtc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/internal/opqueue"
	"github.com/voipbot/voipbot/matrix/rtcevent"
	"github.com/voipbot/voipbot/voip/livekit"
	"github.com/voipbot/voipbot/voip/media/opuscodec"
)

// Leg is the bot's device in one room's call. Its methods never block:
// each is queued on the leg's operation queue, and the slow parts (the
// homeserver, the JWT service, the SFU) run off it and post back.
type Leg struct {
	m     *Manager
	id    leg.ID
	room  id.RoomID
	video bool
	// ringUsers are the users a call the bot starts rings (everyone in
	// the room if none).
	ringUsers []id.UserID
	// sharedKey is the call's passphrase in shared-key mode ("" if not).
	sharedKey string
	events    leg.Events
	log       zerolog.Logger
	q         *opqueue.Queue
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}

	// members is the identities of the call's other members now (a
	// map[string]bool, replaced whole): whose media may be heard.
	members atomic.Pointer[map[string]bool]
	// ms sends the bot's membership (set once, before it is first sent).
	ms membershipSender

	// On the queue.
	started, answered, ended bool
	joined                   bool   // our membership was sent
	delayID                  string // the delayed leave, "" if none
	participant              *livekit.Participant
	ringTimer                *time.Timer
	// encrypted: the room has m.room.encryption, so the call's media is
	// encrypted with per-participant keys (key, keyTimers).
	encrypted bool
	key       ownKey
	keyTimers []*time.Timer

	// keys holds the members' media keys (they may come before the SFU
	// is joined); encryptor encrypts what the bot publishes.
	keys      *livekit.KeyRing
	encryptor *livekit.Encryptor

	mu            sync.Mutex // guards what Describe reads
	status        string
	count         int
	describedE2EE bool
}

var _ leg.Leg = (*Leg)(nil)

func newLeg(m *Manager, lid leg.ID, room id.RoomID, video bool, events leg.Events) *Leg {
	ctx, cancel := context.WithCancel(m.ctx)
	l := &Leg{
		m: m, id: lid, room: room, video: video, events: events, q: opqueue.New(),
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		log:    m.log.With().Str("leg", string(lid)).Stringer("room_id", room).Logger(),
		status: "joining",
		keys:   livekit.NewKeyRing(), encryptor: &livekit.Encryptor{},
	}
	l.members.Store(&map[string]bool{})
	return l
}

// ID implements leg.Leg.
func (l *Leg) ID() leg.ID { return l.id }

// Kind implements leg.Leg.
func (l *Leg) Kind() leg.Kind { return leg.KindRTC }

// Direction implements leg.Leg: the bot joins the call.
func (l *Leg) Direction() leg.Direction { return leg.Outbound }

// Peer implements leg.Leg: the room whose call it is.
func (l *Leg) Peer() string { return string(l.room) }

// Room is the room whose call the leg is in.
func (l *Leg) Room() id.RoomID { return l.room }

// Video implements leg.Leg.
func (l *Leg) Video() bool { return l.video }

// Done implements leg.Leg.
func (l *Leg) Done() <-chan struct{} { return l.done }

// Answer implements leg.Leg: the bot is never rung by a call.
func (l *Leg) Answer() {}

// Describe is a line for the status command: it says how the other party
// hears the call (mixed, or the active speaker only in a build without an
// Opus codec).
func (l *Leg) Describe() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	hears := "everyone's audio mixed"
	if !opuscodec.Available {
		hears = "the active speaker's audio only (this build has no Opus mixer)"
	}
	e2ee := ""
	if l.describedE2EE {
		e2ee = ", media end-to-end encrypted"
	}
	return fmt.Sprintf("Element Call in %s (%s, %d other members%s; the other party hears %s)", l.room, l.status, l.count, e2ee, hears)
}

func (l *Leg) setStatus(s string) {
	l.mu.Lock()
	l.status = s
	l.mu.Unlock()
}

func (l *Leg) post(fn func()) { l.q.Post(fn) }

// Start joins the call.
func (l *Leg) Start() {
	l.post(func() {
		if l.started || l.ended {
			return
		}
		l.started = true
		l.m.wg.Add(1)
		go l.join()
	})
}

// errNoFocus is the end of a call that has no SFU to meet on.
var errNoFocus = errors.New("the call has no LiveKit focus, rtc.livekit_service_url is not set and the homeserver's .well-known names none (org.matrix.msc4143.rtc_foci)")

// join runs off the queue: the bot's membership, a token, the SFU.
func (l *Leg) join() {
	defer l.m.wg.Done()
	ctx, cancel := context.WithTimeout(l.ctx, l.m.cfg.JoinTimeout)
	defer cancel()
	mx := l.m.mx
	fail := func(detail string) {
		l.post(func() { l.endWith(leg.End{Reason: leg.Failed, By: leg.ByBot, Detail: detail}) })
	}

	may, err := mx.MaySendState(ctx, l.room, mx.UserID(), rtcevent.TypeCallMember)
	switch {
	case err != nil:
		fail(err.Error())
		return
	case !may:
		fail(fmt.Sprintf("the bot may not join calls in %s: its power level is below what %s needs (Element Call's rooms give it 0)", l.room, rtcevent.TypeCallMember))
		return
	}
	encrypted, err := mx.RoomEncrypted(ctx, l.room)
	if err != nil {
		fail(err.Error())
		return
	}
	if l.sharedKey != "" {
		// One key for everyone, from the room's passphrase: nothing to
		// send over Olm.
		key, err := livekit.SharedKey(l.sharedKey)
		if err == nil {
			err = l.keys.SetShared(key)
		}
		if err == nil {
			err = l.encryptor.SetShared(key)
		}
		if err != nil {
			fail(err.Error())
			return
		}
		encrypted = true
	} else if encrypted && !mx.CanEncrypt() {
		fail("the room is encrypted, so its call's media is too, and the bot has no encryption device (matrix.encryption is off)")
		return
	}
	if err = l.q.Do(ctx, func() error { l.encrypted = encrypted; return nil }); err != nil {
		return // the leg ended meanwhile
	}
	l.mu.Lock()
	l.describedE2EE = encrypted
	l.mu.Unlock()
	members, err := l.readMembers(ctx)
	if err != nil {
		fail(err.Error())
		return
	}
	focus, ok := rtcevent.OldestFocus(members)
	if !ok {
		focus = l.ownFocus(ctx)
	}
	if !focus.Usable() {
		fail(errNoFocus.Error())
		return
	}
	ms := l.pickMembership(ctx)
	if err = l.q.Do(ctx, func() error { l.ms = ms; return nil }); err != nil {
		return
	}
	log := l.log.With().Str("focus", focus.ServiceURL).Bool("sticky", ms.sticky()).Logger()
	oid, err := mx.OpenIDToken(ctx)
	if err != nil {
		fail(err.Error())
		return
	}
	var access sfuAccess
	if ms.sticky() {
		access, err = l.m.getToken(ctx, focus.ServiceURL, l.room, oid, mx.UserID(), mx.DeviceID())
	} else {
		access, err = l.m.token(ctx, focus.ServiceURL, focus.Alias, oid, mx.DeviceID())
	}
	if err != nil {
		fail(err.Error())
		return
	}
	created := time.Now()
	membershipEvent, err := ms.send(ctx, focus, created, created)
	if err != nil {
		fail(err.Error())
		return
	}
	delayID := l.scheduleLeave(ctx)
	if !l.q.Post(func() {
		if l.ended { // posted while the leg was ending
			l.leave(delayID)
			return
		}
		l.joined, l.delayID = true, delayID
		l.keysFor(members) // before the SFU: members need our key to hear us
	}) {
		l.leave(delayID) // hung up while joining: the membership just sent goes
		return
	}
	keys, encryptor := l.e2ee()
	p, err := livekit.Join(ctx, access.URL, access.JWT, livekit.Options{
		ID: string(l.id), Log: log, Keys: keys, Encryptor: encryptor, Video: l.video,
		Accept:   func(identity string) bool { return (*l.members.Load())[identity] },
		OnChange: func() { l.post(l.participantsChanged) },
	})
	if err != nil {
		fail(err.Error())
		return
	}
	log.Info().Str("identity", p.Identity()).Int("members", len(members)).Bool("e2ee", encrypted).Msg("Joined the room's call")
	if !l.q.Post(func() {
		if l.ended { // posted while the leg was ending
			_ = p.Close()
			return
		}
		l.participant = p
		l.setStatus("in the call")
		l.events.MediaReady(l, p.Leg())
		if len(members) > 0 {
			l.answer()
		} else {
			l.ring(membershipEvent)
		}
	}) {
		_ = p.Close() // the leg ended while the SFU was joined
		return
	}
	l.m.wg.Add(1)
	go l.refresh(focus, created, delayID)
}

// leaveDelay is the dead man's switch of a homeserver with delayed events
// (MSC4140): the bot's membership ends this long after the last restart,
// which comes every leaveRestart (js-sdk's numbers).
const (
	leaveDelay   = 8 * time.Second
	leaveRestart = 5 * time.Second
)

// scheduleLeave has the homeserver leave the call for the bot should it
// die, where the homeserver can ("" where it cannot, or on failure: the
// short expiry still ends the membership).
func (l *Leg) scheduleLeave(ctx context.Context) string {
	if !l.m.mx.DelayedEvents(ctx) {
		return ""
	}
	delayID, err := l.ms.scheduleLeave(ctx, leaveDelay)
	if err != nil {
		l.log.Warn().Err(err).Msg("The homeserver has delayed events but took no delayed leave: the membership's expiry is the only switch")
		return ""
	}
	return delayID
}

// ownFocus is the focus of a call the bot starts: rtc.livekit_service_url,
// else the first LiveKit focus of the homeserver's .well-known. The alias
// is the room, as Element Call names it.
func (l *Leg) ownFocus(ctx context.Context) rtcevent.Focus {
	f := rtcevent.Focus{Type: rtcevent.FocusTypeLiveKit, ServiceURL: l.m.cfg.ServiceURL, Alias: string(l.room)}
	if f.ServiceURL != "" {
		return f
	}
	foci, err := l.m.mx.WellKnownFoci(ctx)
	if err != nil {
		l.log.Debug().Err(err).Msg("No foci in the homeserver's .well-known")
	}
	for _, wk := range foci {
		if wk.Type == rtcevent.FocusTypeLiveKit && wk.ServiceURL != "" {
			f.ServiceURL = wk.ServiceURL
			break
		}
	}
	return f
}

// membership is the bot's membership content: the room's call, through
// focus, lasting MembershipExpiry from now (created is the first join).
func (l *Leg) membership(focus rtcevent.Focus, created, now time.Time) rtcevent.Membership {
	user, device := l.m.mx.UserID().String(), l.m.mx.DeviceID().String()
	intent := "audio"
	if l.video {
		intent = "video"
	}
	return rtcevent.Membership{
		Application: rtcevent.ApplicationCall, CallID: "", Scope: rtcevent.ScopeRoom, DeviceID: device,
		MembershipID: rtcevent.Identity(user, device),
		FocusActive:  rtcevent.ActiveFocus{Type: rtcevent.FocusTypeLiveKit, Selection: rtcevent.SelectionOldest},
		// Elapsed time plus the expiry: the membership lapses
		// MembershipExpiry after the last refresh.
		Expires:       now.Sub(created).Milliseconds() + l.m.cfg.MembershipExpiry.Milliseconds(),
		CreatedTS:     created.UnixMilli(),
		FociPreferred: []rtcevent.Focus{focus},
		Intent:        intent,
	}
}

// refresh keeps the membership from lapsing while the leg lives. Dendrite
// has no delayed events (MSC4140), so a short expiry kept fresh is what
// ends a crashed bot's membership.
func (l *Leg) refresh(focus rtcevent.Focus, created time.Time, delayID string) {
	defer l.m.wg.Done()
	t := time.NewTicker(l.ms.refreshEvery())
	defer t.Stop()
	var restart <-chan time.Time
	if delayID != "" {
		rt := time.NewTicker(leaveRestart)
		defer rt.Stop()
		restart = rt.C
	}
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-restart:
			ctx, cancel := context.WithTimeout(l.ctx, leaveRestart)
			err := l.m.mx.UpdateDelayedEvent(ctx, delayID, event.DelayActionRestart)
			cancel()
			if err != nil && l.ctx.Err() == nil {
				// Too late (the leave went out) or the homeserver lost
				// it: be a member again, with a new switch.
				l.log.Warn().Err(err).Msg("Restarting the delayed leave; joining again")
				ctx, cancel := context.WithTimeout(l.ctx, leaveDelay)
				if _, err := l.ms.send(ctx, focus, created, time.Now()); err == nil {
					if id := l.scheduleLeave(ctx); id != "" {
						delayID = id
						l.post(func() { l.delayID = id })
					}
				}
				cancel()
			}
		case now := <-t.C:
			ctx, cancel := context.WithTimeout(l.ctx, l.m.cfg.MembershipExpiry/4)
			_, err := l.ms.send(ctx, focus, created, now)
			if err != nil && l.ctx.Err() == nil {
				l.log.Warn().Err(err).Msg("Refreshing the bot's call membership")
			}
			if err == nil && delayID != "" {
				// A new state event of the same key may cancel a delayed
				// one (MSC4140): the switch is set again.
				_ = l.m.mx.UpdateDelayedEvent(ctx, delayID, event.DelayActionCancel)
				if id := l.scheduleLeave(ctx); id != "" {
					delayID = id
					l.post(func() { l.delayID = id })
				}
			}
			cancel()
		}
	}
}

// readMembers reads the call's other members and keeps whose media may be
// heard.
func (l *Leg) readMembers(ctx context.Context) ([]rtcevent.Member, error) {
	events, err := l.m.mx.CallMemberships(ctx, l.room)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	state, bad := rtcevent.Members(events, now)
	sticky, badSticky := rtcevent.StickyMembers(string(l.room), l.m.stickyEvents(l.room), now)
	for _, err := range append(bad, badSticky...) {
		l.log.Debug().Err(err).Msg("Ignoring a call membership Element Call would ignore too")
	}
	user, device := l.m.mx.UserID().String(), l.m.mx.DeviceID().String()
	others := slices.DeleteFunc(rtcevent.Combine(state, sticky), func(m rtcevent.Member) bool { return m.User == user && m.Device == device })
	ids := make(map[string]bool, len(others))
	for _, m := range others {
		ids[m.Identity()] = true
	}
	l.members.Store(&ids)
	l.mu.Lock()
	l.count = len(others)
	l.mu.Unlock()
	return others, nil
}

// membersChanged re-reads the memberships (a state event came in).
func (l *Leg) membersChanged() {
	l.post(func() {
		if l.ended || !l.started {
			return
		}
		l.m.wg.Add(1)
		go func() {
			defer l.m.wg.Done()
			ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
			defer cancel()
			members, err := l.readMembers(ctx)
			if err != nil {
				l.log.Warn().Err(err).Msg("Re-reading the call's members")
				return
			}
			l.post(func() { l.onMembers(members) })
		}()
	})
}

// onMembers: someone joined (the ring is answered) or everyone left (the
// leg ends: there is no one to bridge to).
func (l *Leg) onMembers(members []rtcevent.Member) {
	if l.ended || !l.joined {
		return
	}
	l.keysFor(members)
	if l.participant == nil {
		return
	}
	l.participant.Reconsider()
	n := len(members)
	switch {
	case n > 0 && !l.answered:
		l.answer()
	case n == 0 && l.answered:
		l.endWith(leg.End{Reason: leg.Hangup, By: leg.ByPeer, Detail: "everyone left the room's call"})
	}
}

// participantsChanged: the SFU's participants changed; nothing to decide
// yet beyond whose audio is carried, which the participant does itself.
func (l *Leg) participantsChanged() {
	if l.ended || l.participant == nil {
		return
	}
	select {
	case <-l.participant.Done():
		l.endWith(leg.End{Reason: leg.Failed, By: leg.ByPeer, Detail: "the SFU ended the bot's connection"})
	default:
	}
}

func (l *Leg) answer() {
	if l.ringTimer != nil {
		l.ringTimer.Stop()
	}
	l.answered = true
	l.setStatus("in the call")
	l.events.Answered(l)
	l.events.Connected(l) // media flows since the SFU was joined
}

// ring rings the room's members for a call the bot starts (Element X
// rings on it), and gives up after RingTimeout.
func (l *Leg) ring(membershipEvent id.EventID) {
	l.setStatus("ringing")
	var users []string
	for _, u := range l.ringUsers {
		users = append(users, u.String())
	}
	ring := rtcevent.NewRing(membershipEvent.String(), users, l.m.cfg.RingTimeout, l.video, time.Now())
	l.m.wg.Add(1)
	go func() {
		defer l.m.wg.Done()
		ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
		defer cancel()
		if _, err := l.m.mx.SendRoomEvent(ctx, l.room, rtcevent.TypeNotification, ring); err != nil {
			l.log.Warn().Err(err).Msg("Ringing the room for the call")
		}
	}()
	l.ringTimer = time.AfterFunc(l.m.cfg.RingTimeout, func() {
		l.post(func() {
			if !l.answered {
				l.endWith(leg.End{Reason: leg.NoAnswer, By: leg.ByPeer, Detail: "nobody joined the room's call"})
			}
		})
	})
}

// Hangup implements leg.Leg: the bot leaves the call.
func (l *Leg) Hangup(r leg.Reason, detail string) {
	l.post(func() { l.endWith(leg.End{Reason: r, By: leg.ByBot, Detail: detail}) })
}

// Hold implements leg.Leg: while the other party holds, the bot shows as
// muted (the call has no hold).
func (l *Leg) Hold(on bool) {
	l.post(func() {
		if l.participant != nil {
			l.participant.SetMuted(on)
		}
	})
}

// SetMuted implements leg.Leg: the other party's microphone, shown as the
// bot's.
func (l *Leg) SetMuted(audio, _ bool) {
	l.post(func() {
		if l.participant != nil {
			l.participant.SetMuted(audio)
		}
	})
}

// leave clears the bot's membership (off the queue), then lets another
// leg join the room's call.
func (l *Leg) leave(delayID string) {
	l.m.wg.Add(1)
	go func() {
		defer l.m.wg.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), 10*time.Second)
		defer cancel()
		if delayID != "" {
			// The delayed leave, sent now; the {} below is then a no-op.
			if err := l.m.mx.UpdateDelayedEvent(ctx, delayID, event.DelayActionSend); err != nil {
				l.log.Debug().Err(err).Msg("Sending the delayed leave")
			}
		}
		if err := l.ms.leave(ctx); err != nil {
			l.log.Warn().Err(err).Msg("Leaving the call: the membership stays until it expires")
		}
		// Only now may another leg join: its membership must not be
		// overwritten by this {}.
		l.m.forget(l)
	}()
}

// endWith ends the leg (on the queue): the SFU left, the membership
// cleared, the conversation told.
func (l *Leg) endWith(e leg.End) {
	if l.ended {
		return
	}
	l.ended = true
	l.setStatus("ended")
	if l.ringTimer != nil {
		l.ringTimer.Stop()
	}
	l.stopKeyTimers()
	l.cancel()
	if l.participant != nil {
		_ = l.participant.Close()
	}
	if l.joined {
		l.leave(l.delayID)
	} else {
		l.m.forget(l)
	}
	l.log.Info().Str("reason", string(e.Reason)).Str("by", string(e.By)).Str("detail", e.Detail).Msg("Left the room's call")
	l.events.Ended(l, e)
	close(l.done)
	l.q.Close()
}
