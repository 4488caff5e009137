package rtc

import (
	"context"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/rtcevent"
)

// membershipSender is how the bot's membership of one room's call goes
// out: the state event, or the sticky event of Element Call's newer
// mode. Both are refreshed while the leg lives and cleared on leave.
type membershipSender interface {
	// send joins or refreshes: the room's call through focus, first
	// joined at created.
	send(ctx context.Context, focus rtcevent.Focus, created, now time.Time) (id.EventID, error)
	// leave clears it.
	leave(ctx context.Context) error
	// scheduleLeave sets the homeserver's dead man's switch (MSC4140).
	scheduleLeave(ctx context.Context, delay time.Duration) (string, error)
	// refreshEvery is how often send is repeated.
	refreshEvery() time.Duration
	// sticky says which shape it is: the LiveKit identity and token
	// endpoint follow from it.
	sticky() bool
}

// stateMembership is org.matrix.msc3401.call.member with a short expiry
// kept fresh (Dendrite has no delayed events, so the expiry is what ends
// a crashed bot's membership there).
type stateMembership struct{ l *Leg }

func (s stateMembership) send(ctx context.Context, focus rtcevent.Focus, created, now time.Time) (id.EventID, error) {
	return s.l.m.mx.SetCallMembership(ctx, s.l.room, s.l.membership(focus, created, now))
}

func (s stateMembership) leave(ctx context.Context) error {
	_, err := s.l.m.mx.SetCallMembership(ctx, s.l.room, struct{}{})
	return err
}

func (s stateMembership) scheduleLeave(ctx context.Context, delay time.Duration) (string, error) {
	return s.l.m.mx.ScheduleCallLeave(ctx, s.l.room, delay)
}

func (s stateMembership) refreshEvery() time.Duration { return s.l.m.cfg.MembershipExpiry / 2 }

func (stateMembership) sticky() bool { return false }

// stickyMembership is org.matrix.msc4143.rtc.member as a sticky event
// (MSC4354). Its life is its sticky duration: an hour (as js-sdk's) where
// a delayed leave ends it if the bot dies, else MembershipExpiry, each
// refreshed at half.
type stickyMembership struct {
	l        *Leg
	duration time.Duration
}

func newStickyMembership(ctx context.Context, l *Leg) stickyMembership {
	d := l.m.cfg.MembershipExpiry
	if l.m.mx.DelayedEvents(ctx) {
		d = rtcevent.MaxStickyDuration
	}
	return stickyMembership{l: l, duration: d}
}

func (s stickyMembership) send(ctx context.Context, focus rtcevent.Focus, _, _ time.Time) (id.EventID, error) {
	mx := s.l.m.mx
	content := rtcevent.NewRTCMember(mx.UserID().String(), mx.DeviceID().String(), focus.ServiceURL, s.l.video)
	return mx.SendStickyMembership(ctx, s.l.room, content, s.duration)
}

func (s stickyMembership) leave(ctx context.Context) error {
	mx := s.l.m.mx
	_, err := mx.SendStickyMembership(ctx, s.l.room, rtcevent.RTCLeave(mx.UserID().String(), mx.DeviceID().String()), s.duration)
	return err
}

func (s stickyMembership) scheduleLeave(ctx context.Context, delay time.Duration) (string, error) {
	return s.l.m.mx.ScheduleStickyLeave(ctx, s.l.room, delay, s.duration)
}

func (s stickyMembership) refreshEvery() time.Duration { return s.duration / 2 }

func (stickyMembership) sticky() bool { return true }

// pickMembership is the shape rtc.membership asks for, where the
// homeserver can carry it.
func (l *Leg) pickMembership(ctx context.Context) membershipSender {
	if l.m.cfg.Membership != MembershipSticky {
		return stateMembership{l}
	}
	if !l.m.mx.StickyEvents(ctx) {
		l.log.Warn().Msg("rtc.membership is sticky but the homeserver has no sticky events (MSC4354): sending the state membership")
		return stateMembership{l}
	}
	return newStickyMembership(ctx, l)
}
