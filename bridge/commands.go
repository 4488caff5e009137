package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"

	"github.com/voipbot/voipbot/bridge/guestlink"
	"github.com/voipbot/voipbot/jami"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/store"
)

// userError is a command that cannot be done as the user asked (a bad
// argument, a user not in the room, the bot busy): the reply tells them, and
// it is not the bot's failure — it is logged at info and not counted as an
// error, so that no room member can page the operator.
type userError struct{ msg string }

func (e *userError) Error() string { return e.msg }

func userErrorf(format string, args ...any) error {
	return &userError{msg: fmt.Sprintf(format, args...)}
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, evt *matrix.Event, args []string) (string, error)
}

func (b *Bot) commandTable() []command {
	return []command{
		{name: "help", summary: "show this help", run: b.help},
		{name: "status", summary: "show version, uptime, rooms and active calls", run: b.status},
		{name: "call", summary: "call you (or `call @user:server`) in this room; `call <target>` calls you, then bridges in the target (`matrix:@user:server`, `matrix:#room:server`, `jami:<Jami ID>`, `rtc`, `xmpp:<QuickBlox user id>`); add `video` for a video call", run: b.call},
		{name: "hangup", summary: "hang up the bot's calls and bridges in this room", run: b.hangup},
		{name: "route", summary: "show or set where calls to the bot in this room go: `route echo|tone|silence|file|matrix:@user:server|matrix:!room:server|matrix:#alias:server|jami:<Jami ID>|rtc|rtc:!room:server|xmpp:<QuickBlox user id>|default` (rtc: this room's Element Call)", run: b.route},
		{name: "jami", summary: "show the bot's Jami ID, for Jami users to add it; `jami add <Jami ID>` invites that account to be the bot's contact (current Jami takes calls from contacts only); `jami contacts` lists them", run: b.jami},
		{name: "join", summary: "put the bot's own source into this room's Element Call (starting one if none is going on): `join [echo|tone|silence|file]`", run: b.joinCall},
		{name: "leave", summary: "take the bot out of this room's Element Call", run: b.leaveCall},
		{name: "callkey", summary: "set the shared key of this room's Element Call, for calls started with Element Call's `?password=`: `callkey <passphrase>|off` (the message stays in the room's history)", run: b.setCallKey},
		{name: "record", summary: "show or set whether calls in this room are recorded (posted here when they end): `record on|off`", run: b.setRecord},
		{name: "report", summary: "show or set whether the bot posts a quality report after each call in this room: `report on|off|default`", run: b.setReport},
		{name: "link", summary: "make a link that lets someone without an account into this room's calls from a browser: `link [ttl] [video] [echo]` (ttl like 30m, 2h, 7d; echo: the bot's own source answers, for trying it)", run: b.link},
		{name: "whip", summary: "make a WHIP token (RFC 9725, what OBS and GStreamer's whipsink speak) whose media rings this room or joins its Element Call: `whip [ttl] [video]`", run: b.whipToken(guestlink.KindWHIP)},
		{name: "whep", summary: "make a WHEP token that plays this room's Element Call (everyone mixed, or the active speaker): `whep [ttl] [video]`", run: b.whipToken(guestlink.KindWHEP)},
		{name: "links", summary: "list this room's live call links and WHIP/WHEP tokens", run: b.links},
		{name: "revoke", summary: "end a call link or WHIP/WHEP token of this room (and the calls through it): `revoke <id>`", run: b.revoke},
		{name: "source", summary: "the same as `route`, for the bot's own sources only: `source echo|tone|silence|file|default`", run: b.setSource},
	}
}

// isCommand selects text messages that start with the command prefix, so
// that other messages are not even stored.
func (b *Bot) isCommand(evt *event.Event) bool {
	msg, ok := evt.Content.Parsed.(*event.MessageEventContent)
	if !ok || msg.MsgType != event.MsgText || msg.RelatesTo.GetReplaceID() != "" {
		return false // edits re-send a command that was already answered
	}
	fields := strings.Fields(msg.Body)
	return len(fields) > 0 && fields[0] == b.cfg.Commands.Prefix
}

func (b *Bot) handleCommand(ctx context.Context, evt *matrix.Event) error {
	fields := strings.Fields(evt.Content.AsMessage().Body)[1:]
	name := "help"
	if len(fields) > 0 {
		name = strings.ToLower(fields[0])
		fields = fields[1:]
	}
	if !b.mx.Allowed(evt.Sender) {
		b.counts.WithLabelValues(name, "refused").Inc()
		_, err := b.mx.SendNotice(ctx, evt.RoomID, "Sorry, this bot only takes commands from users it is set up to serve.", evt)
		return err
	}
	var cmd *command
	for i := range b.commands {
		if b.commands[i].name == name {
			cmd = &b.commands[i]
		}
	}
	if cmd == nil {
		b.counts.WithLabelValues("unknown", "unknown").Inc()
		_, err := b.mx.SendNotice(ctx, evt.RoomID, fmt.Sprintf("Unknown command `%s`. Try `%s help`.", name, b.cfg.Commands.Prefix), evt)
		return err
	}
	reply, err := cmd.run(ctx, evt, fields)
	var mistake *userError
	if errors.As(err, &mistake) {
		b.counts.WithLabelValues(name, "invalid").Inc()
		zerolog.Ctx(ctx).Info().Str("command", name).Stringer("sender", evt.Sender).Str("answer", mistake.msg).Msg("Command not done as asked")
		_, err = b.mx.SendNotice(ctx, evt.RoomID, fmt.Sprintf("Cannot `%s %s`: %s", b.cfg.Commands.Prefix, name, mistake.msg), evt)
		return err
	}
	if err != nil {
		b.counts.WithLabelValues(name, "error").Inc()
		_, sendErr := b.mx.SendNotice(ctx, evt.RoomID, fmt.Sprintf("`%s %s` failed: %v", b.cfg.Commands.Prefix, name, err), evt)
		if sendErr != nil {
			return fmt.Errorf("%w (and reporting it failed: %w)", err, sendErr)
		}
		return err
	}
	b.counts.WithLabelValues(name, "ok").Inc()
	_, err = b.mx.SendNotice(ctx, evt.RoomID, reply, evt)
	return err
}

func (b *Bot) help(context.Context, *matrix.Event, []string) (string, error) {
	var sb strings.Builder
	sb.WriteString("**voipbot** brings calls into and out of Matrix. Commands:\n\n")
	for _, c := range b.commands {
		fmt.Fprintf(&sb, "* `%s %s` — %s\n", b.cfg.Commands.Prefix, c.name, c.summary)
	}
	return sb.String(), nil
}

func (b *Bot) status(ctx context.Context, evt *matrix.Event, _ []string) (string, error) {
	counts, err := b.store.CountCallsByState(ctx)
	if err != nil {
		return "", err
	}
	active := 0
	for _, n := range counts {
		active += n
	}
	rooms, err := b.store.CountRooms(ctx, store.MembershipJoin)
	if err != nil {
		return "", err
	}
	encryption := "off"
	if b.mx.Encrypted() {
		encryption = "on"
	}
	return fmt.Sprintf("**voipbot** %s (commit %s, built %s)\n\n"+
		"* Uptime: %s\n"+
		"* Mode: %s, device `%s`, encryption %s\n"+
		"* Rooms joined: %d\n"+
		"* Active calls: %d\n"+
		"* Media: %s",
		b.build.Version, b.build.Commit, b.build.BuildTime,
		time.Since(b.started).Round(time.Second),
		b.mx.Mode(), b.mx.DeviceID(), encryption,
		rooms, active, b.media.Describe()) + b.describeDHT() + b.describeCalls(ctx, evt.RoomID), nil
}

func (b *Bot) describeDHT() string {
	if b.dht == nil {
		return "\n* DHT: off (jami.enabled)"
	}
	return "\n* DHT: " + b.dht.Describe()
}

// jami shows the bot's Jami account, or (`add`, `contacts`) manages its
// Jami contacts.
func (b *Bot) jami(ctx context.Context, _ *matrix.Event, args []string) (string, error) {
	if b.dht == nil {
		return "The bot is not on the Jami network (`jami.enabled` is off in its configuration).", nil
	}
	if len(args) == 0 {
		return fmt.Sprintf("The bot's Jami ID is `%s` (device `%s`). In Jami, add it as a contact by this ID.\n\n* DHT: %s",
			b.dht.AccountID(), b.dht.DeviceKeyID(), b.dht.Describe()), nil
	}
	switch strings.ToLower(args[0]) {
	case "add":
		if len(args) != 2 {
			return "", userErrorf("Usage: `%s jami add <Jami ID>` (40 hex digits).", b.cfg.Commands.Prefix)
		}
		return b.jamiAdd(ctx, args[1])
	case "contacts":
		return b.jamiContacts(ctx)
	default:
		return "", userErrorf("Unknown `jami` subcommand `%s`: `jami`, `jami add <Jami ID>` or `jami contacts`.", args[0])
	}
}

// jamiAdd sends the bot's trust request to a Jami account that may call it.
func (b *Bot) jamiAdd(ctx context.Context, arg string) (string, error) {
	id, err := jami.ParseID(arg)
	if err != nil {
		return "", userErrorf("%s.", err.Error())
	}
	if !b.dht.Allowed(id) {
		return "", userErrorf("`%s` may not call the bot (`jami.allow`, `jami.ban`): not invited.", id)
	}
	if err := b.dht.SendTrustRequest(ctx, id); err != nil {
		if errors.Is(err, jami.ErrNotConnected) {
			return "", userErrorf("The bot is not on the Jami network yet; try again in a minute.")
		}
		// Kept and sent again at the next start (jami.Service).
		return fmt.Sprintf("Invited `%s`, but none of its devices was reached (%v); the invitation is kept and sent again at the next start.", id, err), nil
	}
	return fmt.Sprintf("Invited `%s` to be the bot's Jami contact. Once the Jami user accepts, it can call the bot.", id), nil
}

// jamiContacts lists the bot's Jami contacts.
func (b *Bot) jamiContacts(ctx context.Context) (string, error) {
	cs, err := b.dht.Contacts(ctx)
	if err != nil {
		return "", fmt.Errorf("listing the Jami contacts: %w", err)
	}
	if len(cs) == 0 {
		return fmt.Sprintf("The bot has no Jami contacts yet. `%s jami add <Jami ID>` invites one.", b.cfg.Commands.Prefix), nil
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "The bot's Jami contacts (%d):\n", len(cs))
	for _, c := range cs {
		state := "confirmed"
		if !c.Confirmed {
			state = "invited, not accepted yet"
		}
		fmt.Fprintf(&sb, "\n* `%s`: %s, since %s", c.Account, state, c.Added.UTC().Format("2006-01-02 15:04 MST"))
	}
	return sb.String(), nil
}
