package elementcall

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// ServerOptions configure StartServer.
type ServerOptions struct {
	// Dist is Element Call's dist/; default Dist(JSDir()), which Prepare
	// (or Launch) installs.
	Dist string
	// HomeserverURL is the client-server API base URL Element Call logs in
	// to (config.json default_server_config m.homeserver base_url).
	HomeserverURL string
	// ServerName is the homeserver's server name; default "localhost"
	// (the test bed's).
	ServerName string
	// LiveKitServiceURL is the JWT service Element Call asks for LiveKit
	// tokens (POST <url>/sfu/get) and advertises in its membership
	// (livekit.livekit_service_url).
	LiveKitServiceURL string
	// KeyRotationWait is matrix_rtc_session.wait_for_key_rotation_ms: how
	// long a member keeps using its old media key after a rotation; default
	// 5 s, as Element Call's shipped config.json.
	KeyRotationWait time.Duration
	// Extra holds more top-level config.json entries (they replace the
	// generated ones of the same name).
	Extra map[string]any
}

// Server serves Element Call's standalone web application on loopback, as
// a deployment would: every path is the application (index.html), a path
// with /assets/ in it is that file of dist/assets (Element Call loads them
// relative to the page, e.g. /room/assets/…), and any path ending in
// config.json is the generated configuration (Element Call asks for
// /config.json, even under /room/). http://127.0.0.1 is a secure context,
// as getUserMedia and WebRTC need.
type Server struct {
	// URL is the application's base URL, http://127.0.0.1:<port>.
	URL string
	// Config is the generated config.json.
	Config []byte

	dist string
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// StartServer serves Element Call on a free port of 127.0.0.1 until Close.
func StartServer(opts ServerOptions) (*Server, error) {
	if opts.Dist == "" {
		opts.Dist = Dist(JSDir())
	}
	if opts.HomeserverURL == "" || opts.LiveKitServiceURL == "" {
		return nil, errors.New("elementcall: the server needs a homeserver URL and a LiveKit JWT service URL")
	}
	if opts.ServerName == "" {
		opts.ServerName = "localhost"
	}
	if opts.KeyRotationWait == 0 {
		opts.KeyRotationWait = 5 * time.Second
	}
	index, err := os.ReadFile(filepath.Join(opts.Dist, "index.html"))
	if err != nil {
		return nil, fmt.Errorf("elementcall: Element Call's dist (run Prepare first): %w", err)
	}
	cfg := map[string]any{
		"default_server_config": map[string]any{
			"m.homeserver": map[string]any{"base_url": opts.HomeserverURL, "server_name": opts.ServerName},
		},
		"livekit":            map[string]any{"livekit_service_url": opts.LiveKitServiceURL},
		"matrix_rtc_session": map[string]any{"wait_for_key_rotation_ms": opts.KeyRotationWait.Milliseconds()},
	}
	for k, v := range opts.Extra {
		cfg[k] = v
	}
	s := &Server{dist: opts.Dist, done: make(chan struct{})}
	if s.Config, err = json.Marshal(cfg); err != nil {
		return nil, fmt.Errorf("elementcall: the config: %w", err)
	}
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("elementcall: %w", err)
	}
	s.URL = "http://" + s.ln.Addr().String()
	s.srv = &http.Server{Handler: s.handler(index), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(s.ln)
	}()
	return s, nil
}

func (s *Server) handler(index []byte) http.Handler {
	// Served once per page load, without caching, so that a change of
	// the build under a running server is not masked.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := r.URL.Path
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case strings.HasSuffix(p, "config.json"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(s.Config)
		case strings.Contains(p, "/assets/"):
			name := path.Base(p)
			if name == "." || name == "/" || name == ".." {
				http.NotFound(w, r)
				return
			}
			f, err := os.Open(filepath.Join(s.dist, "assets", name))
			if err != nil {
				http.NotFound(w, r)
				return
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil || st.IsDir() {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", contentType(name))
			http.ServeContent(w, r, name, st.ModTime(), f)
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(index)
		}
	})
}

// contentType is a file's type by extension: JavaScript modules and
// WebAssembly must be served as such (strict MIME checks), whatever the
// system's mime tables say.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".wasm":
		return "application/wasm"
	case ".css":
		return "text/css; charset=utf-8"
	case ".json", ".map":
		return "application/json"
	case ".svg":
		return "image/svg+xml"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// RoomURL is the address that opens room roomID in Element Call
// (/room/#?roomId=…), with password for shared-key media encryption ("" for
// none: the room's own encryption then decides, see Browser.Join).
func (s *Server) RoomURL(roomID, password string) string {
	return RoomURL(s.URL, roomID, password)
}

// RoomURL is RoomURL of an Element Call served at base.
func RoomURL(base, roomID, password string) string {
	q := url.Values{"roomId": {roomID}}
	if password != "" {
		q.Set("password", password)
	}
	return strings.TrimSuffix(base, "/") + "/room/#?" + q.Encode()
}

// Close stops serving.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}
