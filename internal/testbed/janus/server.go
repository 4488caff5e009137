//go:build linux

// Package janus runs a real Janus WebRTC server (Debian's janus 1.1.2) on
// this machine for benchmarks, and drives its echotest plugin over the Janus
// HTTP API.
//
// Janus runs inside a network namespace of its own (see internal/testbed/netns),
// reached over a veth pair, because it cannot do ICE over 127.0.0.1 and the
// project's tests use no address of the machine's real network:
//
//   - Janus never gathers candidates on a loopback interface: its
//     janus_ice_setup_local skips every interface flagged IFF_LOOPBACK before
//     the enforce list is consulted, and when it adds no address at all,
//     libnice falls back to nice_interfaces_get_local_ips(FALSE), which skips
//     loopback too. ice_enforce_list = "lo" thus makes Janus gather on every
//     other interface.
//   - A client on 127.0.0.1 cannot use Janus's candidate on another local
//     address either: libnice (0.1.21, udp-bsd.c) pins each host-candidate
//     socket to its interface with IP_UNICAST_IF, so Janus's packets to
//     127.0.0.1 leave on that interface and are lost.
//
// Inside the namespace Janus gathers on its end of the veth pair; clients
// use the other end (ConfigureClient).
//
// The package is Linux-only: Janus here is the Debian package, and the server
// is tied to its parent with PR_SET_PDEATHSIG so that a killed benchmark or a
// timed-out test does not leave Janus running.
package janus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/voipbot/voipbot/internal/testbed/netns"
	"github.com/voipbot/voipbot/internal/testbed/proc"
)

// Binary is the Janus executable Start runs (Debian's janus package).
const Binary = "/usr/bin/janus"

// EchoTestPlugin is the package name of Janus's echotest plugin.
const EchoTestPlugin = "janus.plugin.echotest"

const (
	// echotestLibrary and httpLibrary are the only shared objects Janus
	// loads; every other plugin and transport in the install is disabled.
	echotestLibrary = "libjanus_echotest.so"
	httpLibrary     = "libjanus_http.so"

	// startTimeout bounds how long Start waits for the HTTP API.
	startTimeout = 30 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	// logTailBytes is how much of each log LogTail returns.
	logTailBytes = 4000
)

// Server is a running Janus.
type Server struct {
	// URL is the base URL of the Janus HTTP API, on the namespace's end of
	// the veth pair.
	URL string
	// ICEAddress is the address Janus gathers its ICE host candidates on
	// (the namespace's end of the veth pair); ClientAddress is the one its
	// clients use (this side's end).
	ICEAddress, ClientAddress string

	logPath string // Janus's own log (log_to_file)
	outPath string // stdout and stderr: errors before the logger starts, crashes
	proc    *proc.Process

	stopOnce sync.Once
	stopErr  error
}

// installDirs are the folders of the Debian install Janus loads its shared
// objects from.
type installDirs struct {
	Plugins, Transports, Events, Loggers string
}

// findInstall locates the Debian install's library folders. They live under
// the multiarch triplet (x86_64-linux-gnu, aarch64-linux-gnu, …), so the
// folder holding the echotest plugin is looked up rather than hard-coded.
func findInstall() (installDirs, error) {
	matches, err := filepath.Glob(filepath.Join("/usr/lib/*/janus/plugins", echotestLibrary))
	if err != nil {
		return installDirs{}, fmt.Errorf("looking for the Janus plugins folder: %w", err)
	}
	if len(matches) == 0 {
		return installDirs{}, fmt.Errorf("no %s under /usr/lib/*/janus/plugins: is Debian's janus package installed?", echotestLibrary)
	}
	root := filepath.Dir(filepath.Dir(matches[0]))
	return installDirs{
		Plugins:    filepath.Join(root, "plugins"),
		Transports: filepath.Join(root, "transports"),
		Events:     filepath.Join(root, "events"),
		Loggers:    filepath.Join(root, "loggers"),
	}, nil
}

// disableAllBut lists the shared objects in folder that Janus would load
// (names ending in .so, the versioned symlinks are skipped by Janus too)
// except keep, comma separated as the "disable" settings want them. Janus
// has no allow list, only this deny list.
func disableAllBut(folder, keep string) (string, error) {
	entries, err := os.ReadDir(folder)
	if err != nil {
		return "", fmt.Errorf("listing %s: %w", folder, err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".so") && e.Name() != keep {
			names = append(names, e.Name())
		}
	}
	return strings.Join(names, ","), nil
}

// janusConfig is janus.jcfg. Comments say why a setting is there; the stock
// /etc/janus/janus.jcfg documents each option.
var janusConfig = template.Must(template.New("janus.jcfg").Parse(`general: {
	configs_folder = {{printf "%q" .Dir}}
	plugins_folder = {{printf "%q" .Install.Plugins}}
	transports_folder = {{printf "%q" .Install.Transports}}
	events_folder = {{printf "%q" .Install.Events}}
	loggers_folder = {{printf "%q" .Install.Loggers}}
	log_to_stdout = false
	log_to_file = {{printf "%q" .LogPath}}
	# 4 (info) logs a few lines per handle: enough to see ICE and DTLS
	# progress when a benchmark call fails, cheap next to the media.
	debug_level = 4
	debug_timestamps = true
	debug_colors = false
	server_name = "voipbot-bench"
	session_timeout = 60
	# A plugin or transport that fails to load stops Janus instead of
	# leaving it half working.
	exit_on_dl_error = true
}

# No certificates: Janus generates a self-signed one at start, which is
# all WebRTC needs.
certificates: {
}

media: {
	# Hundreds of concurrent PeerConnections each take a port.
	rtp_port_range = "20000-60000"
}

nat: {
	nice_debug = false
	# The namespace's end of the veth pair: the only address Janus may use
	# (it skips loopback whatever this says; see the package comment).
	ice_enforce_list = {{printf "%q" .ICEAddress}}
	# The clients never send .local candidates; do not try to resolve any.
	ignore_mdns = true
}

plugins: {
	disable = {{printf "%q" .DisabledPlugins}}
}

transports: {
	disable = {{printf "%q" .DisabledTransports}}
}

loggers: {
	disable = {{printf "%q" .DisabledLoggers}}
}

events: {
	broadcast = false
}
`))

// httpConfig is janus.transport.http.jcfg: plain HTTP on the namespace's
// veth address only, no admin API.
var httpConfig = template.Must(template.New("janus.transport.http.jcfg").Parse(`general: {
	events = false
	json = "compact"
	base_path = "/janus"
	http = true
	port = {{.Port}}
	ip = {{printf "%q" .IP}}
	https = false
	# A load generator keeps a long poll per session open next to its
	# requests; the default limit of 1020 is too close for 400 sessions.
	mhd_connection_limit = 4096
}

admin: {
	admin_http = false
	admin_https = false
}
`))

// echotestConfig is janus.plugin.echotest.jcfg.
const echotestConfig = `general: {
	events = false
}
`

// Start runs Janus inside link's namespace, with its configuration and logs
// in dir (which must exist and is written to, never /etc/janus), and
// returns once the HTTP API answers. Stop it with Stop.
func Start(dir string, link *netns.Link) (*Server, error) {
	if _, err := os.Stat(Binary); err != nil {
		return nil, fmt.Errorf("janus is not installed (apt-get install janus): %w", err)
	}
	install, err := findInstall()
	if err != nil {
		return nil, err
	}
	disabledPlugins, err := disableAllBut(install.Plugins, echotestLibrary)
	if err != nil {
		return nil, fmt.Errorf("configuring Janus plugins: %w", err)
	}
	disabledTransports, err := disableAllBut(install.Transports, httpLibrary)
	if err != nil {
		return nil, fmt.Errorf("configuring Janus transports: %w", err)
	}
	// A missing loggers folder is fine for Janus; then there is nothing to
	// disable.
	disabledLoggers, _ := disableAllBut(install.Loggers, "")
	if link == nil {
		return nil, errors.New("janus needs a network namespace (it cannot use loopback)")
	}
	iceAddr := link.NSIP
	// The namespace is fresh: any port is free there.
	const port = 8088

	s := &Server{
		URL:           fmt.Sprintf("http://%s:%d/janus", link.NSIP, port),
		ICEAddress:    iceAddr,
		ClientAddress: link.HostIP,
		logPath:       filepath.Join(dir, "janus.log"),
		outPath:       filepath.Join(dir, "janus.out"),
	}
	configPath := filepath.Join(dir, "janus.jcfg")
	files := []struct {
		name string
		tmpl *template.Template
		data any
	}{
		{"janus.jcfg", janusConfig, map[string]any{
			"Dir": dir, "Install": install, "LogPath": s.logPath, "ICEAddress": iceAddr,
			"DisabledPlugins": disabledPlugins, "DisabledTransports": disabledTransports, "DisabledLoggers": disabledLoggers,
		}},
		{"janus.transport.http.jcfg", httpConfig, map[string]any{"Port": port, "IP": link.NSIP}},
	}
	for _, f := range files {
		var buf bytes.Buffer
		if err = f.tmpl.Execute(&buf, f.data); err != nil {
			return nil, fmt.Errorf("rendering %s: %w", f.name, err)
		}
		if err = os.WriteFile(filepath.Join(dir, f.name), buf.Bytes(), 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.name, err)
		}
	}
	if err = os.WriteFile(filepath.Join(dir, "janus.plugin.echotest.jcfg"), []byte(echotestConfig), 0o600); err != nil {
		return nil, fmt.Errorf("writing janus.plugin.echotest.jcfg: %w", err)
	}

	// --config names the file explicitly so that Janus fails instead of
	// falling back to defaults when it cannot parse it; --configs-folder is
	// where the plugin and transport read theirs.
	cmd := link.Command(Binary, "--config="+configPath, "--configs-folder="+dir)
	cmd.Dir = dir
	// Janus goes when the process that started it goes, even on SIGKILL or
	// a test timeout, instead of holding its ports and threads (proc sets
	// PR_SET_PDEATHSIG).
	if s.proc, err = proc.Start(cmd, proc.Options{Name: "janus", LogPath: s.outPath, Grace: stopTimeout}); err != nil {
		return nil, err
	}
	if err = s.waitReady(startTimeout); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls GET {URL}/info until Janus answers with its server info,
// the process exits, or timeout passes (see proc.Process.WaitUntil: Janus
// usually needs a fraction of a second, and there is no event to wait on).
func (s *Server) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	err := s.proc.WaitUntil(ctx, func(ctx context.Context) (bool, error) { return s.infoAnswers(ctx, client) })
	if err != nil {
		return fmt.Errorf("janus did not answer %s/info within %s: %w\n%s", s.URL, timeout, err, s.LogTail())
	}
	return nil
}

// infoAnswers reports whether GET {URL}/info returns Janus's server info.
func (s *Server) infoAnswers(ctx context.Context, client *http.Client) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/info", nil)
	if err != nil {
		return false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET /info: HTTP %s", resp.Status)
	}
	var info struct {
		Janus string `json:"janus"`
	}
	if err = json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return false, fmt.Errorf("decoding GET /info: %w", err)
	}
	if info.Janus != "server_info" {
		return false, fmt.Errorf("GET /info answered %q, want server_info", info.Janus)
	}
	return true, nil
}

// ConfigureClient confines a pion client's ICE to this side's end of the
// veth pair (ClientAddress), over UDP/IPv4 and without mDNS, so that its only
// candidate pair crosses the veth pair to Janus.
func (s *Server) ConfigureClient(se *webrtc.SettingEngine) {
	addr := net.ParseIP(s.ClientAddress)
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(addr) })
	se.SetIncludeLoopbackCandidate(false)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// PID is the Janus process id.
func (s *Server) PID() int {
	if s.proc == nil {
		return 0
	}
	return s.proc.PID()
}

// Stop asks Janus to shut down (SIGTERM, which Janus handles like ^C), kills
// it if it is still running after 10 s, and waits for it to exit. It reports
// an error if Janus had to be killed or exited abnormally, since that hides a
// crash a benchmark should hear about. Stop is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.proc == nil {
			return
		}
		err := s.proc.Stop()
		switch {
		case errors.Is(err, proc.ErrKilled):
			s.stopErr = fmt.Errorf("janus did not stop within %s of SIGTERM and was killed:\n%s", stopTimeout, s.LogTail())
		case err != nil:
			s.stopErr = fmt.Errorf("janus exited abnormally: %w\n%s", err, s.LogTail())
		}
	})
	return s.stopErr
}

// LogTail is the end of Janus's output and log, for failure messages. The
// output file holds what Janus prints before its logger starts (a bad
// configuration) and what the C runtime prints on a crash.
func (s *Server) LogTail() string {
	var b strings.Builder
	for _, p := range []string{s.outPath, s.logPath} {
		data, err := os.ReadFile(p)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if len(data) > logTailBytes {
			data = data[len(data)-logTailBytes:]
		}
		fmt.Fprintf(&b, "--- %s ---\n%s\n", filepath.Base(p), data)
	}
	return b.String()
}
