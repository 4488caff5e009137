// Package jami is the bot's side of the Jami network: its configuration,
// the bot's Jami account and device, the Service that runs its DHT node
// (jami/dht) with its state in a Store, and, later, Jami calls.
package jami

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/voipbot/voipbot/jami/dht"
)

// Config is the jami section of the configuration file.
type Config struct {
	Enabled   bool     `yaml:"enabled"`
	Listen    string   `yaml:"listen"`
	Bootstrap []string `yaml:"bootstrap"`
	Network   uint32   `yaml:"network"`
	// Archive is a Jami account archive to take the bot's account from at
	// its first start (instead of making a new one); ArchivePassword opens
	// it if it is encrypted.
	Archive         string `yaml:"archive"`
	ArchivePassword string `yaml:"archive_password"`
	// ICEListen is the TCP address of the passive ICE-TCP candidates of
	// the control connections (port 0: any); ICEAddresses, if set, are the
	// only addresses offered as candidates (control and media).
	ICEListen    string   `yaml:"ice_listen"`
	ICEAddresses []string `yaml:"ice_addresses"`
	// Allow lists the Jami IDs (40 hex) that may call the bot and whose
	// trust requests (contact invitations) it accepts, or "*";
	// Ban the accounts or devices that may not connect at all.
	Allow []string `yaml:"allow"`
	Ban   []string `yaml:"ban"`
	// DefaultRoom is where a call from an allowed Jami account that no
	// room's route names rings; empty: the bot's default source answers.
	DefaultRoom string `yaml:"default_room"`
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("jami.listen: %q is not host:port: %w", c.Listen, err))
	}
	if c.Enabled && len(c.Bootstrap) == 0 {
		errs = append(errs, errors.New("jami.bootstrap: at least one node to join the DHT through (Jami's is bootstrap.jami.net:4222)"))
	}
	for i, b := range c.Bootstrap {
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("jami.bootstrap[%d]: %q is not host:port: %w", i, b, err))
		}
	}
	if c.ICEListen != "" {
		if _, _, err := net.SplitHostPort(c.ICEListen); err != nil {
			errs = append(errs, fmt.Errorf("jami.ice_listen: %q is not host:port: %w", c.ICEListen, err))
		}
	}
	for i, a := range c.ICEAddresses {
		if _, err := netip.ParseAddr(a); err != nil {
			errs = append(errs, fmt.Errorf("jami.ice_addresses[%d]: %w", i, err))
		}
	}
	for i, id := range c.Allow {
		if id != "*" && !isJamiID(id) {
			errs = append(errs, fmt.Errorf("jami.allow[%d]: %q is neither a Jami ID (40 hex digits) nor \"*\"", i, id))
		}
	}
	for i, id := range c.Ban {
		if !isJamiID(id) {
			errs = append(errs, fmt.Errorf("jami.ban[%d]: %q is not a Jami account or device id (40 hex digits)", i, id))
		}
	}
	if c.DefaultRoom != "" && !strings.HasPrefix(c.DefaultRoom, "!") {
		errs = append(errs, fmt.Errorf("jami.default_room: %q is not a room id (!…)", c.DefaultRoom))
	}
	return errors.Join(errs...)
}

// isJamiID says whether s is 40 hex digits (a Jami ID or device key id).
func isJamiID(s string) bool {
	_, err := dht.ParseHash(strings.ToLower(s))
	return err == nil
}

// ParseID reads a Jami ID (40 hex digits, any case, "jami:" allowed).
func ParseID(s string) (dht.InfoHash, error) {
	s = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "jami:"))
	h, err := dht.ParseHash(s)
	if err != nil {
		return h, fmt.Errorf("%q is not a Jami ID (40 hex digits)", s)
	}
	return h, nil
}
