package bridge

import (
	"errors"
	"strings"
)

// Config is the bridge's part of the configuration file.
type Config struct {
	Commands CommandsConfig `yaml:"commands"`
}

// CommandsConfig configures room commands.
type CommandsConfig struct {
	Prefix string `yaml:"prefix"`
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	p := c.Commands.Prefix
	if p == "" || strings.ContainsAny(p, " \t\n") {
		return errors.New("commands.prefix: must be one word, like !voip")
	}
	return nil
}
