// Package xmpp is the bot's XMPP client, on mellium.im/xmpp: one account
// logged in to one server, kept logged in (reconnecting with backoff), that
// hands the QuickBlox video chat signals it receives (headline messages,
// read by xmpp/qbsignal) to a Handler and sends the bot's.
//
// A session is what the QuickBlox SDK needs of its peer: STARTTLS (or
// plaintext to a server on the same host, when allowed), SASL SCRAM (or
// PLAIN inside TLS), a bound resource, a roster get and initial presence
// (Prosody delivers a headline to a bare JID only to available
// resources), answers to the server's XEP-0199 pings, and pings of its own
// that find a dead link.
package xmpp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// Defaults of the durations left zero.
const (
	DefaultReconnectMin = time.Second
	DefaultReconnectMax = 2 * time.Minute
	DefaultPingInterval = 30 * time.Second
	DefaultPingTimeout  = 10 * time.Second
	DefaultPort         = "5222"
)

// Config is one XMPP account of the bot.
type Config struct {
	// JID is the bot's bare JID (a QuickBlox peer: <user id>-<app id>@<domain>).
	JID string `yaml:"jid"`
	// Password is the account's; it is never logged.
	Password string `yaml:"password"`
	// Resource is the resource to bind; empty lets the server pick one. A
	// fixed one makes a reconnection replace a session the server still
	// holds (Prosody's default) instead of adding one.
	Resource string `yaml:"resource"`
	// Server is the host:port to connect to; empty is the JID's domain on
	// port 5222 (no SRV lookup).
	Server string `yaml:"server"`
	// AllowPlaintext lets a session go unencrypted when the server offers
	// no STARTTLS; only a loopback Server may (127.0.0.0/8, ::1,
	// localhost), where nothing crosses a wire. Otherwise STARTTLS is
	// required.
	AllowPlaintext bool `yaml:"allow_plaintext"`
	// TLS configures STARTTLS; nil verifies the server's certificate for
	// the JID's domain with the system's roots.
	TLS *tls.Config `yaml:"-"`
	// ReconnectMin and ReconnectMax bound the wait between tries (see
	// backoff); PingInterval is how often the client pings its server and
	// PingTimeout how long it waits for the answer before it takes the
	// link for dead and reconnects. Zero: the defaults above.
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	PingInterval time.Duration `yaml:"ping_interval"`
	PingTimeout  time.Duration `yaml:"ping_timeout"`
}

// ErrPlaintextRefused: AllowPlaintext with a server that is not on
// loopback, or a connection to a server that offers no STARTTLS while
// plaintext is not allowed.
var ErrPlaintextRefused = errors.New("xmpp: plaintext refused")

// Validate reports every problem, each naming its key (under xmpp.).
func (c *Config) Validate() error {
	var errs []error
	addr, err := jid.Parse(c.JID)
	switch {
	case c.JID == "":
		errs = append(errs, errors.New("xmpp.jid: missing"))
	case err != nil:
		errs = append(errs, fmt.Errorf("xmpp.jid: %q: %w", c.JID, err))
	case addr.Localpart() == "":
		errs = append(errs, fmt.Errorf("xmpp.jid: %q has no user part", c.JID))
	case addr.Resourcepart() != "":
		errs = append(errs, fmt.Errorf("xmpp.jid: %q has a resource (set xmpp.resource instead)", c.JID))
	}
	if c.Password == "" {
		errs = append(errs, errors.New("xmpp.password: missing"))
	}
	if c.Resource != "" {
		if _, err := jid.New("a", "b", c.Resource); err != nil {
			errs = append(errs, fmt.Errorf("xmpp.resource: %q: %w", c.Resource, err))
		}
	}
	host := ""
	if c.Server != "" {
		h, port, err := net.SplitHostPort(c.Server)
		if err != nil || h == "" || port == "" {
			errs = append(errs, fmt.Errorf("xmpp.server: %q is not host:port", c.Server))
		}
		host = h
	} else if err == nil {
		host = addr.Domainpart()
	}
	if c.AllowPlaintext && host != "" && !isLoopback(host) {
		errs = append(errs, fmt.Errorf("xmpp.allow_plaintext: %w: the server %s is not on loopback (127.0.0.0/8, ::1, localhost); a remote server needs STARTTLS", ErrPlaintextRefused, host))
	}
	durations := []struct {
		key string
		d   time.Duration
	}{{"reconnect_min", c.ReconnectMin}, {"reconnect_max", c.ReconnectMax}, {"ping_interval", c.PingInterval}, {"ping_timeout", c.PingTimeout}}
	for _, d := range durations {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("xmpp.%s: %s is negative", d.key, d.d))
		}
	}
	if c.ReconnectMin > 0 && c.ReconnectMax > 0 && c.ReconnectMin > c.ReconnectMax {
		errs = append(errs, fmt.Errorf("xmpp.reconnect_min: %s is over xmpp.reconnect_max %s", c.ReconnectMin, c.ReconnectMax))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero durations.
func (c Config) withDefaults() Config {
	if c.ReconnectMin == 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = max(DefaultReconnectMax, c.ReconnectMin)
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PingTimeout == 0 {
		c.PingTimeout = DefaultPingTimeout
	}
	return c
}

// isLoopback reports whether host is a loopback address or localhost
// (which RFC 6761 keeps on loopback). Other names are refused, not
// resolved: what they resolve to may change.
func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
