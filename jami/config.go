// Package jami is the bot's side of the Jami network: its configuration,
// the bot's Jami account and device, the Service that runs its DHT node
// (jami/dht) with its state in a Store, and, later, Jami calls.
package jami

import (
	"errors"
	"fmt"
	"net"
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
	return errors.Join(errs...)
}
