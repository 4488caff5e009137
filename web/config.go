package web

import (
	"fmt"
	"net"
)

// Config is the HTTP listener's part of the configuration file.
type Config struct {
	Listen string `yaml:"listen"`
}

// Validate reports a listen address that cannot work.
func (c Config) Validate() error {
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return fmt.Errorf("http.listen: %q is not host:port", c.Listen)
	}
	return nil
}
