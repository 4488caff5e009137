package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/voip"
)

// legReport is what a leg's media did, kept when the leg ends (its
// statistics die with its session).
type legReport struct {
	name     string // who, and what kind of leg
	stats    voip.LegStats
	duration time.Duration // answered to ended
}

// snapshotReport keeps a leg's numbers as it ends.
func (b *Bridge) snapshotReport(m *member) {
	if m.media == nil || m.rec.AnsweredAt.IsZero() {
		return
	}
	name := m.l.Peer()
	if name == "" {
		name = "the bot"
	}
	b.reports = append(b.reports, legReport{
		name:     fmt.Sprintf("%s (%s, %s)", name, m.l.Kind(), m.l.Direction()),
		stats:    m.media.Stats(),
		duration: b.reg.now().Sub(m.rec.AnsweredAt),
	})
}

// report posts the bridge's quality report into its room, if the room
// wants reports and the call was answered.
func (b *Bridge) report() {
	if len(b.reports) == 0 || !b.reg.reportsOn(b.room) {
		return
	}
	b.reg.notice(b.room, formatReport(b.id, b.reports))
}

// formatReport writes the report: one line per leg and direction, with the
// numbers the media plane keeps.
func formatReport(bid leg.BridgeID, reports []legReport) string {
	var sb strings.Builder
	longest := time.Duration(0)
	for _, r := range reports {
		longest = max(longest, r.duration)
	}
	fmt.Fprintf(&sb, "**Call report** (`%s`, %s):\n", bid, longest.Round(time.Second))
	for _, r := range reports {
		fmt.Fprintf(&sb, "\n* %s:", r.name)
		for _, t := range r.stats.Inbound {
			fmt.Fprintf(&sb, "\n  * from it, %s %s: %s; lost %d (%s), jitter %s, NACKs sent %d, asked again %d",
				t.Kind, t.Codec, volume(t, r.duration), t.Lost, lossRate(t.Lost, t.Packets), t.Jitter.Round(time.Millisecond), t.NACKs, t.Requested)
		}
		for _, t := range r.stats.Outbound {
			fmt.Fprintf(&sb, "\n  * to it, %s %s: %s; lost %d (%s), jitter %s, round trip %s, NACKs %d, keyframe requests %d",
				t.Kind, t.Codec, volume(t, r.duration), t.Lost, lossRate(t.Lost, t.Packets), t.Jitter.Round(time.Millisecond),
				t.RTT.Round(time.Millisecond), t.NACKs, t.PLIs+t.FIRs)
		}
	}
	return sb.String()
}

func volume(t voip.TrackStats, d time.Duration) string {
	rate := "—"
	if d > 0 {
		rate = fmt.Sprintf("%.0f kbit/s", float64(t.Bytes)*8/d.Seconds()/1000)
	}
	return fmt.Sprintf("%d packets, %s", t.Packets, rate)
}

func lossRate(lost int64, packets uint64) string {
	if lost <= 0 || packets == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(lost)/float64(uint64(lost)+packets))
}

// reportsOn says whether calls in room get a quality report.
func (reg *registry) reportsOn(room id.RoomID) bool {
	ctx, cancel := context.WithTimeout(reg.ctx, 5*time.Second)
	defer cancel()
	r, err := reg.store.Room(ctx, room)
	if err != nil {
		reg.log.Warn().Err(err).Stringer("room_id", room).Msg("Cannot read the room's settings; using the default for reports")
	}
	if r != nil && r.Settings.Report != nil {
		return *r.Settings.Report
	}
	return reg.cfg.Report
}

// setReport shows or sets whether calls in this room get a quality report.
func (b *Bot) setReport(ctx context.Context, evt *matrix.Event, args []string) (string, error) {
	room, err := b.store.Room(ctx, evt.RoomID)
	if err != nil {
		return "", err
	}
	if room == nil {
		return "", errors.New("the bot has no record of this room")
	}
	onOff := func(on bool) string {
		if on {
			return "on"
		}
		return "off"
	}
	if len(args) == 0 {
		return fmt.Sprintf("Quality reports after calls in this room are **%s**. Choose with `%s report on|off|default`.",
			onOff(b.bridges.reportsOn(evt.RoomID)), b.cfg.Commands.Prefix), nil
	}
	if may, err := b.mx.MayChangeState(ctx, evt.RoomID, evt.Sender); err != nil {
		return "", err
	} else if !may {
		return "", userErrorf("only members who may change this room's settings (power level at least the room's state_default) may change its reports")
	}
	switch strings.ToLower(args[0]) {
	case "on":
		on := true
		room.Settings.Report = &on
	case "off":
		off := false
		room.Settings.Report = &off
	case "default":
		room.Settings.Report = nil
	default:
		return "", userErrorf("%q: say on, off or default", args[0])
	}
	if err = b.store.SetRoomSettings(ctx, evt.RoomID, room.Settings); err != nil {
		return "", err
	}
	return fmt.Sprintf("Quality reports after calls in this room are now **%s**.", onOff(b.bridges.reportsOn(evt.RoomID))), nil
}
