package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
)

// TestAppserviceMode writes a registration with `voipbot -g`, starts a
// homeserver that loads it, and runs the bot as that appservice: it joins on
// invite and answers commands in plain and encrypted rooms from transactions,
// rejects a wrong or missing hs_token, and handles a repeated transaction
// once.
func TestAppserviceMode(t *testing.T) {
	dir := t.TempDir()
	port, err := testbed.FreePort()
	require.NoError(t, err)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", port)
	botUser := id.NewUserID("voipbotas", testbed.ServerName)
	regPath := filepath.Join(dir, "registration.yaml")
	pickle := "appservice-pickle-0123456789"
	setup := &botSetup{UserID: botUser, Dir: dir, HTTPAddr: httpAddr, Config: filepath.Join(dir, "config.yaml"), Secrets: []string{pickle}}

	// The homeserver needs the registration before it starts, and the
	// registration needs the config: write the config with a placeholder URL
	// first, then rewrite it once the homeserver's URL is known.
	asSection := fmt.Sprintf("mode: appservice\nappservice:\n  registration: %s\n  url: http://%s\n", regPath, httpAddr)
	writeASConfig := func(hsURL string) {
		cfg := fmt.Sprintf("homeserver:\n  url: %s\nbot:\n  user_id: %q\nencryption:\n  pickle_key: %q\ndatabase:\n  path: %s\nhttp:\n  listen: %s\nlogging:\n  level: trace\n  format: json\n%s",
			hsURL, botUser, pickle, filepath.Join(dir, "voipbot.db"), httpAddr, asSection)
		require.NoError(t, os.WriteFile(setup.Config, []byte(cfg), 0o600))
	}
	writeASConfig("http://127.0.0.1:1")
	out, err := exec.Command(botBinary, "-c", setup.Config, "-g").CombinedOutput()
	require.NoErrorf(t, err, "voipbot -g: %s", out)
	require.Contains(t, string(out), "Wrote the appservice registration")

	regYAML, err := os.ReadFile(regPath)
	require.NoError(t, err)
	var reg map[string]any
	require.NoError(t, yaml.Unmarshal(regYAML, &reg))
	require.Equal(t, "voipbot", reg["id"])
	require.Equal(t, "http://"+httpAddr, reg["url"])
	require.Equal(t, "voipbotas", reg["sender_localpart"])
	require.Equal(t, true, reg["receive_ephemeral"])
	require.Equal(t, true, reg["de.sorunome.msc2409.push_ephemeral"])
	require.Equal(t, true, reg["org.matrix.msc3202"])
	users := reg["namespaces"].(map[string]any)["users"].([]any)
	require.Len(t, users, 1)
	require.Equal(t, true, users[0].(map[string]any)["exclusive"])
	require.Equal(t, `^@voipbotas:localhost$`, users[0].(map[string]any)["regex"])
	asToken, hsToken := reg["as_token"].(string), reg["hs_token"].(string)
	require.Len(t, hsToken, 64)
	setup.Secrets = append(setup.Secrets, asToken, hsToken)

	// Running -g again keeps the tokens.
	out, err = exec.Command(botBinary, "-c", setup.Config, "-g").CombinedOutput()
	require.NoErrorf(t, err, "voipbot -g: %s", out)
	again, err := os.ReadFile(regPath)
	require.NoError(t, err)
	require.Equal(t, string(regYAML), string(again))

	hsDir := filepath.Join(dir, "dendrite")
	require.NoError(t, os.Mkdir(hsDir, 0o700))
	ashs, err := testbed.StartDendrite(hsDir, testbed.DendriteOptions{AppserviceRegistrations: []string{regPath}})
	require.NoError(t, err)
	t.Cleanup(ashs.Stop)
	writeASConfig(ashs.URL)

	bot := setup.start(t)
	setup.addAccessToken(t)
	health, _, err := bot.GetHealth()
	require.NoError(t, err)
	require.True(t, health.Ready)

	alice := newUser(t, ashs, "alice", true)
	plain := inviteBot(t, alice, botUser, false)
	require.Contains(t, body(command(t, alice, plain, botUser, "!voip status")), "Mode: appservice")

	encrypted := inviteBot(t, alice, botUser, true)
	reply := command(t, alice, encrypted, botUser, "!voip status")
	require.True(t, reply.Mautrix.WasEncrypted, "the reply in the encrypted room was encrypted")
	require.Contains(t, body(reply), "encryption on")

	// The transaction endpoint itself.
	fake := map[string]any{"events": []map[string]any{{
		"type": "m.room.message", "room_id": plain, "sender": alice.UserID, "event_id": "$injected-" + fmt.Sprint(time.Now().UnixNano()),
		"origin_server_ts": time.Now().UnixMilli(), "content": map[string]any{"msgtype": "m.text", "body": "!voip help"},
	}}}
	payload, err := json.Marshal(fake)
	require.NoError(t, err)
	put := func(txnID, token string) (int, string) {
		req, err := http.NewRequest(http.MethodPut, bot.HTTP+"/_matrix/app/v1/transactions/"+txnID, bytes.NewReader(payload))
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body struct {
			ErrCode string `json:"errcode"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.ErrCode
	}
	code, errcode := put("wrong", "not-the-hs-token")
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, "M_FORBIDDEN", errcode)
	code, errcode = put("missing", "")
	require.Equal(t, http.StatusUnauthorized, code)
	require.Equal(t, "M_UNAUTHORIZED", errcode)
	code, _ = put("voipbot-test-txn", hsToken)
	require.Equal(t, http.StatusOK, code)
	code, _ = put("voipbot-test-txn", hsToken)
	require.Equal(t, http.StatusOK, code, "a repeated transaction is acknowledged")

	injected := id.EventID(fake["events"].([]map[string]any)[0]["event_id"].(string))
	_, err = alice.WaitEvent(ctxFor(t), testbed.ReplyTo(botUser, injected))
	require.NoError(t, err, "the injected transaction's command is answered")
	command(t, alice, plain, botUser, "!voip help") // ordered after any duplicate handling
	replies := countReplies(t, alice, plain, botUser)
	require.Equal(t, 1, replies[injected], "a repeated transaction is handled once")
	for cmd, n := range replies {
		require.Equalf(t, 1, n, "command %s answered %d times", cmd, n)
	}
	require.Contains(t, bot.Logs(), "Took in transaction")

	metrics, err := bot.Metrics()
	require.NoError(t, err)
	require.Contains(t, metrics, `voipbot_appservice_transactions_total{result="forbidden"} 1`)
	require.Contains(t, metrics, `voipbot_appservice_transactions_total{result="unauthorized"} 1`)
	require.Contains(t, metrics, `voipbot_appservice_transactions_total{result="duplicate"} 1`)
}
