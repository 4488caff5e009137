package matrix

import (
	"context"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/store"
)

// login restores the stored login, or logs in for the first time and stores
// it. A login is never repeated on later starts: each login creates a new
// device, and the bot's encryption keys belong to the first one.
func (c *Client) login(ctx context.Context) error {
	acct, err := c.store.Account(ctx)
	if err != nil {
		return err
	}
	if acct == nil {
		return c.firstLogin(ctx)
	}
	if acct.UserID != c.cfg.Bot.UserID {
		return fmt.Errorf("the database holds the login of %s, but bot.user_id is %s: "+
			"use that user's database, or a new database file for the new user", acct.UserID, c.cfg.Bot.UserID)
	}
	c.cli.UserID, c.cli.DeviceID, c.cli.AccessToken = acct.UserID, acct.DeviceID, acct.AccessToken
	whoami, err := c.cli.Whoami(ctx)
	if errors.Is(err, mautrix.MUnknownToken) {
		return c.reLogin(ctx, acct, err)
	} else if err != nil {
		return fmt.Errorf("checking the stored login of %s: %w", acct.UserID, err)
	}
	if whoami.UserID != acct.UserID || (whoami.DeviceID != "" && whoami.DeviceID != acct.DeviceID) {
		return fmt.Errorf("the stored access token belongs to %s device %s, not %s device %s",
			whoami.UserID, whoami.DeviceID, acct.UserID, acct.DeviceID)
	}
	c.log.Debug().Stringer("device_id", acct.DeviceID).Msg("Reusing stored login")
	return nil
}

// reLogin handles a stored token the homeserver no longer accepts. After a
// soft logout the device still exists and a new token for it keeps its keys
// valid; after a real logout the device and its keys are gone.
func (c *Client) reLogin(ctx context.Context, acct *store.Account, cause error) error {
	var httpErr mautrix.HTTPError
	soft := false
	if errors.As(cause, &httpErr) && httpErr.RespError != nil {
		soft, _ = httpErr.RespError.ExtraData["soft_logout"].(bool)
	}
	if soft && c.cfg.Mode == ModeUser && c.cfg.Bot.Password != "" {
		c.log.Info().Stringer("device_id", acct.DeviceID).Msg("Stored token expired (soft logout); logging in again to the same device")
		return c.passwordLogin(ctx, acct.DeviceID)
	}
	if soft && c.cfg.Mode == ModeAppservice {
		return c.appserviceLogin(ctx, acct.DeviceID)
	}
	return fmt.Errorf("the homeserver no longer accepts the stored login of device %s (it was logged out): "+
		"its encryption keys are gone with it, so start over with a new database file "+
		"(and, in user mode, bot.password set): %w", acct.DeviceID, cause)
}

func (c *Client) firstLogin(ctx context.Context) error {
	if c.cfg.Mode == ModeAppservice {
		return c.appserviceLogin(ctx, "")
	}
	if c.cfg.Bot.Password == "" {
		return errors.New("bot.password is needed for the first login (there is no stored login yet); " +
			"set it, or VOIPBOT_BOT_PASSWORD_FILE, and start again")
	}
	return c.passwordLogin(ctx, "")
}

func (c *Client) passwordLogin(ctx context.Context, device id.DeviceID) error {
	return c.doLogin(ctx, &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypePassword,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: c.cfg.Bot.UserID.String()},
		Password:                 c.cfg.Bot.Password,
		DeviceID:                 device,
		InitialDeviceDisplayName: c.cfg.Bot.DeviceName,
	})
}

// appserviceLogin gets a device for the appservice's bot user: encryption
// needs a device, and the appservice token alone has none.
func (c *Client) appserviceLogin(ctx context.Context, device id.DeviceID) error {
	c.cli.AccessToken = c.reg.AppToken
	return c.doLogin(ctx, &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypeAppservice,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: c.cfg.Bot.UserID.String()},
		DeviceID:                 device,
		InitialDeviceDisplayName: c.cfg.Bot.DeviceName,
	})
}

func (c *Client) doLogin(ctx context.Context, req *mautrix.ReqLogin) error {
	resp, err := c.cli.Login(ctx, req)
	if err != nil {
		return fmt.Errorf("logging in as %s: %w", c.cfg.Bot.UserID, err)
	}
	if resp.UserID != c.cfg.Bot.UserID {
		return fmt.Errorf("logged in as %s, but bot.user_id is %s", resp.UserID, c.cfg.Bot.UserID)
	}
	if err = c.store.PutAccount(ctx, &store.Account{
		UserID:      resp.UserID,
		DeviceID:    resp.DeviceID,
		AccessToken: resp.AccessToken,
		Homeserver:  c.cfg.Homeserver.URL,
		LoggedInAt:  time.Now(),
	}); err != nil {
		return err
	}
	c.cli.UserID, c.cli.DeviceID, c.cli.AccessToken = resp.UserID, resp.DeviceID, resp.AccessToken
	c.log.Info().Stringer("device_id", resp.DeviceID).Msg("Logged in for the first time; login stored")
	return nil
}
