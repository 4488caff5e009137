package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/voipbot/voipbot/bridge/guestlink"
	"github.com/voipbot/voipbot/bridge/matrixcall"
	"github.com/voipbot/voipbot/bridge/rtc"
	"github.com/voipbot/voipbot/bridge/xmppcall"
)

// Config is the bridge's part of the configuration file.
type Config struct {
	Commands CommandsConfig `yaml:"commands"`
	Calls    CallsConfig    `yaml:"calls"`
	// RTC is the bot in rooms' Element Calls (MatrixRTC).
	RTC rtc.Config `yaml:"rtc"`
	// XMPP is the bot as a QuickBlox video chat peer on an XMPP server.
	XMPP xmppcall.Config `yaml:"xmpp"`
	// Guests are people without an account who join a room's call
	// through a link.
	Guests GuestsConfig `yaml:"guests"`
}

// GuestsConfig is the guests key.
type GuestsConfig struct {
	// PublicURL is the bot's HTTP server (http.listen) as guests' browsers
	// reach it, normally through a reverse proxy with TLS; a link is
	// <public_url>/call/<token>. Empty: `!voip link` is off. Browsers give
	// a page its microphone only over https, or on localhost.
	PublicURL string `yaml:"public_url"`
	// LinkTTL is how long a link lasts when `!voip link` names no time.
	LinkTTL time.Duration `yaml:"link_ttl"`
	// RingTimeout is how long a guest's call rings the room before it
	// gives up.
	RingTimeout time.Duration `yaml:"ring_timeout"`
}

func (c *GuestsConfig) validate() error {
	var errs []error
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "":
			errs = append(errs, fmt.Errorf("guests.public_url: %q is not an http(s) URL like https://call.example.org", c.PublicURL))
		case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
			errs = append(errs, fmt.Errorf("guests.public_url: %q: browsers give a page the microphone only over https (or on localhost)", c.PublicURL))
		}
	}
	if c.LinkTTL != 0 && (c.LinkTTL < time.Minute || c.LinkTTL > guestlink.MaxTTL) {
		errs = append(errs, fmt.Errorf("guests.link_ttl: must be from 1m to %s", guestlink.MaxTTL))
	}
	if c.RingTimeout < 0 {
		errs = append(errs, errors.New("guests.ring_timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// MediaMode is what the bot sends into a call it is the far end of.
type MediaMode string

// The media modes.
const (
	// MediaEcho sends each call its own audio and video back.
	MediaEcho MediaMode = "echo"
	// MediaTone sends a 440 Hz tone and, in video calls, a moving test
	// pattern.
	MediaTone MediaMode = "tone"
	// MediaSilence sends silence (and no video).
	MediaSilence MediaMode = "silence"
	// MediaFile loops calls.audio_file and calls.video_file.
	MediaFile MediaMode = "file"
)

// MediaModes lists the modes, for validation and help.
var MediaModes = []MediaMode{MediaEcho, MediaTone, MediaSilence, MediaFile}

// CallsConfig configures Matrix calls.
type CallsConfig struct {
	Source MediaMode `yaml:"source"`
	// AudioFile and VideoFile are what the file source plays: Ogg/Opus, and
	// IVF (VP8/VP9).
	AudioFile string `yaml:"audio_file"`
	VideoFile string `yaml:"video_file"`
	// MaxCalls and MaxCallsPerRoom are how many calls may be active at once;
	// a call beyond either is declined with user_busy. 0 means no limit.
	MaxCalls        int `yaml:"max_calls"`
	MaxCallsPerRoom int `yaml:"max_calls_per_room"`
	// Report: post a quality report into the room when a call ends (a
	// room may choose with `!voip report on|off|default`).
	Report bool `yaml:"report"`
	// Recording: rooms may record their calls (`!voip record on`); off
	// refuses the command.
	Recording bool `yaml:"recording"`
	// The Matrix call settings (public_rooms, invite_lifetime, …) are
	// the Matrix leg kind's own, under the same key.
	matrixcall.Config `yaml:",inline"`
}

// ICEServerConfig is a STUN or TURN server of the operator's own.
type ICEServerConfig = matrixcall.ICEServerConfig

// CommandsConfig configures room commands.
type CommandsConfig struct {
	Prefix string `yaml:"prefix"`
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	p := c.Commands.Prefix
	if p == "" || strings.ContainsAny(p, " \t\n") {
		errs = append(errs, errors.New("commands.prefix: must be one word, like !voip"))
	}
	errs = append(errs, c.Calls.validate(), c.RTC.Validate(), c.XMPP.Validate(), c.Guests.validate())
	return errors.Join(errs...)
}

func joinModes() string {
	names := make([]string, len(MediaModes))
	for i, m := range MediaModes {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

func (c *CallsConfig) validate() error {
	var errs []error
	if !slices.Contains(MediaModes, c.Source) {
		errs = append(errs, fmt.Errorf("calls.source: %q is not a source (%s)", c.Source, joinModes()))
	}
	if c.Source == MediaFile && c.AudioFile == "" && c.VideoFile == "" {
		errs = append(errs, errors.New("calls.source: file needs calls.audio_file or calls.video_file"))
	}
	if c.MaxCalls < 0 {
		errs = append(errs, errors.New("calls.max_calls: must be 0 (no limit) or more"))
	}
	if c.MaxCallsPerRoom < 0 {
		errs = append(errs, errors.New("calls.max_calls_per_room: must be 0 (no limit) or more"))
	}
	// The spec's recommended minimum is 90 s; clients use 60 s. Under 10 s
	// a call could not even be answered by a person.
	if c.InviteLifetime < 10*time.Second {
		errs = append(errs, errors.New("calls.invite_lifetime: must be at least 10s"))
	}
	if c.ConnectTimeout < time.Second {
		errs = append(errs, errors.New("calls.connect_timeout: must be at least 1s"))
	}
	for i, s := range c.ICEServers {
		if len(s.URLs) == 0 {
			errs = append(errs, fmt.Errorf("calls.ice_servers[%d].urls: at least one stun:, turn: or turns: URL", i))
		}
		for _, u := range s.URLs {
			if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "stuns:") && !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
				errs = append(errs, fmt.Errorf("calls.ice_servers[%d].urls: %q is not a stun:, turn: or turns: URL", i, u))
			}
		}
	}
	return errors.Join(errs...)
}
