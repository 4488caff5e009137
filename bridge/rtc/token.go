package rtc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/rtcevent"
)

// sfuGetRequest is lk-jwt-service's legacy /sfu/get request, which
// Element Call's compatibility mode uses (the service decodes it strictly:
// no other fields).
type sfuGetRequest struct {
	Room        string      `json:"room"`
	OpenIDToken openIDToken `json:"openid_token"`
	DeviceID    string      `json:"device_id"`
}

type openIDToken struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int    `json:"expires_in"`
}

// sfuAccess is where to connect and with what.
type sfuAccess struct {
	URL string `json:"url"`
	JWT string `json:"jwt"`
}

// maxTokenResponse bounds what is read from a JWT service.
const maxTokenResponse = 64 << 10

// getTokenRequest is lk-jwt-service's /get_token request (MSC4195 as
// Element Call's matrix_2_0 mode sends it): the LiveKit room is the hash
// of room and slot, the identity the hash of the claimed member.
type getTokenRequest struct {
	RoomID      string         `json:"room_id"`
	SlotID      string         `json:"slot_id"`
	OpenIDToken openIDToken    `json:"openid_token"`
	Member      getTokenMember `json:"member"`
}

type getTokenMember struct {
	ID       string `json:"id"`
	UserID   string `json:"claimed_user_id"`
	DeviceID string `json:"claimed_device_id"`
}

func openID(oid *mautrix.RespOpenIDToken) openIDToken {
	return openIDToken{AccessToken: oid.AccessToken, TokenType: oid.TokenType, MatrixServerName: oid.MatrixServerName, ExpiresIn: oid.ExpiresIn}
}

// token gets a LiveKit token for the bot's device in the call named alias
// from the JWT service at serviceURL (/sfu/get), proving who the bot is
// with a Matrix OpenID token. Its identity is "user:device".
func (m *Manager) token(ctx context.Context, serviceURL, alias string, oid *mautrix.RespOpenIDToken, device id.DeviceID) (sfuAccess, error) {
	return m.askToken(ctx, serviceURL, "/sfu/get", sfuGetRequest{Room: alias, DeviceID: device.String(), OpenIDToken: openID(oid)})
}

// getToken is token for a sticky member (/get_token): the identity is
// the hash of user, device and member id (rtcevent.HashedIdentity).
func (m *Manager) getToken(ctx context.Context, serviceURL string, room id.RoomID, oid *mautrix.RespOpenIDToken, user id.UserID, device id.DeviceID) (sfuAccess, error) {
	return m.askToken(ctx, serviceURL, "/get_token", getTokenRequest{
		RoomID: room.String(), SlotID: rtcevent.RoomSlot, OpenIDToken: openID(oid),
		Member: getTokenMember{ID: rtcevent.Identity(user.String(), device.String()), UserID: user.String(), DeviceID: device.String()},
	})
}

func (m *Manager) askToken(ctx context.Context, serviceURL, endpoint string, request any) (sfuAccess, error) {
	body, err := json.Marshal(request)
	if err != nil {
		return sfuAccess{}, fmt.Errorf("encoding the token request: %w", err)
	}
	url := strings.TrimRight(serviceURL, "/") + endpoint
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return sfuAccess{}, fmt.Errorf("the call's JWT service %q: %w", serviceURL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.http.Do(req)
	if err != nil {
		return sfuAccess{}, fmt.Errorf("asking %s for a LiveKit token: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return sfuAccess{}, fmt.Errorf("reading %s's answer: %w", url, err)
	}
	if resp.StatusCode == http.StatusNotFound && endpoint == "/get_token" {
		return sfuAccess{}, fmt.Errorf("%s: the call's JWT service has no /get_token, which a sticky membership needs (set rtc.membership to state, or upgrade lk-jwt-service)", url)
	}
	if resp.StatusCode != http.StatusOK {
		var merr struct {
			Code  string `json:"errcode"`
			Error string `json:"error"`
		}
		_ = json.Unmarshal(data, &merr)
		if merr.Code != "" {
			return sfuAccess{}, fmt.Errorf("%s refused the bot a LiveKit token: %s %s (%s)", url, resp.Status, merr.Code, merr.Error)
		}
		return sfuAccess{}, fmt.Errorf("%s refused the bot a LiveKit token: %s", url, resp.Status)
	}
	var access sfuAccess
	if err = json.Unmarshal(data, &access); err != nil {
		return sfuAccess{}, fmt.Errorf("%s's answer is not a token: %w", url, err)
	}
	if access.JWT == "" || (!strings.HasPrefix(access.URL, "ws://") && !strings.HasPrefix(access.URL, "wss://")) {
		return sfuAccess{}, errors.New(url + "'s answer has no token or no ws:// or wss:// SFU address")
	}
	return access, nil
}
