package elementcall

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestServerRoutes checks the routes EC's standalone build needs, on a
// dist of its own (no npm install needed).
func TestServerRoutes(t *testing.T) {
	dist := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dist, "assets"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dist, "index.html"), []byte("<html>ec</html>"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dist, "assets", "index-x.js"), []byte("export {}"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dist, "assets", "crypto.wasm"), []byte("\x00asm"), 0o644))
	srv, err := StartServer(ServerOptions{
		Dist: dist, HomeserverURL: "http://127.0.0.1:1", LiveKitServiceURL: "http://127.0.0.1:2",
		KeyRotationWait: 3 * time.Second, Extra: map[string]any{"features": map[string]bool{"x": true}},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })

	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}
	for _, path := range []string{"/", "/room/", "/room/anything", "/index.html"} {
		code, typ, body := get(path)
		require.Equal(t, http.StatusOK, code, path)
		require.Equal(t, "<html>ec</html>", body, path)
		require.Contains(t, typ, "text/html", path)
	}
	for _, path := range []string{"/assets/index-x.js", "/room/assets/index-x.js", "/a/b/assets/index-x.js"} {
		code, typ, body := get(path)
		require.Equal(t, http.StatusOK, code, path)
		require.Equal(t, "export {}", body, path)
		require.Contains(t, typ, "text/javascript", path)
	}
	code, typ, _ := get("/assets/crypto.wasm")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "application/wasm", typ)
	// Only files of assets/ itself: no directories, nothing above it.
	for _, path := range []string{"/assets/missing.js", "/assets/", "/assets/..", "/assets/../index.html"} {
		code, _, _ = get(path)
		require.Equal(t, http.StatusNotFound, code, path)
	}
	for _, path := range []string{"/config.json", "/room/config.json"} {
		code, typ, body := get(path)
		require.Equal(t, http.StatusOK, code, path)
		require.Equal(t, "application/json", typ)
		var cfg map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &cfg))
		require.Equal(t, map[string]any{
			"default_server_config": map[string]any{"m.homeserver": map[string]any{"base_url": "http://127.0.0.1:1", "server_name": "localhost"}},
			"livekit":               map[string]any{"livekit_service_url": "http://127.0.0.1:2"},
			"matrix_rtc_session":    map[string]any{"wait_for_key_rotation_ms": float64(3000)},
			"features":              map[string]any{"x": true},
		}, cfg)
	}
	require.Equal(t, srv.URL+"/room/#?password=s3cret&roomId=%21abc%3Alocalhost", srv.RoomURL("!abc:localhost", "s3cret"))
	require.Equal(t, srv.URL+"/room/#?roomId=%21abc%3Alocalhost", srv.RoomURL("!abc:localhost", ""))
}
