package bridge

import (
	"fmt"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/jami"
	"github.com/voipbot/voipbot/xmpp/qbsignal"
)

// Target is where a call goes: one of the bot's own sources, or a network
// address. Written kind:address (matrix:@user:server, matrix:!room:server,
// matrix:#alias:server); a source is written by its name alone (echo).
// jami:<Jami ID> is a Jami account, xmpp:<user id> a QuickBlox user. Later
// leg kinds add their own prefixes (guest).
type Target struct {
	Kind leg.Kind
	// Exactly one of these is set for a matrix target.
	User  id.UserID
	Room  id.RoomID
	Alias id.RoomAlias
	// Jami is a jami target's account (40 lower-case hex digits).
	Jami string
	// XMPP is an xmpp target's QuickBlox user id; xmppJID the JID it was
	// written as, if it was (its application and domain must be the
	// bot's, which only the bot knows).
	XMPP    uint64
	xmppJID string
}

// An rtc target is a room's Element Call: rtc alone is the call of the
// room the call to the bot came from; rtc:!room:server or
// rtc:#alias:server another room's (Room or Alias set); rtc:@user:server
// a call in the bot's direct room with that user, who is rung (User set).

// String writes the target as ParseTarget reads it.
func (t Target) String() string {
	switch {
	case t.Kind == leg.KindJami:
		return "jami:" + t.Jami
	case t.Kind == leg.KindXMPP:
		return "xmpp:" + strconv.FormatUint(t.XMPP, 10)
	case t.Kind == leg.KindRTC && t.Room != "":
		return "rtc:" + string(t.Room)
	case t.Kind == leg.KindRTC && t.Alias != "":
		return "rtc:" + string(t.Alias)
	case t.Kind == leg.KindRTC && t.User != "":
		return "rtc:" + string(t.User)
	case t.Kind != leg.KindMatrix:
		return string(t.Kind)
	case t.User != "":
		return "matrix:" + string(t.User)
	case t.Room != "":
		return "matrix:" + string(t.Room)
	default:
		return "matrix:" + string(t.Alias)
	}
}

// Own says whether the target is one of the bot's own sources.
func (t Target) Own() bool { return !t.Kind.Network() }

// ParseTarget reads a target; the error says what is wrong in words a room
// member understands.
func ParseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "@") || strings.HasPrefix(s, "!") || strings.HasPrefix(s, "#") {
		return Target{}, fmt.Errorf("%q: write a Matrix address as matrix:%s", s, s)
	}
	kind, addr, hasAddr := strings.Cut(s, ":")
	switch k := leg.Kind(strings.ToLower(kind)); {
	case !hasAddr && !k.Network() && k != "":
		return Target{Kind: k}, nil
	case k == leg.KindRTC && !hasAddr:
		return Target{Kind: leg.KindRTC}, nil
	case k == leg.KindRTC:
		t, err := parseMatrixAddress(addr)
		if err != nil {
			return Target{}, fmt.Errorf("rtc:%s: write rtc for this room's Element Call, rtc:!room:server or rtc:#alias:server for another room's, or rtc:@user:server to ring a user", addr)
		}
		t.Kind = leg.KindRTC
		return t, nil
	case k == leg.KindMatrix:
		return parseMatrixAddress(addr)
	case k == leg.KindJami:
		acc, err := jami.ParseID(addr)
		if err != nil {
			return Target{}, fmt.Errorf("jami:%s: %w", addr, err)
		}
		return Target{Kind: leg.KindJami, Jami: acc.String()}, nil
	case k == leg.KindXMPP:
		return parseXMPPAddress(addr)
	case hasAddr && !k.Network():
		return Target{}, fmt.Errorf("%s takes no address (write just %s)", k, k)
	case !hasAddr:
		return Target{}, fmt.Errorf("%q is not a target: write echo, tone, silence, file, or kind:address (matrix:@user:server, matrix:!room:server, matrix:#alias:server, jami:<40-hex Jami ID>, rtc, rtc:!room:server, xmpp:<QuickBlox user id>)", s)
	default:
		return Target{}, fmt.Errorf("%q is not a kind of target this bot knows (matrix, jami, rtc, xmpp, or a source: echo, tone, silence, file)", kind)
	}
}

// parseXMPPAddress reads a QuickBlox user: its id, or its JID
// (<id>-<application id>@<domain>).
func parseXMPPAddress(addr string) (Target, error) {
	if id, err := strconv.ParseUint(addr, 10, 64); err == nil && id > 0 {
		return Target{Kind: leg.KindXMPP, XMPP: id}, nil
	}
	id, err := qbsignal.UserID(addr)
	if err != nil || id == 0 || !strings.Contains(addr, "@") {
		return Target{}, fmt.Errorf("xmpp:%s: write a QuickBlox user id (xmpp:1002) or its JID (xmpp:1002-<app id>@<chat domain>)", addr)
	}
	return Target{Kind: leg.KindXMPP, XMPP: id, xmppJID: addr}, nil
}

func parseMatrixAddress(addr string) (Target, error) {
	t := Target{Kind: leg.KindMatrix}
	switch {
	case strings.HasPrefix(addr, "@"):
		u := id.UserID(addr)
		if local, server, err := u.ParseAndValidateRelaxed(); err != nil || local == "" || server == "" || strings.ContainsAny(addr, " \t\n") {
			return Target{}, fmt.Errorf("%q is not a Matrix user ID (like @alice:example.org)", addr)
		}
		t.User = u
	case strings.HasPrefix(addr, "!"):
		if !validServerPart(addr) {
			return Target{}, fmt.Errorf("%q is not a room ID (like !abc:example.org)", addr)
		}
		t.Room = id.RoomID(addr)
	case strings.HasPrefix(addr, "#"):
		if !validServerPart(addr) {
			return Target{}, fmt.Errorf("%q is not a room alias (like #room:example.org)", addr)
		}
		t.Alias = id.RoomAlias(addr)
	default:
		return Target{}, fmt.Errorf("matrix:%s: the address must be a user (@…), a room ID (!…) or an alias (#…)", addr)
	}
	return t, nil
}

// validServerPart checks that a sigil identifier has a local part and a
// server name, and nothing that cannot be in one.
func validServerPart(s string) bool {
	local, server, ok := strings.Cut(s[1:], ":")
	return ok && local != "" && server != "" && !strings.ContainsAny(s, " \t\n/")
}
