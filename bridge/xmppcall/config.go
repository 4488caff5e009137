package xmppcall

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/voipbot/voipbot/xmpp"
	"github.com/voipbot/voipbot/xmpp/qbsignal"
)

// Config is the xmpp key: the bot's account on an XMPP server where
// QuickBlox apps signal their video chats, and who may call in.
type Config struct {
	// Enabled logs the bot in to the XMPP server.
	Enabled bool `yaml:"enabled"`
	// The account (jid, password, resource, server, allow_plaintext,
	// reconnect_min/max, ping_interval/timeout). The JID is the bot's
	// QuickBlox identity: <user id>-<application id>@<chat domain>.
	xmpp.Config `yaml:",inline"`
	// Name is the name the bot gives in the userInfo of what it sends.
	Name string `yaml:"name"`
	// Allow is who may call the bot: "*", QuickBlox user ids, or JIDs.
	Allow []string `yaml:"allow"`
	// DefaultRoom is where a call from an allowed QuickBlox user that no
	// room's route names rings; empty: the bot's default source answers.
	DefaultRoom string `yaml:"default_room"`
	// RingTimeout is how long a call rings (either way) before it gives
	// up; the SDK's own is 60 s.
	RingTimeout time.Duration `yaml:"ring_timeout"`
}

// Defaults are the settings an unset key takes.
var Defaults = Config{Name: "voipbot", RingTimeout: 60 * time.Second}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = Defaults.Name
	}
	if c.RingTimeout == 0 {
		c.RingTimeout = Defaults.RingTimeout
	}
	return c
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	errs := []error{c.Config.Validate()}
	if _, err := identityOf(c.JID); err != nil {
		errs = append(errs, fmt.Errorf("xmpp.jid: %w", err))
	}
	for _, a := range c.Allow {
		if _, _, err := parseAllow(a); err != nil {
			errs = append(errs, fmt.Errorf("xmpp.allow: %w", err))
		}
	}
	if c.DefaultRoom != "" && !strings.HasPrefix(c.DefaultRoom, "!") {
		errs = append(errs, fmt.Errorf("xmpp.default_room: %q is not a room id (!room:server)", c.DefaultRoom))
	}
	if c.RingTimeout < 0 {
		errs = append(errs, errors.New("xmpp.ring_timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// identity is the bot's (or a peer's) QuickBlox identity.
type identity struct {
	User, App uint64
	Domain    string
}

// JID is the identity's bare JID.
func (i identity) JID() jid.JID {
	j, _ := jid.Parse(qbsignal.UserJID(i.User, i.App, i.Domain)) // numbers and a parsed domain
	return j
}

func identityOf(s string) (identity, error) {
	j, err := jid.Parse(s)
	if err != nil {
		return identity{}, fmt.Errorf("%q is not a JID: %w", s, err)
	}
	user, err := qbsignal.UserID(j.Bare().String())
	if err != nil {
		return identity{}, fmt.Errorf("%q is not a QuickBlox JID (<user id>-<application id>@<domain>): %w", s, err)
	}
	app, err := qbsignal.AppID(j.Bare().String())
	if err != nil {
		return identity{}, fmt.Errorf("%q is not a QuickBlox JID (<user id>-<application id>@<domain>): %w", s, err)
	}
	return identity{User: user, App: app, Domain: j.Domainpart()}, nil
}

// parseAllow reads an xmpp.allow entry: "*", a user id, or a JID.
func parseAllow(a string) (all bool, user uint64, err error) {
	if a == "*" {
		return true, 0, nil
	}
	if id, err := strconv.ParseUint(a, 10, 64); err == nil {
		return false, id, nil
	}
	who, err := identityOf(a)
	if err != nil {
		return false, 0, err
	}
	return false, who.User, nil
}

// allowed says whether xmpp.allow lets user call in.
func (c Config) allowed(user uint64) bool {
	return slices.ContainsFunc(c.Allow, func(a string) bool {
		all, id, err := parseAllow(a)
		return err == nil && (all || id == user)
	})
}

// ParsePeer reads a QuickBlox peer as a route names it: a user id, or
// the JID of a user of the bot's application and domain (the SDK answers
// to <callerID>-<its app id>@<its domain>, so no other can be reached).
func (m *Manager) ParsePeer(s string) (uint64, error) {
	if id, err := strconv.ParseUint(s, 10, 64); err == nil && id > 0 {
		return id, nil
	}
	who, err := identityOf(s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a QuickBlox user id nor a JID of one", s)
	}
	if who.App != m.self.App || who.Domain != m.self.Domain {
		return 0, fmt.Errorf("%s: QuickBlox peers must be of the bot's application %d on %s", s, m.self.App, m.self.Domain)
	}
	return who.User, nil
}
