package matrix

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func appserviceConfig(t *testing.T) Config {
	t.Helper()
	return Config{
		Homeserver: HomeserverConfig{URL: "http://127.0.0.1:1", SyncStaleAfter: 40 * time.Second},
		Bot:        BotConfig{UserID: "@voipbot:example.org", DeviceName: "voipbot"},
		Mode:       ModeAppservice,
		Appservice: AppserviceConfig{
			Registration: filepath.Join(t.TempDir(), "registration.yaml"),
			ID:           "voipbot",
			URL:          "http://127.0.0.1:29333",
			ToDevice:     ToDeviceViaTransactions,
		},
	}
}

func TestGenerateRegistration(t *testing.T) {
	cfg := appserviceConfig(t)
	require.NoError(t, cfg.Validate())
	reg, err := GenerateRegistration(cfg)
	require.NoError(t, err)
	require.Equal(t, "voipbot", reg.SenderLocalpart)
	require.True(t, reg.EphemeralEvents)
	require.True(t, reg.SoruEphemeralEvents)
	require.True(t, reg.MSC3202)
	require.Equal(t, appservice.NamespaceList{{Regex: `^@voipbot:example\.org$`, Exclusive: true}}, reg.Namespaces.UserIDs)
	info, err := os.Stat(cfg.Appservice.Registration)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the registration holds secrets")

	cfg.Appservice.URL = "http://bot.internal:29333"
	again, err := GenerateRegistration(cfg)
	require.NoError(t, err)
	require.Equal(t, reg.AppToken, again.AppToken, "tokens survive regeneration")
	require.Equal(t, reg.ServerToken, again.ServerToken)
	require.Equal(t, "http://bot.internal:29333", again.URL)

	loaded, err := LoadRegistration(cfg)
	require.NoError(t, err)
	require.Equal(t, again.ServerToken, loaded.ServerToken)
}

func TestLoadRegistrationErrors(t *testing.T) {
	cfg := appserviceConfig(t)
	_, err := LoadRegistration(cfg)
	require.ErrorContains(t, err, "voipbot -g")

	_, err = GenerateRegistration(cfg)
	require.NoError(t, err)
	other := cfg
	other.Bot.UserID = "@someoneelse:example.org"
	_, err = LoadRegistration(other)
	require.ErrorContains(t, err, "sender_localpart")
	other = cfg
	other.Appservice.ID = "another"
	_, err = LoadRegistration(other)
	require.ErrorContains(t, err, "appservice.id")

	require.NoError(t, os.WriteFile(cfg.Appservice.Registration, []byte("id: voipbot\nsender_localpart: voipbot\n"), 0o600))
	_, err = LoadRegistration(cfg)
	require.ErrorContains(t, err, "as_token")
}

type asFixture struct {
	client *Client
	hsTok  string
	srv    *httptest.Server
	got    chan *Event
}

func newASFixture(t *testing.T) *asFixture {
	t.Helper()
	cfg := appserviceConfig(t)
	reg, err := GenerateRegistration(cfg)
	require.NoError(t, err)
	st, _ := openStore(t)
	c, err := New(cfg, st, prometheus.NewRegistry(), zerolog.Nop())
	require.NoError(t, err)
	f := &asFixture{client: c, hsTok: reg.ServerToken, got: make(chan *Event, 10)}
	c.On(event.Type{Type: "org.example.test", Class: event.MessageEventType}, nil, func(_ context.Context, evt *Event) error {
		f.got <- evt
		return nil
	})
	c.cli.UserID, c.cli.DeviceID = cfg.Bot.UserID, "BOTDEVICE"
	f.srv = httptest.NewServer(c.AppserviceHandler())
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() { c.Stop(time.Second) })
	return f
}

func (f *asFixture) do(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var e struct {
		ErrCode string `json:"errcode"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.ErrCode
}

const testTxn = `{"events":[{"type":"org.example.test","room_id":"!r:example.org","sender":"@alice:example.org","event_id":"$1","origin_server_ts":1,"content":{"n":1}}]}`

func TestTransactionEndpoint(t *testing.T) {
	f := newASFixture(t)
	path := "/_matrix/app/v1/transactions/t1"

	code, errcode := f.do(t, http.MethodPut, path, "", testTxn)
	require.Equal(t, http.StatusUnauthorized, code)
	require.Equal(t, "M_UNAUTHORIZED", errcode)
	code, errcode = f.do(t, http.MethodPut, path, "wrong", testTxn)
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, "M_FORBIDDEN", errcode)
	code, errcode = f.do(t, http.MethodPut, path, f.hsTok[:len(f.hsTok)-1], testTxn)
	require.Equal(t, http.StatusForbidden, code, "a prefix of the token is not the token")
	require.Equal(t, "M_FORBIDDEN", errcode)

	code, _ = f.do(t, http.MethodPut, path, f.hsTok, testTxn)
	require.Equal(t, http.StatusServiceUnavailable, code, "not before the bot is logged in: the homeserver retries")
	f.client.started.Store(true)

	code, errcode = f.do(t, http.MethodPut, path, f.hsTok, "{not json")
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "M_NOT_JSON", errcode)

	code, _ = f.do(t, http.MethodPut, path, f.hsTok, testTxn)
	require.Equal(t, http.StatusOK, code)
	select {
	case evt := <-f.got:
		require.Equal(t, id.EventID("$1"), evt.ID)
		require.Equal(t, id.RoomID("!r:example.org"), evt.RoomID)
	case <-time.After(10 * time.Second):
		t.Fatal("the transaction's event was not handled")
	}
	code, _ = f.do(t, http.MethodPut, path, f.hsTok, testTxn)
	require.Equal(t, http.StatusOK, code, "a repeated transaction is acknowledged")
	seen, err := f.client.store.TxnSeen(context.Background(), "t1")
	require.NoError(t, err)
	require.True(t, seen)
	// A later transaction's event in the same room is the next one handled:
	// the repeat was not stored again (events of a room keep their order).
	code, _ = f.do(t, http.MethodPut, "/_matrix/app/v1/transactions/t2", f.hsTok, strings.ReplaceAll(testTxn, `"$1"`, `"$2"`))
	require.Equal(t, http.StatusOK, code)
	select {
	case evt := <-f.got:
		require.Equal(t, id.EventID("$2"), evt.ID, "the repeated transaction was handled again")
	case <-time.After(10 * time.Second):
		t.Fatal("the second transaction's event was not handled")
	}

	// The legacy access_token query parameter is accepted too.
	code, _ = f.do(t, http.MethodPut, "/_matrix/app/v1/transactions/t3?access_token="+f.hsTok, "", `{"events":[]}`)
	require.Equal(t, http.StatusOK, code)

	code, _ = f.do(t, http.MethodPost, "/_matrix/app/v1/ping", f.hsTok, `{}`)
	require.Equal(t, http.StatusOK, code)
	code, errcode = f.do(t, http.MethodGet, "/_matrix/app/v1/users/@x:example.org", f.hsTok, "")
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "M_NOT_FOUND", errcode)
	code, errcode = f.do(t, http.MethodGet, "/_matrix/app/v1/nope", f.hsTok, "")
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "M_UNRECOGNIZED", errcode)
}

func TestTransactionToSyncTakesOnlyOwnDeviceData(t *testing.T) {
	f := newASFixture(t)
	var txn appservice.Transaction
	require.NoError(t, json.Unmarshal([]byte(`{
		"events": [{"type":"m.room.message","room_id":"!a:x","event_id":"$1","sender":"@u:x","content":{}},
		           {"type":"m.room.message","room_id":"!b:x","event_id":"$2","sender":"@u:x","content":{}},
		           {"type":"m.room.message","room_id":"!a:x","event_id":"$3","sender":"@u:x","content":{}}],
		"de.sorunome.msc2409.to_device": [
			{"type":"m.call.invite","sender":"@u:x","to_user_id":"@voipbot:example.org","to_device_id":"BOTDEVICE","content":{}},
			{"type":"m.call.invite","sender":"@u:x","to_user_id":"@voipbot:example.org","to_device_id":"OTHER","content":{}},
			{"type":"m.call.invite","sender":"@u:x","to_user_id":"@ghost:example.org","to_device_id":"BOTDEVICE","content":{}}],
		"org.matrix.msc3202.device_one_time_keys_count": {"@voipbot:example.org": {"BOTDEVICE": {"signed_curve25519": 42}, "OTHER": {"signed_curve25519": 1}}},
		"org.matrix.msc3202.device_lists": {"changed": ["@u:x"]}
	}`), &txn))
	resp, tc := f.client.transactionToSync(&txn)
	require.Len(t, resp.Rooms.Join, 2)
	require.Len(t, resp.Rooms.Join["!a:x"].Timeline.Events, 2)
	require.Equal(t, id.EventID("$3"), resp.Rooms.Join["!a:x"].Timeline.Events[1].ID, "order within a room is kept")
	require.Len(t, resp.ToDevice.Events, 1, "only to-device messages for the bot's own device")
	require.NotNil(t, tc.otkCount)
	require.Equal(t, 42, tc.otkCount.SignedCurve25519)
	require.Equal(t, []id.UserID{"@u:x"}, tc.deviceLists.Changed)

	f.client.cfg.Appservice.ToDevice = ToDeviceViaSync
	resp, tc = f.client.transactionToSync(&txn)
	require.Empty(t, resp.ToDevice.Events, "with to_device: sync, /sync delivers them")
	require.Nil(t, tc)
}
