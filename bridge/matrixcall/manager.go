package matrixcall

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/call"
	"github.com/voipbot/voipbot/bridge/leg"
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
	callID callevent.CallID
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

// Host is what Matrix calls need of the conversation layer; package bridge
// implements it. Its methods return at once.
type Host interface {
	// Admit takes a call slot for a new leg in room, or says why the bot
	// cannot take another call (busy). The slot of replaces (a call glare
	// is about to end), if any, does not count. The slot is given back
	// when the leg's Ended is reported.
	Admit(id leg.ID, room id.RoomID, replaces leg.ID) (busy string)
	// Ringing: an inbound call rings. The host answers it, declines it or
	// routes it elsewhere (through the leg's methods), and returns where
	// the leg reports what happens to it.
	Ringing(l *Leg) leg.Events
}

// Manager routes call events to calls, starts calls for invites and for the
// conversation layer, and applies the policies of Matrix calls: access,
// glare, public rooms, and how the bot refuses under a flood.
type Manager struct {
	cfg     Config
	host    Host
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
	calls   map[callKey]*Leg
	pending map[id.RoomID][]*pendingInvite
}

// earlyEvent is a candidates event that came before its call's invite.
type earlyEvent struct {
	sender  id.UserID
	content callevent.Content
}

// New makes the manager of Matrix calls; ctx bounds its life. Register it
// with the Matrix client before the client starts.
func New(ctx context.Context, cfg Config, mx signaller, st *store.Store, media *voip.Engine, host Host, reg prometheus.Registerer, log zerolog.Logger) *Manager {
	m := newCallMetrics(reg)
	cm := &Manager{
		cfg: cfg, host: host, mx: mx, store: st, media: media, ctx: ctx, now: time.Now, metrics: m,
		log:      log.With().Str("component", "calls").Logger(),
		ice:      newICEServers(cfg.ICEServers, nil, log),
		early:    newEarlyBuffer(m),
		refusing: make(chan struct{}, refusalMaxSending),
		calls:    map[callKey]*Leg{},
		pending:  map[id.RoomID][]*pendingInvite{},
	}
	cm.budget = newRefusalBudget(func() time.Time { return cm.now() })
	cm.notices = newMissedNotices(cm.report, m)
	go cm.early.run(ctx, func() time.Time { return cm.now() })
	return cm
}

// Register hooks the manager into the Matrix client, and TURN credentials
// to the homeserver's.
func (cm *Manager) Register(mx *matrix.Client) {
	cm.ice.fetch = mx.TURN
	for _, t := range callevent.Types {
		mx.On(event.Type{Type: string(t), Class: event.MessageEventType}, nil, cm.handleEvent)
	}
	mx.On(event.StateMember, cm.isPeerLeaving, cm.handleLeave)
	mx.OnBatchEnd(cm.batchEnd)
}

// us is our party in every call: like matrix-js-sdk, the bot's device ID
// is its party ID, so that another device of the bot's user is another party.
func (cm *Manager) us() call.Party {
	return call.Party{User: cm.mx.UserID(), PartyID: callevent.PartyID(cm.mx.DeviceID())}
}

func (cm *Manager) options(room id.RoomID, callID callevent.CallID) call.Options {
	return call.Options{
		Room: room, CallID: callID, Us: cm.us(), Now: cm.now,
		Timeouts: call.Timeouts{InviteLifetime: cm.cfg.InviteLifetime, Connect: cm.cfg.ConnectTimeout},
	}
}

// handleEvent is the Matrix handler of every call event type: it parses,
// checks what it carries, then hands the event to its call's queue (it
// never waits for the call).
func (cm *Manager) handleEvent(ctx context.Context, evt *matrix.Event) error {
	t := callevent.Type(evt.Type.Type)
	log := zerolog.Ctx(ctx).With().Str("type", string(t)).Stringer("sender", evt.Sender).Logger()
	content, err := callevent.Parse(t, evt.Content.VeryRaw)
	if err != nil {
		log.Warn().Err(err).Msg("Ignoring malformed call event")
		return nil
	}
	key := callKey{evt.RoomID, content.CallInfo().CallID}
	log = log.With().Str("call_id", string(key.callID)).Logger()
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
func (cm *Manager) earlyCandidates(sender id.UserID, c *callevent.Candidates) []byte {
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
func (cm *Manager) dropPending(key callKey, sender id.UserID, c callevent.Content) {
	switch c.(type) {
	case *callevent.Answer, *callevent.Reject, *callevent.Hangup, *callevent.SelectAnswer:
	default:
		return
	}
	list := cm.pending[key.room]
	for i, p := range list {
		if p.invite.CallID == key.callID {
			cm.log.Info().Stringer("room_id", key.room).Str("call_id", string(key.callID)).Stringer("sender", sender).
				Type("by", c).Msg("Invite ended in the same sync batch: not ringing")
			cm.pending[key.room] = append(list[:i:i], list[i+1:]...)
			return
		}
	}
}

// handleInvite applies the rules for whether an invite is for us, then
// holds it until the end of its batch.
func (cm *Manager) handleInvite(ctx context.Context, evt *matrix.Event, inv *callevent.Invite) {
	log := zerolog.Ctx(ctx).With().Str("call_id", string(inv.CallID)).Stringer("sender", evt.Sender).Logger()
	key := callKey{evt.RoomID, inv.CallID}
	cm.mu.Lock()
	_, known := cm.calls[key]
	cm.mu.Unlock()
	switch {
	case known:
		log.Debug().Msg("Invite for a call we already have (our own, or a repeat)")
		return
	case evt.Sender == cm.mx.UserID() && inv.PartyID == callevent.PartyID(cm.mx.DeviceID()):
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
func (cm *Manager) batchEnd(ctx context.Context, room id.RoomID) {
	cm.mu.Lock()
	list := cm.pending[room]
	delete(cm.pending, room)
	cm.mu.Unlock()
	for _, p := range list {
		cm.ring(ctx, p)
	}
}

// ring starts an inbound call: glare and capacity decide whether it rings
// (and the host decides what then), is declined as busy, or is hung up as
// the loser of a glare.
func (cm *Manager) ring(ctx context.Context, p *pendingInvite) {
	evt, inv := p.evt, p.invite
	log := zerolog.Ctx(ctx).With().Str("call_id", string(inv.CallID)).Stringer("sender", evt.Sender).Logger()
	age := evt.Age(cm.now())
	if age > inv.Lifetime.Duration()-ringGrace {
		log.Info().Dur("age", age).Msg("Invite expired before it could ring")
		return
	}
	m, effects := call.NewInbound(cm.options(evt.RoomID, inv.CallID), evt.Sender, inv, age)
	r := newLeg(cm, m)
	r.inviteEvent = evt.ID
	r.expires = cm.now().Add(inv.Lifetime.Duration() - age)

	key := callKey{evt.RoomID, inv.CallID}
	var early []earlyEvent
	cm.mu.Lock()
	glare := cm.glareWith(evt.RoomID, evt.Sender)
	keepOurs := glare != nil && glare.snapshot().state == call.StateInviteSent && glare.m.CallID < inv.CallID
	busy := ""
	if !keepOurs {
		var replaces leg.ID
		if glare != nil {
			replaces = glare.ID()
		}
		busy = cm.host.Admit(r.ID(), evt.RoomID, replaces)
	}
	if busy == "" {
		// The slot is taken under the same lock that found the glare.
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
		if !keepOurs {
			// On the queue, before the first effect: whatever the host
			// asks of the leg is queued after these.
			r.events = cm.host.Ringing(r)
		}
		r.input(effects, nil)
		for _, e := range early {
			r.input(r.m.Remote(e.sender, e.content))
		}
		if keepOurs {
			// Glare, our invite already out and its call ID the lesser:
			// ours stays, theirs is hung up as replaced.
			log.Info().Str("ours", string(glare.m.CallID)).Msg("Glare: keeping our call (lesser call ID)")
			r.input(r.m.Replaced(glare.m.CallID))
		}
	})
	if glare != nil && !keepOurs {
		// Glare, and theirs wins (ours was not sent yet, or its call ID is
		// the greater): ours is dropped or hung up as replaced, theirs is
		// answered on the user's behalf.
		log.Info().Str("ours", string(glare.m.CallID)).Msg("Glare: the peer's call replaces ours")
		glare.post(func() { glare.input(glare.m.Replaced(inv.CallID)) })
	}
}

// glareWith finds our outbound call to user in room that is still being
// placed: the one an invite from user collides with. Called with mu held.
func (cm *Manager) glareWith(room id.RoomID, user id.UserID) *Leg {
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

// ended forgets a call that has ended.
func (cm *Manager) ended(r *Leg) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	key := callKey{r.m.Room, r.m.CallID}
	if cm.calls[key] == r {
		delete(cm.calls, key)
	}
}

// report tells a room something about its calls, without holding anything up.
func (cm *Manager) report(room id.RoomID, text string) {
	go func() {
		ctx, cancel := context.WithTimeout(cm.ctx, 30*time.Second)
		defer cancel()
		if _, err := cm.mx.SendNotice(ctx, room, text, nil); err != nil {
			cm.log.Warn().Err(err).Stringer("room_id", room).Msg("Failed to report in the room")
		}
	}()
}

// PlaceOptions say what call to place.
type PlaceOptions struct {
	// Invitee is who the call is for; empty rings everyone in the room
	// (the first to answer is taken).
	Invitee id.UserID
	Video   bool
	// Lifetime is the invite's; zero takes calls.invite_lifetime.
	Lifetime time.Duration
}

// Place makes a call into room, which Start places: in between, the
// conversation adds the leg, so that it knows the leg before the leg's
// first event. The call proceeds on its own queue and reports to events.
// The caller has taken the call's slot for the ID that NewCallID returned.
func (cm *Manager) Place(room id.RoomID, callID callevent.CallID, o PlaceOptions, events leg.Events) (*Leg, error) {
	opts := cm.options(room, callID)
	opts.Video = o.Video
	if o.Lifetime > 0 {
		opts.Timeouts.InviteLifetime = o.Lifetime
	}
	m, effects := call.NewOutbound(opts, o.Invitee)
	r := newLeg(cm, m)
	r.events = events
	cm.mu.Lock()
	if _, dup := cm.calls[callKey{room, callID}]; dup {
		cm.mu.Unlock()
		r.cancel()
		return nil, fmt.Errorf("a call %s is already in %s", callID, room)
	}
	cm.calls[callKey{room, callID}] = r
	cm.mu.Unlock()
	r.start = effects
	return r, nil
}

// NewCallID makes the call ID (and so the leg ID) of a call to place.
func (cm *Manager) NewCallID() (callevent.CallID, leg.ID, error) {
	callID, err := newCallID(cm.now())
	if err != nil {
		return "", "", err
	}
	return callID, LegID(callID), nil
}

// Describe lists the calls in room, a line each, for the status command.
func (cm *Manager) Describe(room id.RoomID) []string {
	rs := cm.LegsIn(room)
	slices.SortFunc(rs, func(a, b *Leg) int { return a.snapshot().created.Compare(b.snapshot().created) })
	var out []string
	for _, r := range rs {
		out = append(out, r.describe(cm.now()))
	}
	return out
}

// LegsIn lists the calls in room.
func (cm *Manager) LegsIn(room id.RoomID) []*Leg {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	var rs []*Leg
	for key, r := range cm.calls {
		if key.room == room {
			rs = append(rs, r)
		}
	}
	return rs
}

// Active is the number of calls not yet ended.
func (cm *Manager) Active() int {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	return len(cm.calls)
}

func (cm *Manager) isPeerLeaving(evt *event.Event) bool {
	if evt.StateKey == nil {
		return false
	}
	m := matrix.MembershipOf(evt) // filters see raw content
	return m == event.MembershipLeave || m == event.MembershipBan
}

// handleLeave ends the calls with a user who left the room.
func (cm *Manager) handleLeave(_ context.Context, evt *matrix.Event) error {
	user := id.UserID(*evt.StateKey)
	cm.mu.Lock()
	var rs []*Leg
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

// Start ends the calls the last run left, and fetches TURN credentials
// from the homeserver (and keeps them fresh) if calls.homeserver_turn.
func (cm *Manager) Start(ctx context.Context) error {
	if err := cm.EndStale(ctx); err != nil {
		return fmt.Errorf("ending calls left from the last run: %w", err)
	}
	if cm.cfg.HomeserverTURN {
		// The first fetch is made now, so that the first call has TURN.
		next, _ := cm.ice.refreshOnce(ctx, 0)
		go cm.ice.run(ctx, next)
	}
	return nil
}

// EndStale ends calls a previous run left active: their media is gone with
// the process. The peer is told, so that its client does not wait for ICE
// to time out.
func (cm *Manager) EndStale(ctx context.Context) error {
	stale, err := cm.store.ActiveCalls(ctx)
	if err != nil {
		return err
	}
	for _, c := range stale {
		cm.mu.Lock()
		_, live := cm.calls[callKey{c.RoomID, callevent.CallID(c.CallID)}]
		cm.mu.Unlock()
		if live {
			continue // started by this run already
		}
		log := cm.log.With().Stringer("room_id", c.RoomID).Str("call_id", c.CallID).Str("state", c.State).Logger()
		if c.State != string(call.StateCreateOffer) {
			t, content := staleEnd(c)
			if _, err := cm.mx.SendCallEvent(ctx, c.RoomID, t, content, ""); err != nil {
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

// staleEnd is what tells the peer of a call left from the last run that it
// is over: a reject for a version 1 call still ringing (a caller takes
// only a reject from a party that has not answered), else a hangup.
func staleEnd(c *store.Call) (callevent.Type, callevent.Content) {
	common := callevent.Common{CallID: callevent.CallID(c.CallID), PartyID: callevent.PartyID(c.OurPartyID), Version: callevent.Version(c.Version)}
	if common.Version == callevent.Version0 {
		common.PartyID = ""
	}
	ringing := c.Direction == store.CallInbound && (c.State == string(call.StateRinging) || c.State == string(call.StateCreateAnswer))
	if ringing && common.Version != callevent.Version0 {
		return callevent.TypeReject, &callevent.Reject{Common: common, Reason: callevent.ReasonUnknownError}
	}
	return callevent.TypeHangup, &callevent.Hangup{Common: common, Reason: callevent.ReasonUnknownError}
}

const alphanumerics = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newCallID makes a call ID as matrix-js-sdk and famedly do: the time in
// milliseconds and 16 random alphanumerics. Glare keeps the lesser call ID,
// so with these the call created first wins, against either SDK.
func newCallID(now time.Time) (callevent.CallID, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a call ID: %w", err)
	}
	out := []byte(strconv.FormatInt(now.UnixMilli(), 10))
	for _, v := range b {
		out = append(out, alphanumerics[int(v)%len(alphanumerics)])
	}
	return callevent.CallID(out), nil
}

// Shutdown hangs up every call left (the conversation layer has ended
// its bridges first) and waits, up to ctx, until they have ended.
func (cm *Manager) Shutdown(ctx context.Context) {
	cm.notices.stop()
	cm.mu.Lock()
	rs := make([]*Leg, 0, len(cm.calls))
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
