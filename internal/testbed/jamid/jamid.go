//go:build linux

// Package jamid runs Debian's jami-daemon (jamid 13.7.0, "Jami Daemon
// 13.7.0", package 20230206.0~ds2-1.1+deb12u1) headless for tests, and
// drives it over D-Bus with github.com/godbus/dbus/v5. It is the reference
// Jami peer the project's own Jami code (jami/) is tested against, the way
// internal/testbed/dhtnode is for OpenDHT.
//
// # What Start sets up
//
//   - A folder (Options.Dir or a temporary one) with a private HOME and XDG
//     folders (jamid keeps its configuration in $XDG_CONFIG_HOME/jami and its
//     accounts in $XDG_DATA_HOME/jami), and a ~/.asoundrc whose default ALSA
//     device is the null device: PulseAudio is not running and ALSA has no
//     card, and without an audio device jamid sends no RTP.
//   - A private dbus-daemon listening on <folder>/bus, from a session
//     configuration without <servicedir>: on the machine's own session bus
//     Debian's cx.ring.Ring.service would let any call to cx.ring.Ring
//     auto-start a second jamid.
//   - /usr/libexec/jamid -c -d -p (console log, debug, stay alive without
//     clients) inside a network namespace with IPv4 only (see DisableIPv6:
//     Debian's pjlib 2.12.1 hangs forever on Linux ≥ 6.9 when the namespace
//     has any IPv6 address) and a veth pair (pjnath gathers no candidate on
//     loopback only). The namespace is Options.Link, typically a
//     dhtnode.Network's, so that jamid and Debian's dhtnode share a local
//     DHT, or one of the daemon's own.
//
// Start returns once jamid owns the bus name cx.ring.Ring and answers a
// method call (0.1–0.4 s). Nothing leaves the machine: accounts made with
// LoopbackAccount bootstrap from a local DHT node only and have TURN, STUN,
// UPnP, peer discovery and the name server off.
//
// # Addresses
//
// jamid binds its DHT and ICE sockets on every address of the namespace:
// IP() (the namespace's end of the veth pair), reachable from the test
// process, whose end is HostIP(). A dhtnode of the same namespace is at
// NodeIP:port for both jamid and Go. The D-Bus socket is a file, so the test
// process reaches it from its own namespace.
//
// # Signals and log
//
// The Daemon records every signal jamid emits (it connects to the bus
// before jamid starts; the history survives Restart), so waits cannot miss a signal that came
// before they started: WaitRegistered, WaitCallState, WaitIncomingCall, …
// look at the whole history. jamid's output (stdout and stderr, without
// terminal colour codes) is kept in memory and in <folder>/jamid.log: Log,
// LogTail, WaitLogLine.
//
// # Looking up an account on the DHT
//
// There is no D-Bus method that asks the DHT for an account: lookupAddress
// and searchUser go to the name server, and sendTrustRequest/addContact
// report nothing to the sender. FindAccount places an audio call and reads
// jamid's verdict from the call and its log (see FindAccount). FindCertificate
// looks up a certificate (a device's) by its public key id with
// pinRemoteCertificate.
//
// Everything needs root (network namespaces), iproute2, dbus-daemon and
// Debian's jami-daemon (apt-get install dbus jami-daemon).
package jamid

import (
	"context"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/voipbot/voipbot/internal/testbed/netns"
	"github.com/voipbot/voipbot/internal/testbed/proc"
)

const (
	// Binary is the daemon Start runs (Debian's jami-daemon package).
	Binary = "/usr/libexec/jamid"
	// DBusDaemon is the message bus Start runs for jamid alone.
	DBusDaemon = "/usr/bin/dbus-daemon"
	// BusName is the name jamid owns on its bus.
	BusName = "cx.ring.Ring"

	// The D-Bus interfaces of jamid used here; the object of interface
	// cx.ring.Ring.X is /cx/ring/Ring/X. The XML is in
	// /usr/share/dbus-1/interfaces/.
	ConfigurationManager = "cx.ring.Ring.ConfigurationManager"
	CallManager          = "cx.ring.Ring.CallManager"
	Instance             = "cx.ring.Ring.Instance"
	VideoManager         = "cx.ring.Ring.VideoManager"
)

const (
	// stopGrace is how long Stop waits for jamid to quit after SIGTERM
	// (it takes about 2 s) before it kills it.
	stopGrace = 10 * time.Second
	// busStopGrace is the same for dbus-daemon.
	busStopGrace = 2 * time.Second
	// maxSocketPath is the longest path of a unix socket (sun_path).
	maxSocketPath = 107
)

var (
	// ErrExited is wrapped by the errors of waits that ended because jamid
	// exited (a crash: Stop and Restart do not count).
	ErrExited = errors.New("jamid exited")
	// ErrStopped: the Daemon has been stopped.
	ErrStopped = errors.New("the jamid daemon has been stopped")
)

// Options say where and how Start runs jamid.
type Options struct {
	// Link is the network namespace to run jamid in, for example the Link
	// of a dhtnode.Network, so that jamid and dhtnode share a local DHT;
	// Start turns IPv6 off in it (DisableIPv6). Several daemons can share a
	// namespace. Nil: a namespace of the daemon's own (internal/testbed/netns),
	// which Stop deletes.
	Link *netns.Link
	// Dir is the daemon's folder: HOME, the XDG folders, the bus socket and
	// the logs. It must be short enough for a unix socket path (about 100
	// bytes). "": a new temporary folder, which Stop removes (a given Dir
	// is kept).
	Dir string
	// Log, if set, receives jamid's output too, a line per Write, without
	// terminal colour codes. It is written from another goroutine until
	// Stop returns.
	Log io.Writer
	// AutoAnswer runs jamid with --auto-answer: it answers every incoming
	// call of every account. (Account.autoAnswer=true does it for one
	// account.)
	AutoAnswer bool
	// CaptureToneHz, if set, makes ALSA's default capture device a sine
	// of that frequency (half of full scale, 48 kHz, looped for
	// captureToneSeconds), so that jamid's calls carry a known tone from
	// its "microphone". jamid 13.7.0 cannot play a file:// audio source in
	// a call: AudioInput opens the file before its loop runs, and the
	// decoder's interrupt callback (not capturing) aborts the open
	// ("avformat_open_input failed: Immediate exit requested"); it then
	// falls back to the default device, this one.
	CaptureToneHz float64
	// RecordPlayback makes ALSA's default playback device write what
	// jamid plays (the call's decoded audio) to a file, converted to
	// 48 kHz mono S16_LE, so that a test can check the content jamid
	// decoded: see Playback and WaitHears.
	RecordPlayback bool
}

// alsaConfig is the .asoundrc: the null device for playback and capture,
// the control device left to ALSA's default (no card: jamid only warns).
// With a tone, capture is ALSA's file plugin over the null device, which
// replaces what is read by the file's samples (48 kHz mono S16_LE),
// converted by plug to whatever jamid asks for; the null device paces
// reads as it does without the tone. With a recording, playback is the
// file plugin over the null device too, behind plug converting to 48 kHz
// mono S16_LE (the file plugin writes what passes, in the stream's own
// format, and truncates the file at each opening).
func alsaConfig(tone bool, toneFile string, record bool, recordFile string) string {
	if !tone && !record {
		return "pcm.!default { type null }\nctl.!default { type hw card 0 }\n"
	}
	playback, capture := "nullout", "nullout"
	conf := "pcm.nullout { type null }\nctl.!default { type hw card 0 }\n"
	if tone {
		capture = "tone"
		conf += "pcm.tone { type plug slave { pcm \"tonefile\" rate 48000 channels 1 format S16_LE } }\n" +
			"pcm.tonefile { type file slave.pcm \"nullout\" file \"/dev/null\" infile \"" + toneFile + "\" format \"raw\" }\n"
	}
	if record {
		playback = "record"
		conf += "pcm.record { type plug slave { pcm \"recordfile\" rate 48000 channels 1 format S16_LE } }\n" +
			"pcm.recordfile { type file slave.pcm \"nullout\" file \"" + recordFile + "\" format \"raw\" }\n"
	}
	return "pcm.!default { type asym playback.pcm \"" + playback + "\" capture.pcm \"" + capture + "\" }\n" + conf
}

// captureToneSeconds is how long the capture tone lasts: ALSA's file
// plugin reads it once per opening of the device (each call), then gives
// silence.
const captureToneSeconds = 300

// Daemon is a running jamid with its private bus.
type Daemon struct {
	opts    Options
	link    *netns.Link
	ownLink bool
	dir     string
	ownDir  bool
	ip      netip.Addr
	hostIP  netip.Addr
	busAddr string

	bus  *proc.Process // dbus-daemon
	conn *dbus.Conn
	sigs *signalLog
	log  *logBuffer

	mu          sync.Mutex
	jamid       *proc.Process
	procChanged chan struct{} // closed (and replaced) when jamid is replaced
	owner       string        // the unique bus name of the jamid that answered last
	crashErr    error         // why a jamid exited by itself, if one did
	consumed    map[string]bool

	stopped  chan struct{}
	stopOnce sync.Once
	stopErr  error
}

// startProcess starts cmd through internal/testbed/proc: it goes when the
// test process goes, even on SIGKILL or a test timeout (ip netns exec execs
// jamid, which keeps the death signal), and is reaped at once. Stop sends
// SIGTERM and kills it after grace.
func startProcess(cmd *exec.Cmd, name string, grace time.Duration) (*proc.Process, error) {
	return proc.Start(cmd, proc.Options{Name: name, Grace: grace})
}

// Installed reports what Start needs and is missing, with how to install it.
func Installed() error {
	var missing []string
	for _, bin := range []string{Binary, DBusDaemon} {
		if _, err := os.Stat(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (iproute2)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s (apt-get install --no-install-recommends jami-daemon dbus iproute2)",
			strings.Join(missing, ", "))
	}
	return nil
}

// Start runs a private dbus-daemon and jamid as described in the package
// documentation, and returns once jamid answers on the bus, or fails when
// ctx ends first. Stop it with Stop.
func Start(ctx context.Context, opts Options) (*Daemon, error) {
	if err := Installed(); err != nil {
		return nil, err
	}
	d := &Daemon{
		opts: opts, link: opts.Link, dir: opts.Dir,
		sigs: newSignalLog(), consumed: map[string]bool{}, stopped: make(chan struct{}),
		procChanged: make(chan struct{}),
	}
	ok := false
	defer func() {
		if !ok {
			_ = d.Stop()
		}
	}()
	if d.dir == "" {
		dir, err := os.MkdirTemp("", "jamid-")
		if err != nil {
			return nil, fmt.Errorf("creating the jamid folder: %w", err)
		}
		d.dir, d.ownDir = dir, true
	}
	if err := d.prepareDir(); err != nil {
		return nil, err
	}
	if d.link == nil {
		link, err := netns.Create()
		if err != nil {
			return nil, err
		}
		d.link, d.ownLink = link, true
	}
	var err1, err2 error
	d.ip, err1 = netip.ParseAddr(d.link.NSIP)
	d.hostIP, err2 = netip.ParseAddr(d.link.HostIP)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("the namespace's addresses: %w", err)
	}
	if err := DisableIPv6(d.link); err != nil {
		return nil, err
	}
	logFile, err := os.Create(d.LogPath())
	if err != nil {
		return nil, fmt.Errorf("creating jamid's log: %w", err)
	}
	d.log = newLogBuffer(logFile, opts.Log)
	if err := d.startBus(ctx); err != nil {
		return nil, err
	}
	if err := d.startJamid(ctx); err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// prepareDir makes the private HOME, XDG folders, .asoundrc and the bus
// configuration.
func (d *Daemon) prepareDir() error {
	sock := filepath.Join(d.dir, "bus")
	if len(sock) > maxSocketPath || strings.ContainsAny(sock, ",;=%'\"\\ \t\n") {
		return fmt.Errorf("the bus socket path %q is too long or has characters D-Bus addresses escape: use a shorter Options.Dir", sock)
	}
	for _, sub := range []string{"home/.config", "home/.local/share", "home/.cache", "run"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o700); err != nil {
			return fmt.Errorf("creating the jamid folders: %w", err)
		}
	}
	// The default PCM is the null device; the control device is left to
	// ALSA's default (no card: jamid only warns).
	asound := alsaConfig(d.opts.CaptureToneHz != 0, filepath.Join(d.dir, "tone.raw"), d.opts.RecordPlayback, d.playbackPath())
	if hz := d.opts.CaptureToneHz; hz != 0 {
		if err := writeRawTone(filepath.Join(d.dir, "tone.raw"), hz, captureToneSeconds); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(d.dir, "home", ".asoundrc"), []byte(asound), 0o600); err != nil {
		return fmt.Errorf("writing .asoundrc: %w", err)
	}
	var esc strings.Builder
	if err := xml.EscapeText(&esc, []byte(sock)); err != nil {
		return err
	}
	// No <servicedir> and no <standard_session_servicedirs/>: nothing is
	// ever auto-started on this bus.
	conf := `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=` + esc.String() + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`
	if err := os.WriteFile(filepath.Join(d.dir, "bus.conf"), []byte(conf), 0o600); err != nil {
		return fmt.Errorf("writing the bus configuration: %w", err)
	}
	return nil
}

// writeRawTone writes seconds of a sine of hz at half of full scale as raw
// 48 kHz mono S16_LE samples.
func writeRawTone(path string, hz float64, seconds int) error {
	const rate = 48000
	if hz <= 0 || hz >= rate/2 {
		return fmt.Errorf("a capture tone of %g Hz cannot be sampled at %d Hz", hz, rate)
	}
	b := make([]byte, 2*rate*seconds)
	for i := range rate * seconds {
		v := int16(math.Round(0.5 * math.MaxInt16 * math.Sin(2*math.Pi*hz*float64(i)/rate)))
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing the capture tone: %w", err)
	}
	return nil
}

// startBus runs dbus-daemon, waits for the address it prints once it
// listens, and connects to it.
func (d *Daemon) startBus(ctx context.Context) error {
	errLog, err := os.Create(filepath.Join(d.dir, "dbus-daemon.log"))
	if err != nil {
		return fmt.Errorf("creating dbus-daemon's log: %w", err)
	}
	defer errLog.Close()
	cmd := exec.Command(DBusDaemon, "--config-file="+filepath.Join(d.dir, "bus.conf"),
		"--nofork", "--nopidfile", "--print-address")
	cmd.Dir = d.dir
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + filepath.Join(d.dir, "home"), "LANG=C.UTF-8"}
	cmd.Stderr = errLog
	// Its standard output is captured: the address is its first line.
	if d.bus, err = startProcess(cmd, "dbus-daemon", busStopGrace); err != nil {
		return err
	}
	d.busAddr, err = d.bus.WaitLine(ctx, func(line string) bool { return strings.TrimSpace(line) != "" })
	d.busAddr = strings.TrimSpace(d.busAddr)
	if err != nil {
		if !d.bus.Running() {
			data, _ := os.ReadFile(errLog.Name())
			return fmt.Errorf("dbus-daemon exited during start (%w): %s", exitError(d.bus.ExitErr()), strings.TrimSpace(string(data)))
		}
		return fmt.Errorf("dbus-daemon did not start: %w", err)
	}
	d.conn, err = dbus.Connect(d.busAddr, dbus.WithSignalHandler(d.sigs))
	if err != nil {
		return fmt.Errorf("connecting to the private bus %s: %w", d.busAddr, err)
	}
	for _, match := range [][]dbus.MatchOption{
		{dbus.WithMatchInterface(ConfigurationManager)},
		{dbus.WithMatchInterface(CallManager)},
		{dbus.WithMatchInterface(VideoManager)},
		{dbus.WithMatchInterface(Instance)},
		{dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, BusName)},
	} {
		if err := d.conn.AddMatchSignalContext(ctx, match...); err != nil {
			return fmt.Errorf("subscribing to jamid's signals: %w", err)
		}
	}
	return nil
}

// startJamid runs jamid in the namespace and waits until it answers.
func (d *Daemon) startJamid(ctx context.Context) error {
	home := filepath.Join(d.dir, "home")
	args := []string{"-c", "-d", "-p"}
	if d.opts.AutoAnswer {
		args = append(args, "--auto-answer")
	}
	cmd := d.link.Command(Binary, args...)
	cmd.Dir = home
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local/share"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
		"XDG_RUNTIME_DIR=" + filepath.Join(d.dir, "run"),
		"DBUS_SESSION_BUS_ADDRESS=" + d.busAddr,
		// Never a PulseAudio server of the machine, and no autospawn:
		// jamid falls back to ALSA's null device.
		"PULSE_SERVER=unix:" + filepath.Join(d.dir, "run", "no-pulse"),
		"LANG=C.UTF-8",
	}
	cmd.Stdout = d.log
	cmd.Stderr = d.log
	p, err := startProcess(cmd, "jamid", stopGrace)
	if err != nil {
		return fmt.Errorf("in namespace %s: %w", d.link.Name, err)
	}
	d.mu.Lock()
	d.jamid = p
	close(d.procChanged)
	d.procChanged = make(chan struct{})
	d.mu.Unlock()
	go func() {
		<-p.Exited()
		if !p.Stopping() {
			d.mu.Lock()
			d.crashErr = fmt.Errorf("%w by itself: %w", ErrExited, exitError(p.ExitErr()))
			d.mu.Unlock()
		}
	}()
	if err := d.waitReady(ctx, p); err != nil {
		return err
	}
	if d.opts.CaptureToneHz != 0 {
		// The WebRTC audio processor's noise suppression takes a steady
		// tone for noise and removes most of it; AGC would change its
		// level.
		if err := errors.Join(
			d.noReply(ctx, ConfigurationManager, "setNoiseSuppressState", "no"),
			d.noReply(ctx, ConfigurationManager, "setAgcState", false),
		); err != nil {
			return fmt.Errorf("turning jamid's audio processing off for the capture tone: %w", err)
		}
	}
	return nil
}

// waitReady waits until a jamid other than the previous one owns the bus
// name and answers getAccountList (it owns the name before its main loop
// runs). It waits for NameOwnerChanged signals, not by polling.
func (d *Daemon) waitReady(ctx context.Context, p *proc.Process) error {
	d.mu.Lock()
	prev := d.owner
	d.mu.Unlock()
	from := 0
	lastErr := errors.New("no owner yet")
	for {
		var sigs []Signal
		var changed <-chan struct{}
		sigs, changed = d.sigs.after(from)
		from += len(sigs)
		var owner string
		err := d.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&owner)
		if err == nil && owner != prev {
			var accounts []string
			if err = d.method(ctx, ConfigurationManager, "getAccountList").Store(&accounts); err == nil {
				d.mu.Lock()
				d.owner = owner
				d.mu.Unlock()
				return nil
			}
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-changed:
		case <-p.Exited():
			return fmt.Errorf("jamid exited during start (%w):\n%s", exitError(p.ExitErr()), d.LogTail(4000))
		case <-ctx.Done():
			return fmt.Errorf("jamid did not take the bus name %s (last: %w): %w\n%s", BusName, lastErr, ctx.Err(), d.LogTail(4000))
		}
	}
}

// Restart stops jamid (SIGTERM) and starts it again with the same folder,
// bus and namespace: its accounts come back and register again. Tests use
// it after a crash (jamid 13.7.0 crashes now and then during call
// teardown). The signal history and the log go on.
func (d *Daemon) Restart(ctx context.Context) error {
	select {
	case <-d.stopped:
		return ErrStopped
	default:
	}
	_ = d.current().Stop()
	d.mu.Lock()
	d.crashErr = nil
	d.mu.Unlock()
	d.log.mark("--- jamid restarted ---")
	return d.startJamid(ctx)
}

// current is the jamid process now.
func (d *Daemon) current() *proc.Process {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.jamid
}

// currentAndChanged is the jamid process now, and a channel closed when
// another replaces it.
func (d *Daemon) currentAndChanged() (*proc.Process, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.jamid, d.procChanged
}

// Stop quits jamid (SIGTERM, then SIGKILL after 10 s) and dbus-daemon,
// closes the bus connection, and removes what Start made: the namespace if
// it was the daemon's own, the folder if it was a temporary one. It returns
// an error if jamid had exited by itself before (a crash). Stop is safe to
// call more than once.
func (d *Daemon) Stop() error {
	d.stopOnce.Do(func() {
		close(d.stopped)
		var errs []error
		if p := d.current(); p != nil {
			_ = p.Stop()
		}
		d.mu.Lock()
		if d.crashErr != nil {
			errs = append(errs, d.crashErr)
		}
		d.mu.Unlock()
		if d.conn != nil {
			_ = d.conn.Close()
		}
		if d.bus != nil {
			_ = d.bus.Stop()
		}
		if d.log != nil {
			if err := d.log.close(); err != nil {
				errs = append(errs, fmt.Errorf("writing jamid's log: %w", err))
			}
		}
		if d.ownLink {
			errs = append(errs, d.link.Delete())
		}
		if d.ownDir {
			if err := os.RemoveAll(d.dir); err != nil {
				errs = append(errs, err)
			}
		}
		d.stopErr = errors.Join(errs...)
	})
	return d.stopErr
}

// IP is the namespace's end of the veth pair: jamid's address.
func (d *Daemon) IP() netip.Addr { return d.ip }

// HostIP is the test process's end of the veth pair.
func (d *Daemon) HostIP() netip.Addr { return d.hostIP }

// Link is the namespace jamid runs in.
func (d *Daemon) Link() *netns.Link { return d.link }

// Dir is the daemon's folder (HOME is Dir/home).
func (d *Daemon) Dir() string { return d.dir }

// BusAddress is the private bus's address (unix:path=Dir/bus,guid=…).
func (d *Daemon) BusAddress() string { return d.busAddr }

// Conn is the test process's connection to the private bus, for calls this
// package has no method for.
func (d *Daemon) Conn() *dbus.Conn { return d.conn }

// PID is the process id of the running jamid.
func (d *Daemon) PID() int {
	if p := d.current(); p != nil {
		return p.PID()
	}
	return 0
}

// BusPID is dbus-daemon's process id.
func (d *Daemon) BusPID() int {
	if d.bus != nil {
		return d.bus.PID()
	}
	return 0
}

// Exited is closed once the running jamid has exited (it is replaced by
// Restart).
func (d *Daemon) Exited() <-chan struct{} { return d.current().Exited() }

// Err is why jamid exited by itself (a crash), or nil while it runs or
// after it was stopped or restarted on purpose.
func (d *Daemon) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.crashErr
}

// exitError is cmd.Wait's error, or one saying the exit was clean.
func exitError(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}
