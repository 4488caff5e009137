package bridge

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/call"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/matrix/callevent"
	"github.com/voipbot/voipbot/store"
	"github.com/voipbot/voipbot/voip"
)

// ringGrace is how much of an invite's lifetime must be left for us to ring:
// matrix-js-sdk's RING_GRACE_PERIOD.
const ringGrace = 3 * time.Second

type callKey struct {
	room   id.RoomID
	callID string
}

// pendingInvite is an invite waiting for the end of its sync batch: if the
// batch also answers or ends the call, it never rings.
type pendingInvite struct {
	evt    *matrix.Event
	invite *callevent.Invite
}

// signaller is what calls need of Matrix: who the bot is, who may use it,
// rooms, and sending. *matrix.Client is one; the in-process benchmark has
// another.
type signaller interface {
	UserID() id.UserID
	DeviceID() id.DeviceID
	Allowed(user id.UserID) bool
	SendCallEvent(ctx context.Context, room id.RoomID, t callevent.Type, c callevent.Content, txnID string) (id.EventID, error)
	SendNotice(ctx context.Context, room id.RoomID, markdown string, replyTo *matrix.Event) (id.EventID, error)
	RoomIsPublic(ctx context.Context, room id.RoomID) (bool, error)
	OthersInRoom(ctx context.Context, room id.RoomID, except id.UserID) (int, error)
}

// callManager routes call events to calls, starts calls for invites and
// commands, and applies the policies across calls: access, glare, busy,
// public rooms, and how the bot refuses under a flood.
type callManager struct {
	cfg     CallsConfig
	mx      signaller
	store   *store.Store
	media   *voip.Engine
	log     zerolog.Logger
	ctx     context.Context
	now     func() time.Time
	ice     *iceServers
	metrics *callMetrics
	// early holds candidates that arrived before their call's invite.
	early   *earlyBuffer
	budget  *refusalBudget
	notices *missedNotices
	// refusing bounds the rejects being sent at once.
	refusing chan struct{}

	mu      sync.Mutex
	calls   map[callKey]*callRunner
	pending map[id.RoomID][]*pendingInvite
}

// earlyEvent is a candidates event that came before its call's invite.
type earlyEvent struct {
	sender  id.UserID
	content callevent.Content
}

func newCallManager(ctx context.Context, cfg CallsConfig, mx signaller, st *store.Store, media *voip.Engine, m *callMetrics, log zerolog.Logger) *callManager {
	cm := &callManager{
		cfg: cfg, mx: mx, store: st, media: media, ctx: ctx, now: time.Now, metrics: m,
		log:      log.With().Str("component", "calls").Logger(),
		ice:      newICEServers(cfg.ICEServers, nil, log),
		early:    newEarlyBuffer(m),
		refusing: make(chan struct{}, refusalMaxSending),
		calls:    map[callKey]*callRunner{},
		pending:  map[id.RoomID][]*pendingInvite{},
	}
	cm.budget = newRefusalBudget(func() time.Time { return cm.now() })
	cm.notices = newMissedNotices(cm.report, m)
	go cm.early.run(ctx, func() time.Time { return cm.now() })
	return cm
}

// register hooks the manager into the Matrix client.
func (cm *callManager) register(mx *matrix.Client) {
	for _, t := range callevent.Types {
		mx.On(event.Type{Type: string(t), Class: event.MessageEventType}, nil, cm.handleEvent)
	}
	mx.On(event.StateMember, cm.isPeerLeaving, cm.handleLeave)
	mx.OnBatchEnd(cm.batchEnd)
}

// us is our party in every call: like matrix-js-sdk, the bot's device ID
// is its party ID, so that another device of the bot's user is another party.
func (cm *callManager) us() call.Party {
	return call.Party{User: cm.mx.UserID(), PartyID: string(cm.mx.DeviceID())}
}

func (cm *callManager) options(room id.RoomID, callID string) call.Options {
	return call.Options{
		Room: room, CallID: callID, Us: cm.us(), Now: cm.now,
		Timeouts: call.Timeouts{InviteLifetime: cm.cfg.InviteLifetime, Connect: cm.cfg.ConnectTimeout},
	}
}

// handleEvent is the Matrix handler of every call event type: it parses,
// checks what it carries, then hands the event to its call's queue (it
// never waits for the call).
func (cm *callManager) handleEvent(ctx context.Context, evt *matrix.Event) error {
	t := callevent.Type(evt.Type.Type)
	log := zerolog.Ctx(ctx).With().Str("type", string(t)).Stringer("sender", evt.Sender).Logger()
	content, err := callevent.Parse(t, evt.Content.VeryRaw)
	if err != nil {
		log.Warn().Err(err).Msg("Ignoring malformed call event")
		return nil
	}
	key := callKey{evt.RoomID, content.CallInfo().CallID}
	log = log.With().Str("call_id", key.callID).Logger()
	if inv, ok := content.(*callevent.Invite); ok {
		cm.handleInvite(ctx, evt, inv)
		return nil
	}
	if err := checkSDPOf(content); err != nil {
		// Nothing pion would choke on reaches it. An unusable answer still
		// goes to its call, which cannot go on with that party and ends
		// (applying it fails); an unusable negotiate is dropped and the
		// call goes on, as matrix-js-sdk does.
		if n, ok := content.(*callevent.Negotiate); ok {
			log.Warn().Err(err).Str("sdp_type", string(n.Description.Type)).Msg("Ignoring a negotiate whose SDP the bot cannot use; the call goes on")
			return nil
		}
		log.Warn().Err(err).Msg("The peer's answer carries an SDP the bot cannot use")
	}
	if n, ok := content.(*callevent.Negotiate); ok && n.Lifetime.Clamped() {
		log.Info().Int64("lifetime_ms", int64(n.Lifetime)).Dur("taken_as", callevent.MaxLifetime).Msg("A negotiate's lifetime is beyond the maximum; clamped")
	}
	cm.mu.Lock()
	r := cm.calls[key]
	if r == nil {
		cm.dropPending(key, evt.Sender, content)
	}
	cm.mu.Unlock()
	if cand, ok := content.(*callevent.Candidates); ok && r == nil {
		// Trimmed and re-encoded outside the lock (only for calls not
		// ringing yet), then kept unless the call has rung meanwhile.
		if early := cm.earlyCandidates(evt.Sender, cand); early != nil {
			cm.mu.Lock()
			if r = cm.calls[key]; r == nil {
				if why := cm.early.keep(key, evt.Sender, early, cm.now()); why != "" {
					log.Debug().Str("why", why).Msg("Not keeping candidates for a call that has not rung")
				}
			}
			cm.mu.Unlock()
		}
	}
	if r == nil {
		log.Debug().Msg("Call event for no call of ours")
		return nil
	}
	age := evt.Age(cm.now())
	r.post(func() { r.input(r.m.RemoteAged(evt.Sender, content, age)) })
	return nil
}

// checkSDPOf checks the SDP an answer or negotiate carries.
func checkSDPOf(c callevent.Content) error {
	switch c := c.(type) {
	case *callevent.Answer:
		_, err := voip.CheckSDP(c.Answer.SDP, false)
		return err
	case *callevent.Negotiate:
		_, err := voip.CheckSDP(c.Description.SDP, c.Description.Type == callevent.SDPOffer)
		return err
	}
	return nil
}

// earlyCandidates is what may be kept of a candidates event in case its
// invite comes later: nothing from a sender the bot does not take calls
// from; else what trimEarly keeps.
func (cm *callManager) earlyCandidates(sender id.UserID, c *callevent.Candidates) []byte {
	if !cm.mx.Allowed(sender) {
		cm.metrics.earlyDropped.WithLabelValues("not_allowed").Inc()
		return nil
	}
	raw, trimmed := trimEarly(c)
	cm.metrics.earlyTrimmed.Add(float64(trimmed))
	return raw
}

// dropPending forgets a pending invite that the same batch answered,
// rejected or hung up. Called with mu held.
func (cm *callManager) dropPending(key callKey, sender id.UserID, c callevent.Content) {
	switch c.(type) {
	case *callevent.Answer, *callevent.Reject, *callevent.Hangup, *callevent.SelectAnswer:
	default:
		return
	}
	list := cm.pending[key.room]
	for i, p := range list {
		if p.invite.CallID == key.callID {
			cm.log.Info().Stringer("room_id", key.room).Str("call_id", key.callID).Stringer("sender", sender).
				Type("by", c).Msg("Invite ended in the same sync batch: not ringing")
			cm.pending[key.room] = append(list[:i:i], list[i+1:]...)
			return
		}
	}
}

// handleInvite applies the rules for whether an invite is for us, then
// holds it until the end of its batch.
func (cm *callManager) handleInvite(ctx context.Context, evt *matrix.Event, inv *callevent.Invite) {
	log := zerolog.Ctx(ctx).With().Str("call_id", inv.CallID).Stringer("sender", evt.Sender).Logger()
	key := callKey{evt.RoomID, inv.CallID}
	cm.mu.Lock()
	_, known := cm.calls[key]
	cm.mu.Unlock()
	switch {
	case known:
		log.Debug().Msg("Invite for a call we already have (our own, or a repeat)")
		return
	case evt.Sender == cm.mx.UserID() && inv.PartyID == string(cm.mx.DeviceID()):
		log.Debug().Msg("Our own invite")
		return
	case inv.Invitee != "" && inv.Invitee != cm.mx.UserID():
		log.Debug().Stringer("invitee", inv.Invitee).Msg("Invite for someone else")
		return
	}
	if inv.Lifetime.Clamped() {
		log.Info().Int64("lifetime_ms", int64(inv.Lifetime)).Dur("taken_as", callevent.MaxLifetime).Msg("An invite's lifetime is beyond the maximum; clamped")
	}
	if age := evt.Age(cm.now()); age > inv.Lifetime.Duration()-ringGrace {
		log.Info().Dur("age", age).Dur("lifetime", inv.Lifetime.Duration()).Msg("Ignoring an invite too old to answer")
		return
	}
	if !cm.cfg.PublicRooms {
		public, err := cm.mx.RoomIsPublic(ctx, evt.RoomID)
		if err != nil {
			log.Warn().Err(err).Msg("Cannot tell whether the room is public; treating it as not")
		} else if public {
			log.Info().Msg("Ignoring an invite in a public room (calls.public_rooms is off)")
			return
		}
	}
	if !cm.mx.Allowed(evt.Sender) {
		// As for room invites and commands: the bot serves only the users
		// it is set up for. Declined without a call slot, a record or a
		// notice.
		cm.refuse(ctx, evt, inv, refusal{kind: "not_allowed", why: "the caller is not allowed to use the bot"})
		return
	}
	if _, err := voip.CheckSDP(inv.Offer.SDP, true); err != nil {
		cm.refuse(ctx, evt, inv, refusal{kind: "unusable_offer", reason: callevent.ReasonUnknownError,
			why: "the bot cannot take it: " + err.Error(), record: true})
		return
	}
	cm.mu.Lock()
	cm.pending[evt.RoomID] = append(cm.pending[evt.RoomID], &pendingInvite{evt: evt, invite: inv})
	cm.mu.Unlock()
}

// batchEnd rings (that is, answers) the invites of a room whose sync batch
// is complete.
func (cm *callManager) batchEnd(ctx context.Context, room id.RoomID) {
	cm.mu.Lock()
	list := cm.pending[room]
	delete(cm.pending, room)
	cm.mu.Unlock()
	for _, p := range list {
		cm.ring(ctx, p)
	}
}

// ring starts an inbound call: glare and capacity decide whether it is
// answered, declined as busy, or hung up as the loser of a glare.
func (cm *callManager) ring(ctx context.Context, p *pendingInvite) {
	evt, inv := p.evt, p.invite
	log := zerolog.Ctx(ctx).With().Str("call_id", inv.CallID).Stringer("sender", evt.Sender).Logger()
	age := evt.Age(cm.now())
	if age > inv.Lifetime.Duration()-ringGrace {
		log.Info().Dur("age", age).Msg("Invite expired before it could ring")
		return
	}
	m, effects := call.NewInbound(cm.options(evt.RoomID, inv.CallID), evt.Sender, inv, age)
	r := newCallRunner(cm, m) // reads the room's settings: not under mu
	r.inviteEvent = evt.ID

	key := callKey{evt.RoomID, inv.CallID}
	var early []earlyEvent
	cm.mu.Lock()
	glare := cm.glareWith(evt.RoomID, evt.Sender)
	keepOurs := glare != nil && glare.snapshot().state == call.StateInviteSent && glare.m.CallID < inv.CallID
	busy := ""
	if !keepOurs {
		busy = cm.busyReason(evt.RoomID, glare)
	}
	if busy == "" {
		// The slot is taken under the same lock that counted the slots.
		early = cm.early.take(key)
		cm.calls[key] = r
	}
	cm.mu.Unlock()
	if busy != "" {
		r.cancel()
		log.Info().Str("why", busy).Msg("Declining a call: busy")
		cm.refuse(ctx, evt, inv, refusal{kind: "busy", reason: callevent.ReasonUserBusy, why: "the bot is busy (" + busy + ")", record: true})
		return
	}

	r.post(func() {
		r.input(effects, nil)
		for _, e := range early {
			r.input(r.m.Remote(e.sender, e.content))
		}
		switch {
		case keepOurs:
			// Glare, our invite already out and its call ID the lesser:
			// ours stays, theirs is hung up as replaced.
			log.Info().Str("ours", glare.m.CallID).Msg("Glare: keeping our call (lesser call ID)")
			r.input(r.m.Replaced(glare.m.CallID))
		default:
			r.input(r.m.Answer())
		}
	})
	if glare != nil && !keepOurs {
		// Glare, and theirs wins (ours was not sent yet, or its call ID is
		// the greater): ours is dropped or hung up as replaced, theirs is
		// answered on the user's behalf.
		log.Info().Str("ours", glare.m.CallID).Msg("Glare: the peer's call replaces ours")
		glare.post(func() { glare.input(glare.m.Replaced(inv.CallID)) })
	}
}

// glareWith finds our outbound call to user in room that is still being
// placed: the one an invite from user collides with. Called with mu held.
func (cm *callManager) glareWith(room id.RoomID, user id.UserID) *callRunner {
	for key, r := range cm.calls {
		if key.room != room || r.m.Direction != call.Outbound || r.m.Invitee != user {
			continue
		}
		if st := r.snapshot().state; st == call.StateCreateOffer || st == call.StateInviteSent {
			return r
		}
	}
	return nil
}

// busyReason says why a new call in room cannot be taken, or "". A call
// about to be replaced does not count. Called with mu held.
func (cm *callManager) busyReason(room id.RoomID, replaced *callRunner) string {
	total, inRoom := 0, 0
	for key, r := range cm.calls {
		if r == replaced {
			continue
		}
		total++
		if key.room == room {
			inRoom++
		}
	}
	switch {
	case cm.cfg.MaxCalls > 0 && total >= cm.cfg.MaxCalls:
		return fmt.Sprintf("%d calls in progress, the most it takes", total)
	case cm.cfg.MaxCallsPerRoom > 0 && inRoom >= cm.cfg.MaxCallsPerRoom:
		return fmt.Sprintf("%d calls in progress in this room, the most it takes", inRoom)
	}
	return ""
}

// sourceFor is what the bot sends into calls in room: the room's choice, or
// the configured default.
func (cm *callManager) sourceFor(ctx context.Context, room id.RoomID) MediaMode {
	r, err := cm.store.Room(ctx, room)
	if err != nil {
		cm.log.Warn().Err(err).Stringer("room_id", room).Msg("Cannot read the room's settings; using the default source")
	}
	if r != nil && slices.Contains(MediaModes, MediaMode(r.Settings.Source)) {
		return MediaMode(r.Settings.Source)
	}
	return cm.cfg.Source
}

// ended forgets a call that has ended.
func (cm *callManager) ended(r *callRunner) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	key := callKey{r.m.Room, r.m.CallID}
	if cm.calls[key] == r {
		delete(cm.calls, key)
	}
}

// report tells a room something about its calls, without holding anything up.
func (cm *callManager) report(room id.RoomID, text string) {
	go func() {
		ctx, cancel := context.WithTimeout(cm.ctx, 30*time.Second)
		defer cancel()
		if _, err := cm.mx.SendNotice(ctx, room, text, nil); err != nil {
			cm.log.Warn().Err(err).Stringer("room_id", room).Msg("Failed to report in the room")
		}
	}()
}

// Place calls invitee in room and returns the call ID; the call proceeds on
// its own queue.
func (cm *callManager) Place(room id.RoomID, invitee id.UserID, video bool) (*callRunner, error) {
	callID, err := newCallID(cm.now())
	if err != nil {
		return nil, err
	}
	o := cm.options(room, callID)
	o.Video = video
	m, effects := call.NewOutbound(o, invitee)
	r := newCallRunner(cm, m) // reads the room's settings: not under mu
	cm.mu.Lock()
	if busy := cm.busyReason(room, nil); busy != "" {
		cm.mu.Unlock()
		r.cancel()
		return nil, userErrorf("the bot is busy: %s", busy)
	}
	cm.calls[callKey{room, callID}] = r
	cm.mu.Unlock()
	r.post(func() { r.input(effects, nil) })
	return r, nil
}

// Hangup hangs up every call in room; it returns how many.
func (cm *callManager) Hangup(room id.RoomID) int {
	rs := cm.callsIn(room)
	for _, r := range rs {
		r.post(func() { r.input(r.m.Hangup(callevent.ReasonUserHangup, "hung up by command")) })
	}
	return len(rs)
}

// Describe lists the calls in room, a line each, for the status command.
func (cm *callManager) Describe(room id.RoomID) []string {
	rs := cm.callsIn(room)
	slices.SortFunc(rs, func(a, b *callRunner) int { return a.snapshot().created.Compare(b.snapshot().created) })
	var out []string
	for _, r := range rs {
		v := r.snapshot()
		kind := "voice"
		if v.video {
			kind = "video"
		}
		line := fmt.Sprintf("%s %s call with %s: %s", r.m.Direction, kind, v.peer.User, v.state)
		if !v.connectedAt.IsZero() {
			line += fmt.Sprintf(" for %s", cm.now().Sub(v.connectedAt).Round(time.Second))
		}
		line += fmt.Sprintf(", sending %s", r.source)
		if v.remoteHold {
			line += ", on hold"
		}
		if v.peerMutedAudio {
			line += ", peer's microphone muted"
		}
		if v.peerMutedVideo && v.video {
			line += ", peer's camera off"
		}
		out = append(out, line)
	}
	return out
}

// callsIn lists the calls in room.
func (cm *callManager) callsIn(room id.RoomID) []*callRunner {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	var rs []*callRunner
	for key, r := range cm.calls {
		if key.room == room {
			rs = append(rs, r)
		}
	}
	return rs
}

// Active is the number of calls not yet ended.
func (cm *callManager) Active() int {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	return len(cm.calls)
}

func (cm *callManager) isPeerLeaving(evt *event.Event) bool {
	if evt.StateKey == nil {
		return false
	}
	m := evt.Content.AsMember().Membership
	return m == event.MembershipLeave || m == event.MembershipBan
}

// handleLeave ends the calls with a user who left the room.
func (cm *callManager) handleLeave(_ context.Context, evt *matrix.Event) error {
	user := id.UserID(*evt.StateKey)
	cm.mu.Lock()
	var rs []*callRunner
	for key, r := range cm.calls {
		if key.room == evt.RoomID && r.snapshot().peer.User == user {
			rs = append(rs, r)
		}
	}
	cm.mu.Unlock()
	for _, r := range rs {
		r.post(func() { r.input(r.m.PeerLeft(), nil) })
	}
	return nil
}

// endStale ends calls a previous run left active: their media is gone with
// the process. The peer is told, so that its client does not wait for ICE
// to time out.
func (cm *callManager) endStale(ctx context.Context) error {
	stale, err := cm.store.ActiveCalls(ctx)
	if err != nil {
		return err
	}
	for _, c := range stale {
		cm.mu.Lock()
		_, live := cm.calls[callKey{c.RoomID, c.CallID}]
		cm.mu.Unlock()
		if live {
			continue // started by this run already
		}
		log := cm.log.With().Stringer("room_id", c.RoomID).Str("call_id", c.CallID).Str("state", c.State).Logger()
		if c.State != string(call.StateCreateOffer) {
			hangup := &callevent.Hangup{
				Common: callevent.Common{CallID: c.CallID, PartyID: c.OurPartyID, Version: callevent.Version(c.Version)},
				Reason: callevent.ReasonUnknownError,
			}
			if hangup.Version == callevent.Version0 {
				hangup.PartyID = ""
			}
			if _, err := cm.mx.SendCallEvent(ctx, c.RoomID, callevent.TypeHangup, hangup, ""); err != nil {
				log.Warn().Err(err).Msg("Failed to hang up a call left from the last run")
			}
		}
		now := cm.now()
		c.State, c.StateReason = store.CallStateEnded, "the bot restarted during the call"
		c.HangupReason, c.HangupBy, c.EndedAt = string(callevent.ReasonUnknownError), string(call.ByLocal), now
		if err = cm.store.PutCall(ctx, c); err != nil {
			return err
		}
		log.Info().Msg("Ended a call left from the last run")
	}
	return nil
}

const alphanumerics = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newCallID makes a call ID as matrix-js-sdk and famedly do: the time in
// milliseconds and 16 random alphanumerics. Glare keeps the lesser call ID,
// so with these the call created first wins, against either SDK.
func newCallID(now time.Time) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a call ID: %w", err)
	}
	out := []byte(strconv.FormatInt(now.UnixMilli(), 10))
	for _, v := range b {
		out = append(out, alphanumerics[int(v)%len(alphanumerics)])
	}
	return string(out), nil
}

// shutdown hangs up every call and waits, up to ctx, until they have ended.
func (cm *callManager) shutdown(ctx context.Context) {
	cm.notices.stop()
	cm.mu.Lock()
	rs := make([]*callRunner, 0, len(cm.calls))
	for _, r := range cm.calls {
		rs = append(rs, r)
	}
	cm.mu.Unlock()
	for _, r := range rs {
		r.post(func() { r.input(r.m.Hangup(callevent.ReasonUserHangup, "the bot is shutting down")) })
	}
	for _, r := range rs {
		select {
		case <-r.q.Done():
		case <-ctx.Done():
			cm.log.Warn().Int("calls", len(rs)).Msg("Calls still ending at shutdown; the next start ends them")
			return
		}
	}
}
