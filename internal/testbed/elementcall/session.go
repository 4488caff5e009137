package elementcall

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Session is a Matrix login Element Call restores (its localStorage
// "matrix-auth-store"): the device is Element Call's own from then on (it
// uploads that device's encryption keys), so it must be a fresh device, not
// one another client already uses.
type Session struct {
	UserID      string `json:"user_id"`
	DeviceID    string `json:"device_id"`
	AccessToken string `json:"access_token"`
}

// Identity is the session's LiveKit participant identity in a call:
// Element Call's legacy /sfu/get tokens and state-event memberships use
// "<user id>:<device id>".
func (s Session) Identity() string { return Identity(s.UserID, s.DeviceID) }

// Identity is the LiveKit identity of a call member's device.
func Identity(userID, deviceID string) string { return userID + ":" + deviceID }

// Login logs user in with a password on a new device (POST
// /_matrix/client/v3/login), for Element Call.
func Login(ctx context.Context, homeserverURL, user, password string) (Session, error) {
	body, err := json.Marshal(map[string]any{
		"type":                        "m.login.password",
		"identifier":                  map[string]string{"type": "m.id.user", "user": user},
		"password":                    password,
		"initial_device_display_name": "Element Call " + Version + " (test bed)",
	})
	if err != nil {
		return Session{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(homeserverURL, "/")+"/_matrix/client/v3/login", bytes.NewReader(body))
	if err != nil {
		return Session{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Session{}, fmt.Errorf("elementcall: logging in %s: %w", user, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Session{}, fmt.Errorf("elementcall: logging in %s: %w", user, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Session{}, fmt.Errorf("elementcall: logging in %s: HTTP %d: %s", user, resp.StatusCode, data)
	}
	var s Session
	if err = json.Unmarshal(data, &s); err != nil {
		return Session{}, fmt.Errorf("elementcall: logging in %s: %w", user, err)
	}
	if s.UserID == "" || s.DeviceID == "" || s.AccessToken == "" {
		return Session{}, fmt.Errorf("elementcall: logging in %s: incomplete answer %s", user, data)
	}
	return s, nil
}
