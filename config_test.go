package voipbot

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix"
)

// valid is the smallest config that passes validation. It ends inside the
// encryption section, so a test can append keys of that section.
const valid = `
homeserver:
  url: https://hs.test
bot:
  user_id: "@bot:hs.test"
encryption:
  pickle_key: 0123456789abcdef0123
`

func TestExampleDocumentsEveryKey(t *testing.T) {
	cfg, err := Defaults()
	require.NoError(t, err)
	lines := strings.Split(string(ExampleConfig), "\n")
	for key := range flatten(reflect.ValueOf(cfg).Elem(), "") {
		leaf := key[strings.LastIndex(key, ".")+1:]
		found := false
		for i, line := range lines {
			if strings.HasPrefix(strings.TrimSpace(line), leaf+":") {
				require.Truef(t, i > 0 && strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#"),
					"%s in config.example.yaml has no comment above it", key)
				found = true
			}
		}
		require.Truef(t, found, "%s is not in config.example.yaml", key)
	}
}

func TestEnvNamesAreUnique(t *testing.T) {
	cfg, err := Defaults()
	require.NoError(t, err)
	seen := map[string]string{}
	for key := range flatten(reflect.ValueOf(cfg).Elem(), "") {
		name := EnvName(key)
		require.NotContainsf(t, seen, name, "%s and %s share %s", key, seen[name], name)
		seen[name] = key
	}
}

func TestValidConfigKeepsDefaults(t *testing.T) {
	cfg, err := Parse([]byte(valid), "config.yaml", nil)
	require.NoError(t, err)
	require.Equal(t, "https://hs.test", cfg.Matrix.Homeserver.URL)
	require.Equal(t, matrix.ModeUser, cfg.Matrix.Mode)
	require.Equal(t, "!voip", cfg.Bridge.Commands.Prefix)
	require.Equal(t, "voipbot.db", cfg.Database.Path)
	require.Equal(t, "127.0.0.1:29333", cfg.HTTP.Listen)
	require.Equal(t, 25*time.Second, cfg.Matrix.Encryption.KeyWait)
	require.Equal(t, 40*time.Second, cfg.Matrix.Homeserver.SyncStaleAfter)
	require.True(t, cfg.Matrix.Encryption.Enabled)
	require.Equal(t, matrix.ToDeviceViaSync, cfg.Matrix.Appservice.ToDevice)
	require.Zero(t, cfg.Media.UDPMuxPort)
	require.Equal(t, 25*time.Second, cfg.Media.ICEFailed)
	require.Equal(t, "recordings", cfg.Media.RecordDir)
}

// TestBadInputsNameTheKey is the table of every kind of bad input: each must
// fail with a message that names the offending key.
func TestBadInputsNameTheKey(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		env  []string
		want []string
	}{
		{"unknown top-level key", valid + "colour: blue\n", nil, []string{`config.yaml:8: unknown key "colour"`}},
		{"unknown nested key with suggestion", valid + "http:\n  listne: 1.2.3.4:5\n", nil,
			[]string{`unknown key "http.listne" (did you mean "listen"?)`}},
		{"placeholder homeserver", strings.Replace(valid, "https://hs.test", "https://matrix.example.com", 1), nil,
			[]string{`homeserver.url: still the example's placeholder "https://matrix.example.com"`}},
		{"placeholder user id", strings.Replace(valid, `"@bot:hs.test"`, `"@voipbot:example.com"`, 1), nil,
			[]string{`bot.user_id: still the example's placeholder`}},
		{"placeholder pickle key", strings.Replace(valid, "0123456789abcdef0123", "generate", 1), nil,
			[]string{`encryption.pickle_key: still the example's placeholder "generate"`}},
		{"every placeholder at once", "", nil,
			[]string{"homeserver.url", "bot.user_id", "encryption.pickle_key"}},
		{"wrong type", valid + "  enabled: maybe\n", nil,
			[]string{"config.yaml:8: encryption.enabled:", "maybe"}},
		{"bad duration", valid + "  key_wait: soon\n", nil, []string{"encryption.key_wait"}},
		{"negative duration", valid + "  key_wait: -1s\n", nil, []string{"encryption.key_wait"}},
		{"section given a value", valid + "access: everyone\n", nil, []string{"access: expected a section"}},
		{"duplicate key", valid + "mode: user\nmode: appservice\n", nil, []string{"mode: key appears twice"}},
		{"bad mode", valid + "mode: bot\n", nil, []string{`mode: "bot" is not one of user, appservice`}},
		{"sync_stale_after within the long poll", strings.Replace(valid, "url: https://hs.test", "url: https://hs.test\n  sync_stale_after: 30s", 1), nil,
			[]string{"homeserver.sync_stale_after: 30s is too short: a /sync long poll lasts 30s, so it must be at least 35s"}},
		{"sync_stale_after zero", strings.Replace(valid, "url: https://hs.test", "url: https://hs.test\n  sync_stale_after: 0s", 1), nil,
			[]string{"homeserver.sync_stale_after: 0s is too short"}},
		{"bad env sync_stale_after", valid, []string{"VOIPBOT_HOMESERVER_SYNC_STALE_AFTER=34s"}, []string{"homeserver.sync_stale_after: 34s is too short"}},
		{"bad homeserver url", strings.Replace(valid, "https://hs.test", "hs.test", 1), nil, []string{"homeserver.url"}},
		{"bad user id", strings.Replace(valid, `"@bot:hs.test"`, `"bot"`, 1), nil, []string{"bot.user_id"}},
		{"short pickle key", strings.Replace(valid, "0123456789abcdef0123", "short", 1), nil, []string{"encryption.pickle_key"}},
		{"bad allowed user", valid + "access:\n  users: [alice]\n", nil, []string{"access.users[0]"}},
		{"empty allowed server", valid + "access:\n  servers: ['']\n", nil, []string{"access.servers[0]"}},
		{"bad prefix", valid + "commands:\n  prefix: ''\n", nil, []string{"commands.prefix"}},
		{"bad listen", valid + "http:\n  listen: nowhere\n", nil, []string{"http.listen"}},
		{"bad db path", valid + "database:\n  path: 'a?b'\n", nil, []string{"database.path"}},
		{"bad log level", valid + "logging:\n  level: loud\n", nil, []string{"logging.level"}},
		{"bad log format", valid + "logging:\n  format: xml\n", nil, []string{"logging.format"}},
		{"appservice without url", valid + "mode: appservice\nappservice:\n  url: ''\n", nil, []string{"appservice.url"}},
		{"appservice bad to_device", valid + "mode: appservice\nappservice:\n  to_device: carrier-pigeon\n", nil,
			[]string{"appservice.to_device"}},
		{"malformed yaml", "homeserver: [", nil, []string{"config.yaml"}},
		{"port out of range", valid + "media:\n  udp_mux_port: 70000\n", nil, []string{"media.udp_mux_port"}},
		{"half a port range", valid + "media:\n  udp_port_min: 40000\n", nil, []string{"media.udp_port_min, media.udp_port_max: set both or neither"}},
		{"bad public ip", valid + "media:\n  public_ips: [example.com]\n", nil, []string{"media.public_ips[0]"}},
		{"bad env port", valid, []string{"VOIPBOT_MEDIA_UDP_MUX_PORT=-1"}, []string{"VOIPBOT_MEDIA_UDP_MUX_PORT: media.udp_mux_port", "0 to 65535"}},
		{"unknown env var", valid, []string{"VOIPBOT_HOMESERVER_URI=https://x"}, []string{"VOIPBOT_HOMESERVER_URI: no config key"}},
		{"bad env bool", valid, []string{"VOIPBOT_ENCRYPTION_ENABLED=perhaps"}, []string{"VOIPBOT_ENCRYPTION_ENABLED: encryption.enabled"}},
		{"bad env duration", valid, []string{"VOIPBOT_ENCRYPTION_KEY_WAIT=later"}, []string{"VOIPBOT_ENCRYPTION_KEY_WAIT"}},
		{"env file missing", valid, []string{"VOIPBOT_BOT_PASSWORD_FILE=/nonexistent/secret"}, []string{"VOIPBOT_BOT_PASSWORD_FILE: reading bot.password"}},
		{"env file for a non-text key", valid, []string{"VOIPBOT_ENCRYPTION_ENABLED_FILE=/etc/hostname"}, []string{"VOIPBOT_ENCRYPTION_ENABLED_FILE"}},
		{"env value and file both", valid, []string{"VOIPBOT_BOT_PASSWORD=a", "VOIPBOT_BOT_PASSWORD_FILE=/etc/hostname"},
			[]string{"bot.password is already set by VOIPBOT_BOT_PASSWORD"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "config.yaml", tc.env)
			require.Error(t, err)
			for _, want := range tc.want {
				require.Contains(t, err.Error(), want)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "password")
	require.NoError(t, os.WriteFile(secret, []byte("s3cret\n"), 0o600))
	cfg, err := Parse([]byte(valid), "config.yaml", []string{
		"VOIPBOT_HOMESERVER_URL=https://other.test",
		"VOIPBOT_BOT_PASSWORD_FILE=" + secret,
		"VOIPBOT_ACCESS_USERS=@a:x, @b:y,",
		"VOIPBOT_ENCRYPTION_ENABLED=false",
		"VOIPBOT_ENCRYPTION_KEY_WAIT=3s",
		"VOIPBOT_HOMESERVER_SYNC_STALE_AFTER=35s",
		"VOIPBOT_MODE=appservice",
		"VOIPBOT_MEDIA_UDP_MUX_PORT=3478",
		"VOIPBOT_MEDIA_PUBLIC_IPS=192.0.2.1",
		"HOME=/root", // other variables are none of ours
	})
	require.NoError(t, err)
	require.Equal(t, "https://other.test", cfg.Matrix.Homeserver.URL)
	require.Equal(t, "s3cret", cfg.Matrix.Bot.Password, "the trailing newline of a secret file is dropped")
	require.Equal(t, []id.UserID{"@a:x", "@b:y"}, cfg.Matrix.Access.Users)
	require.False(t, cfg.Matrix.Encryption.Enabled)
	require.Equal(t, 3*time.Second, cfg.Matrix.Encryption.KeyWait)
	require.Equal(t, 35*time.Second, cfg.Matrix.Homeserver.SyncStaleAfter, "the shortest allowed")
	require.Equal(t, matrix.ModeAppservice, cfg.Matrix.Mode)
	require.EqualValues(t, 3478, cfg.Media.UDPMuxPort)
	require.Equal(t, []string{"192.0.2.1"}, cfg.Media.PublicIPs)
}

func TestSyncStaleAfterFromFile(t *testing.T) {
	cfg, err := Parse([]byte(strings.Replace(valid, "url: https://hs.test", "url: https://hs.test\n  sync_stale_after: 2m", 1)), "config.yaml", nil)
	require.NoError(t, err)
	require.Equal(t, 2*time.Minute, cfg.Matrix.Homeserver.SyncStaleAfter)
}

func TestEnvCanReplacePlaceholders(t *testing.T) {
	_, err := Parse(nil, "config.yaml", []string{
		"VOIPBOT_HOMESERVER_URL=https://hs.test",
		"VOIPBOT_BOT_USER_ID=@bot:hs.test",
		"VOIPBOT_ENCRYPTION_PICKLE_KEY=0123456789abcdef",
	})
	require.NoError(t, err, "a deployment may configure everything from the environment")
}

func TestPickleKeyPlaceholderIgnoredWithoutEncryption(t *testing.T) {
	yaml := strings.Replace(valid, "0123456789abcdef0123", "generate", 1) + "  enabled: false\n"
	_, err := Parse([]byte(yaml), "config.yaml", nil)
	require.NoError(t, err)
}

func TestWriteExampleGeneratesSecretsAndRefusesOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, WriteExample(path))
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the config holds secrets")

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(data), "pickle_key: generate")
	require.Contains(t, string(data), "# Take part in end-to-end encrypted rooms", "comments are kept")

	_, err = Load(path, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "homeserver.url")
	require.Contains(t, err.Error(), "bot.user_id")
	require.NotContains(t, err.Error(), "pickle_key", "the generated key is not a placeholder")

	other := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, WriteExample(other))
	otherData, err := os.ReadFile(other)
	require.NoError(t, err)
	require.NotEqual(t, string(data), string(otherData), "each written config gets its own key")

	require.ErrorContains(t, WriteExample(path), "already exists")
}

func TestAccessPolicy(t *testing.T) {
	bot := id.UserID("@bot:home.test")
	cases := []struct {
		name   string
		access matrix.AccessConfig
		user   id.UserID
		want   bool
	}{
		{"own server by default", matrix.AccessConfig{}, "@alice:home.test", true},
		{"other server refused by default", matrix.AccessConfig{}, "@eve:evil.test", false},
		{"listed user", matrix.AccessConfig{Users: []id.UserID{"@bob:far.test"}}, "@bob:far.test", true},
		{"listing users drops the default", matrix.AccessConfig{Users: []id.UserID{"@bob:far.test"}}, "@alice:home.test", false},
		{"listed server", matrix.AccessConfig{Servers: []string{"far.test"}}, "@carol:far.test", true},
		{"wildcard server", matrix.AccessConfig{Servers: []string{"*"}}, "@eve:evil.test", true},
		{"malformed user", matrix.AccessConfig{Servers: []string{"*"}}, "nobody", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.access.Allowed(bot, tc.user))
		})
	}
}
