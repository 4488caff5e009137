package voip

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Config is the media section of the configuration file.
type Config struct {
	UDPPortMin      uint16        `yaml:"udp_port_min"`
	UDPPortMax      uint16        `yaml:"udp_port_max"`
	UDPMuxPort      uint16        `yaml:"udp_mux_port"`
	PublicIPs       []string      `yaml:"public_ips"`
	Interfaces      []string      `yaml:"interfaces"`
	IncludeLoopback bool          `yaml:"include_loopback"`
	ICEDisconnected time.Duration `yaml:"ice_disconnected_timeout"`
	ICEFailed       time.Duration `yaml:"ice_failed_timeout"`
	ICEKeepalive    time.Duration `yaml:"ice_keepalive_interval"`
	RecordDir       string        `yaml:"record_dir"`
	// KeepRecordings keeps a call's recording in RecordDir after it has
	// been posted into the room (by default it is removed then).
	KeepRecordings bool `yaml:"keep_recordings"`
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	if (c.UDPPortMin == 0) != (c.UDPPortMax == 0) {
		errs = append(errs, errors.New("media.udp_port_min, media.udp_port_max: set both or neither"))
	} else if c.UDPPortMin > c.UDPPortMax {
		errs = append(errs, fmt.Errorf("media.udp_port_min: %d is above media.udp_port_max %d", c.UDPPortMin, c.UDPPortMax))
	}
	if c.UDPMuxPort != 0 && c.UDPPortMin != 0 {
		errs = append(errs, errors.New("media.udp_mux_port: a single shared port and a port range exclude each other"))
	}
	for i, ip := range c.PublicIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, fmt.Errorf("media.public_ips[%d]: %q is not an IP address", i, ip))
		}
	}
	for i, name := range c.Interfaces {
		if name == "" {
			errs = append(errs, fmt.Errorf("media.interfaces[%d]: empty interface name", i))
		}
	}
	for key, d := range map[string]time.Duration{
		"media.ice_disconnected_timeout": c.ICEDisconnected,
		"media.ice_failed_timeout":       c.ICEFailed,
		"media.ice_keepalive_interval":   c.ICEKeepalive,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: %s is not a positive duration", key, d))
		}
	}
	if c.ICEFailed < c.ICEDisconnected {
		errs = append(errs, errors.New("media.ice_failed_timeout: must not be shorter than media.ice_disconnected_timeout"))
	}
	if c.RecordDir == "" {
		errs = append(errs, errors.New("media.record_dir: must not be empty"))
	}
	return errors.Join(errs...)
}
