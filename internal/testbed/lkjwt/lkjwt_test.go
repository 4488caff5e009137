package lkjwt

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/stretchr/testify/require"
)

// The vectors of MSC4195, which lk-jwt-service's helpers reproduce.
func TestAliasAndIdentityVectors(t *testing.T) {
	require.Equal(t, "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc", RoomAlias("!roomid:example.com", "slot1234"))
	require.Equal(t, "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU", Identity("@alice:example.com", "DEVICE123", "memberABC"))
	require.Equal(t, "@alice:localhost:ALICEDEV", LegacyIdentity("@alice:localhost", "ALICEDEV"))
	// JSON escaping is part of the formula: a quote in an id must not
	// collide with a differently split pair.
	require.NotEqual(t, RoomAlias(`a","b`, "c"), RoomAlias("a", `b","c`))
}

const (
	testKey    = "testkey"
	testSecret = "0123456789abcdef0123456789abcdef"
	goodToken  = "good-openid-token"
)

// fakeHomeserver answers the OpenID userinfo endpoint as Dendrite does:
// goodToken is @alice:localhost's, "foreign" belongs to a user of another
// server, anything else is unknown.
func fakeHomeserver(t *testing.T) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_matrix/federation/v1/openid/userinfo" {
			http.NotFound(w, r)
			return
		}
		switch r.URL.Query().Get("access_token") {
		case goodToken:
			_, _ = io.WriteString(w, `{"sub":"@alice:localhost"}`)
		case "foreign":
			_, _ = io.WriteString(w, `{"sub":"@mallory:elsewhere"}`)
		default:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errcode":"M_UNKNOWN_TOKEN","error":"Access Token unknown"}`)
		}
	}))
	t.Cleanup(hs.Close)
	return hs
}

func startService(t *testing.T) *Server {
	t.Helper()
	hs := fakeHomeserver(t)
	srv, err := Start(Config{
		LiveKitURL: "ws://127.0.0.1:7880", APIKey: testKey, APISecret: testSecret,
		Homeservers: map[string]string{"localhost": hs.URL},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	return srv
}

func post(t *testing.T, url, body string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, data
}

func errCode(t *testing.T, body []byte) string {
	t.Helper()
	var e Error
	require.NoErrorf(t, json.Unmarshal(body, &e), "error body %s", body)
	return e.ErrCode
}

// parse checks a minted token's signature and returns its grants.
func parse(t *testing.T, body []byte) (Response, *auth.ClaimGrants, time.Time) {
	t.Helper()
	var resp Response
	require.NoError(t, json.Unmarshal(body, &resp))
	require.Equal(t, "ws://127.0.0.1:7880", resp.URL)
	v, err := auth.ParseAPIToken(resp.JWT)
	require.NoError(t, err)
	require.Equal(t, testKey, v.APIKey())
	claims, grants, err := v.Verify(testSecret)
	require.NoError(t, err)
	require.NotNil(t, claims.ExpiresAt)
	return resp, grants, claims.ExpiresAt.Time
}

const openID = `{"access_token":"` + goodToken + `","token_type":"Bearer","matrix_server_name":"localhost","expires_in":1795217751443}`

func TestSFUGet(t *testing.T) {
	srv := startService(t)
	status, hdr, body := post(t, srv.URL+"/sfu/get", `{"room":"!room:localhost","openid_token":`+openID+`,"device_id":"ALICEDEV"}`)
	require.Equalf(t, http.StatusOK, status, "%s", body)
	require.Equal(t, "*", hdr.Get("Access-Control-Allow-Origin"))
	_, grants, exp := parse(t, body)
	require.Equal(t, "@alice:localhost:ALICEDEV", grants.Identity)
	require.NotNil(t, grants.Video)
	require.True(t, grants.Video.RoomJoin)
	require.False(t, grants.Video.RoomCreate, "join-only: livekit-server's auto_create makes the room")
	require.Equal(t, RoomAlias("!room:localhost", LegacySlot), grants.Video.Room)
	require.True(t, grants.Video.GetCanPublish())
	require.True(t, grants.Video.GetCanSubscribe())
	require.WithinDuration(t, time.Now().Add(TokenValidity), exp, time.Minute)
	require.Equal(t, []Minted{{Endpoint: "/sfu/get", UserID: "@alice:localhost", Room: grants.Video.Room, Identity: grants.Identity}}, srv.Minted())

	// The delegated delayed leave comes whole or not at all.
	status, _, body = post(t, srv.URL+"/sfu/get", `{"room":"!room:localhost","openid_token":`+openID+`,"device_id":"ALICEDEV","delay_id":"d1","delay_timeout":8000,"delay_cs_api_url":"http://127.0.0.1:1"}`)
	require.Equalf(t, http.StatusOK, status, "%s", body)
	status, _, body = post(t, srv.URL+"/sfu/get", `{"room":"!room:localhost","openid_token":`+openID+`,"device_id":"ALICEDEV","delay_id":"d1"}`)
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "M_BAD_JSON", errCode(t, body))
}

func TestGetToken(t *testing.T) {
	srv := startService(t)
	req := func(claimed string) string {
		return `{"room_id":"!room:localhost","slot_id":"m.call#ROOM","openid_token":` + openID +
			`,"member":{"id":"memberABC","claimed_user_id":"` + claimed + `","claimed_device_id":"ALICEDEV"}}`
	}
	status, _, body := post(t, srv.URL+"/get_token", req("@alice:localhost"))
	require.Equalf(t, http.StatusOK, status, "%s", body)
	_, grants, _ := parse(t, body)
	require.Equal(t, Identity("@alice:localhost", "ALICEDEV", "memberABC"), grants.Identity)
	require.Equal(t, RoomAlias("!room:localhost", "m.call#ROOM"), grants.Video.Room)
	require.True(t, grants.Video.RoomJoin)

	// The claimed user must be the token's.
	status, _, body = post(t, srv.URL+"/get_token", req("@bob:localhost"))
	require.Equal(t, http.StatusUnauthorized, status)
	require.Equal(t, "M_UNAUTHORIZED", errCode(t, body))
	require.Len(t, srv.Minted(), 1)
}

func TestStrictJSON(t *testing.T) {
	srv := startService(t)
	for name, c := range map[string]struct {
		path, body string
		code       string
	}{
		"unknown field":              {"/sfu/get", `{"room":"!r:localhost","openid_token":` + openID + `,"device_id":"D","extra":1}`, "M_NOT_JSON"},
		"unknown nested field":       {"/sfu/get", `{"room":"!r:localhost","openid_token":{"access_token":"x","matrix_server_name":"localhost","foo":"bar"},"device_id":"D"}`, "M_NOT_JSON"},
		"unknown member field":       {"/get_token", `{"room_id":"!r:localhost","slot_id":"s","openid_token":` + openID + `,"member":{"id":"m","claimed_user_id":"@alice:localhost","claimed_device_id":"D","x":1}}`, "M_NOT_JSON"},
		"not JSON":                   {"/sfu/get", `room=!r:localhost`, "M_NOT_JSON"},
		"wrong type":                 {"/sfu/get", `{"room":5}`, "M_NOT_JSON"},
		"trailing data":              {"/sfu/get", `{"room":"!r:localhost","openid_token":` + openID + `,"device_id":"D"} {}`, "M_NOT_JSON"},
		"missing device":             {"/sfu/get", `{"room":"!r:localhost","openid_token":` + openID + `}`, "M_BAD_JSON"},
		"missing server name":        {"/sfu/get", `{"room":"!r:localhost","openid_token":{"access_token":"x"},"device_id":"D"}`, "M_BAD_JSON"},
		"missing member id":          {"/get_token", `{"room_id":"!r:localhost","slot_id":"s","openid_token":` + openID + `,"member":{"claimed_user_id":"@alice:localhost","claimed_device_id":"D"}}`, "M_BAD_JSON"},
		"get_token partial delay":    {"/get_token", `{"room_id":"!r:localhost","slot_id":"s","openid_token":` + openID + `,"member":{"id":"m","claimed_user_id":"@alice:localhost","claimed_device_id":"D"},"delay_timeout":5}`, "M_BAD_JSON"},
		"sfu/get body for get_token": {"/get_token", `{"room":"!r:localhost","openid_token":` + openID + `,"device_id":"D"}`, "M_NOT_JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			status, _, body := post(t, srv.URL+c.path, c.body)
			require.Equalf(t, http.StatusBadRequest, status, "%s", body)
			require.Equal(t, c.code, errCode(t, body))
		})
	}
	require.Empty(t, srv.Minted())
}

func TestBadOpenIDToken(t *testing.T) {
	srv := startService(t)
	for name, tok := range map[string]string{
		"unknown token":  `{"access_token":"forged","matrix_server_name":"localhost"}`,
		"unknown server": `{"access_token":"` + goodToken + `","matrix_server_name":"matrix.org"}`,
		"another's user": `{"access_token":"foreign","matrix_server_name":"localhost"}`,
	} {
		t.Run(name, func(t *testing.T) {
			status, _, body := post(t, srv.URL+"/sfu/get", `{"room":"!r:localhost","openid_token":`+tok+`,"device_id":"D"}`)
			require.Equalf(t, http.StatusUnauthorized, status, "%s", body)
			require.Equal(t, "M_UNAUTHORIZED", errCode(t, body))
		})
	}
	require.Empty(t, srv.Minted())
}

func TestCORSAndMethods(t *testing.T) {
	srv := startService(t)
	req, err := http.NewRequest(http.MethodOptions, srv.URL+"/sfu/get", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "http://127.0.0.1:8090")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), "Content-Type")
	require.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")

	resp, err = http.Get(srv.URL + "/sfu/get")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"), "errors carry CORS too, so the page can read them")

	resp, err = http.Post(srv.URL+"/delegate_delayed_leave", "application/json", bytes.NewBufferString("{}"))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "no delegated delayed leave, as lk-jwt-service v0.5.0")
}
