package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// runCLI runs cli in dir and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, dir string, environ []string, args ...string) (int, string, string) {
	t.Helper()
	t.Chdir(dir)
	stdout, err := os.CreateTemp(t.TempDir(), "stdout")
	require.NoError(t, err)
	stderr, err := os.CreateTemp(t.TempDir(), "stderr")
	require.NoError(t, err)
	code := cli(args, environ, stdout, stderr)
	out, err := os.ReadFile(stdout.Name())
	require.NoError(t, err)
	errOut, err := os.ReadFile(stderr.Name())
	require.NoError(t, err)
	return code, string(out), string(errOut)
}

// writeConfig writes a valid config.yaml into dir, with extra YAML appended.
func writeConfig(t *testing.T, dir, extra string) {
	t.Helper()
	cfg := "homeserver:\n  url: https://hs.example.org\nbot:\n  user_id: \"@voipbot:example.org\"\n" +
		"encryption:\n  pickle_key: 0123456789abcdef0123\n" + extra
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600))
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, t.TempDir(), nil, "-v")
	require.Equal(t, 0, code)
	require.Contains(t, out, "voipbot dev")
}

func TestWriteExampleFlag(t *testing.T) {
	dir := t.TempDir()
	code, out, _ := runCLI(t, dir, nil, "-e", "my.yaml")
	require.Equal(t, 0, code)
	require.Contains(t, out, "my.yaml")
	require.FileExists(t, filepath.Join(dir, "my.yaml"))
	code, _, errOut := runCLI(t, dir, nil, "-e", "my.yaml")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "already exists")

	code, _, _ = runCLI(t, dir, nil, "-c", "other.yaml", "-e")
	require.Equal(t, 0, code)
	require.FileExists(t, filepath.Join(dir, "other.yaml"), "without a path, -e writes to the -c path")
}

func TestFirstStartWritesConfigAndSaysWhatToFill(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runCLI(t, dir, nil)
	require.Equal(t, 1, code)
	require.FileExists(t, filepath.Join(dir, "config.yaml"))
	require.Contains(t, errOut, "wrote the example to config.yaml")
	require.Contains(t, errOut, "homeserver.url")
	require.Contains(t, errOut, "bot.user_id")
	require.Contains(t, errOut, "bot.password")
	require.NotContains(t, errOut, "pickle_key", "the pickle key was generated")

	code, _, errOut = runCLI(t, dir, nil)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "Invalid configuration in config.yaml")
	require.Contains(t, errOut, "homeserver.url: still the example's placeholder")
}

func TestInvalidFlagAndArguments(t *testing.T) {
	code, _, _ := runCLI(t, t.TempDir(), nil, "-nope")
	require.Equal(t, 2, code)
	code, _, errOut := runCLI(t, t.TempDir(), nil, "stray")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "Usage")
}

func TestGenerateRegistrationFlag(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "")
	code, out, errOut := runCLI(t, dir, nil, "-g")
	require.Equalf(t, 0, code, "stderr: %s", errOut)
	require.Contains(t, out, "registration.yaml")
	require.Contains(t, out, "set it to appservice", "the config still says mode: user")
	data, err := os.ReadFile(filepath.Join(dir, "registration.yaml"))
	require.NoError(t, err)
	var reg map[string]any
	require.NoError(t, yaml.Unmarshal(data, &reg))
	require.Equal(t, "voipbot", reg["sender_localpart"])
	require.Equal(t, true, reg["receive_ephemeral"])

	code, _, errOut = runCLI(t, dir, []string{"VOIPBOT_APPSERVICE_URL=not a url"}, "-g")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "appservice.url")
}

func TestHealthcheckFlag(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/health", r.URL.Path)
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"ready":false}`))
			return
		}
		_, _ = w.Write([]byte(`{"ready":true}`))
	}))
	defer srv.Close()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)

	dir := t.TempDir()
	writeConfig(t, dir, "http:\n  listen: 0.0.0.0:"+port+"\n")
	code, out, _ := runCLI(t, dir, nil, "-healthcheck")
	require.Equal(t, 1, code)
	require.Contains(t, out, `"ready":false`)
	ready.Store(true)
	code, _, _ = runCLI(t, dir, nil, "-healthcheck")
	require.Equal(t, 0, code, "the wildcard listen address is reached on loopback")

	srv.Close()
	code, _, errOut := runCLI(t, dir, nil, "-healthcheck")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not answering")
}
