package matrix

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"
)

// Mode is how the bot connects to its homeserver.
type Mode string

// The two modes.
const (
	// ModeUser logs in as a normal user with a password, once.
	ModeUser Mode = "user"
	// ModeAppservice runs as an application service registered with the
	// homeserver.
	ModeAppservice Mode = "appservice"
)

// ToDeviceVia says how encrypted to-device messages reach an appservice.
type ToDeviceVia string

// The two to-device paths of an appservice.
const (
	// ToDeviceViaSync runs a /sync of the bot's device that carries only
	// to-device messages, key counts and device lists. Works everywhere.
	ToDeviceViaSync ToDeviceVia = "sync"
	// ToDeviceViaTransactions takes them from appservice transactions
	// (MSC2409 + MSC3202); Synapse needs its experimental flags for this.
	ToDeviceViaTransactions ToDeviceVia = "transactions"
)

// Config is everything the Matrix side needs. Its sections sit at the top
// level of the configuration file.
type Config struct {
	Homeserver HomeserverConfig `yaml:"homeserver"`
	Bot        BotConfig        `yaml:"bot"`
	Mode       Mode             `yaml:"mode"`
	Appservice AppserviceConfig `yaml:"appservice"`
	Encryption EncryptionConfig `yaml:"encryption"`
	Access     AccessConfig     `yaml:"access"`
}

// HomeserverConfig says where the homeserver is and how long it may take
// to answer.
type HomeserverConfig struct {
	URL string `yaml:"url"`
	// SyncStaleAfter is how long a /sync may go unanswered before /health
	// reports the homeserver as not answering.
	SyncStaleAfter time.Duration `yaml:"sync_stale_after"`
}

// syncLongPoll is the timeout of each /sync long poll: mautrix's sync loop
// hard-codes it, so a homeserver with nothing new answers after this long.
const syncLongPoll = 30 * time.Second

// minSyncStaleAfter is the shortest homeserver.sync_stale_after: a healthy
// long poll takes up to syncLongPoll, and the answer needs a moment more to
// arrive and be stored.
const minSyncStaleAfter = syncLongPoll + 5*time.Second

// BotConfig is the bot's own Matrix account.
type BotConfig struct {
	UserID      id.UserID `yaml:"user_id"`
	Password    string    `yaml:"password"`
	Displayname string    `yaml:"displayname"`
	DeviceName  string    `yaml:"device_name"`
}

// AppserviceConfig is used in appservice mode.
type AppserviceConfig struct {
	Registration string      `yaml:"registration"`
	ID           string      `yaml:"id"`
	URL          string      `yaml:"url"`
	ToDevice     ToDeviceVia `yaml:"to_device"`
}

// EncryptionConfig controls end-to-end encryption.
type EncryptionConfig struct {
	Enabled   bool          `yaml:"enabled"`
	PickleKey string        `yaml:"pickle_key"`
	KeyWait   time.Duration `yaml:"key_wait"`
}

// AccessConfig says who may invite the bot and use its commands.
type AccessConfig struct {
	Users   []id.UserID `yaml:"users"`
	Servers []string    `yaml:"servers"`
}

// Validate reports every problem in the Matrix sections, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.Homeserver.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("homeserver.url: %q is not an http(s) URL", c.Homeserver.URL))
	}
	if c.Homeserver.SyncStaleAfter < minSyncStaleAfter {
		errs = append(errs, fmt.Errorf("homeserver.sync_stale_after: %s is too short: a /sync long poll lasts %s, so it must be at least %s",
			c.Homeserver.SyncStaleAfter, syncLongPoll, minSyncStaleAfter))
	}
	if _, _, err := c.Bot.UserID.Parse(); err != nil {
		errs = append(errs, fmt.Errorf("bot.user_id: %q is not a Matrix user ID like @voipbot:example.com", c.Bot.UserID))
	}
	if c.Bot.DeviceName == "" {
		errs = append(errs, errors.New("bot.device_name: must not be empty"))
	}
	switch c.Mode {
	case ModeUser:
	case ModeAppservice:
		if c.Appservice.Registration == "" {
			errs = append(errs, errors.New("appservice.registration: must name the registration file in appservice mode"))
		}
		if c.Appservice.ID == "" {
			errs = append(errs, errors.New("appservice.id: must not be empty in appservice mode"))
		}
		if u, err := url.Parse(c.Appservice.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("appservice.url: %q is not an http(s) URL", c.Appservice.URL))
		}
		if c.Appservice.ToDevice != ToDeviceViaSync && c.Appservice.ToDevice != ToDeviceViaTransactions {
			errs = append(errs, fmt.Errorf("appservice.to_device: %q is not one of sync, transactions", c.Appservice.ToDevice))
		}
	default:
		errs = append(errs, fmt.Errorf("mode: %q is not one of user, appservice", c.Mode))
	}
	if c.Encryption.Enabled {
		if len(c.Encryption.PickleKey) < 16 {
			errs = append(errs, errors.New("encryption.pickle_key: must be at least 16 characters (a random string)"))
		}
		if c.Encryption.KeyWait < 0 {
			errs = append(errs, fmt.Errorf("encryption.key_wait: %s is negative", c.Encryption.KeyWait))
		}
	}
	for i, u := range c.Access.Users {
		if _, _, err := u.Parse(); err != nil {
			errs = append(errs, fmt.Errorf("access.users[%d]: %q is not a Matrix user ID", i, u))
		}
	}
	for i, s := range c.Access.Servers {
		if s == "" {
			errs = append(errs, fmt.Errorf("access.servers[%d]: empty server name", i))
		}
	}
	return errors.Join(errs...)
}

// Allowed reports whether a user may invite the bot and use its commands:
// listed by user ID, or on a listed server ("*" is every server). With
// neither list set, users of the bot's own homeserver are allowed.
func (a AccessConfig) Allowed(bot, user id.UserID) bool {
	if slices.Contains(a.Users, user) {
		return true
	}
	server := user.Homeserver()
	if server == "" {
		return false
	}
	if len(a.Users) == 0 && len(a.Servers) == 0 {
		return server == bot.Homeserver()
	}
	return slices.Contains(a.Servers, "*") || slices.Contains(a.Servers, server)
}
