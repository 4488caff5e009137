package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/prosody"
	"github.com/voipbot/voipbot/internal/testbed/qbclient"
)

// The QuickBlox test bed: one Prosody (internal/testbed/prosody) for the
// package's tests, started on first use and stopped by runMain
// (closeXMPPBed), and users of the real QuickBlox JS SDK in Chromium
// (internal/testbed/qbclient), one browser each (the fake microphone is
// per process), each logged in as a fresh QuickBlox user of application
// qbAppID. Every bot of these tests has a fresh QuickBlox id of its own
// too, so that no test sees another's signals.

// qbAppID is the QuickBlox application of every account.
const qbAppID = 77

// The SDK users' tones: none is 440 Hz (the bot's tone) or a harmonic of
// it, nor of toneMatrix (the Matrix user's) or of each other.
const (
	toneQB     = 700
	toneQB2    = 990
	toneMatrix = 550
)

var (
	xmppMu     sync.Mutex
	sharedXMPP *prosody.Server
	// qbSeq hands out QuickBlox user ids: the first bot is 1000, as in
	// the README's example.
	qbSeq atomic.Uint64
)

func init() { qbSeq.Store(999) }

// xmppServer is the package's Prosody, started on first use.
func xmppServer(tb testing.TB) *prosody.Server {
	tb.Helper()
	xmppMu.Lock()
	defer xmppMu.Unlock()
	if sharedXMPP != nil {
		return sharedXMPP
	}
	start := time.Now()
	srv, err := prosody.Start(ctxFor(tb), prosody.Options{})
	// No prosody is a failure, not a skip: CI installs it.
	require.NoError(tb, err, "starting Prosody")
	fmt.Fprintf(os.Stderr, "Prosody ready (c2s %s, %s) in %s\n", srv.C2SAddr(), srv.WebSocketURL(), time.Since(start).Round(time.Millisecond))
	sharedXMPP = srv
	return srv
}

// closeXMPPBed stops Prosody if a test started it (from runMain).
func closeXMPPBed() error {
	xmppMu.Lock()
	defer xmppMu.Unlock()
	if sharedXMPP == nil {
		return nil
	}
	err := sharedXMPP.Close()
	sharedXMPP = nil
	return err
}

// qbAccount registers a fresh QuickBlox user on the package's Prosody and
// returns its id and password.
func qbAccount(tb testing.TB, suffix string) (uint64, string) {
	tb.Helper()
	srv := xmppServer(tb)
	uid := qbSeq.Add(1)
	password := fmt.Sprintf("pw%d-%s", uid, suffix)
	require.NoError(tb, srv.Register(ctxFor(tb), prosody.QuickBloxNode(uid, qbAppID), password))
	return uid, password
}

// qbJID is the bare JID of QuickBlox user uid.
func qbJID(uid uint64) string {
	return prosody.QuickBloxNode(uid, qbAppID) + "@" + prosody.DefaultDomain
}

// newQBUser registers a fresh QuickBlox user and logs it in with the SDK,
// in a browser of its own whose microphone plays hz (and with a fake
// camera); it holds incoming calls for the test to decide. It is closed
// at the end of the test.
func newQBUser(tb testing.TB, hz float64) *qbclient.Client {
	tb.Helper()
	uid, password := qbAccount(tb, "sdk")
	srv := xmppServer(tb)
	// npm ci and the SDK's tarball on a cold machine take minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := qbclient.Launch(ctx, qbclient.Options{
		WebSocketURL: srv.WebSocketURL(), Domain: srv.Domain(), AppID: qbAppID,
		UserID: uid, Password: password, ToneHz: hz, Video: true, Test: tb,
	})
	require.NoError(tb, err, "launching the QuickBlox SDK as user %d", uid)
	return c
}

// xmppBot is a bot logged in to the package's Prosody as a QuickBlox
// user of its own.
type xmppBot struct {
	setup *botSetup
	bot   *testbed.Bot
	// id is the bot's QuickBlox user id.
	id uint64
}

// xmppSection is the bot's xmpp config section for QuickBlox id uid;
// allow is xmpp.allow.
func xmppSection(srv *prosody.Server, uid uint64, password string, allow []string) string {
	quoted := make([]string, len(allow))
	for i, a := range allow {
		quoted[i] = strconv.Quote(a)
	}
	return fmt.Sprintf(`xmpp:
  enabled: true
  jid: %q
  password: %q
  server: %q
  allow_plaintext: true
  name: "voipbot"
  allow: [%s]
  default_room: ""
  ring_timeout: 60s
`, qbJID(uid), password, srv.C2SAddr(), strings.Join(quoted, ", "))
}

// startXMPPBot starts a bot with call media on loopback, its default
// source calls.source = source, logged in to Prosody as a fresh QuickBlox
// user (its password is one of the secrets its log must not hold), and
// waits until it is logged in there. logLevel "" keeps newBotSetup's
// (trace); allow is xmpp.allow, default "*".
func startXMPPBot(tb testing.TB, source, logLevel string, allow ...string) *xmppBot {
	tb.Helper()
	srv := xmppServer(tb)
	uid, password := qbAccount(tb, "bot")
	if len(allow) == 0 {
		allow = []string{"*"}
	}
	setup := newBotSetup(tb, hs, callMedia+"calls:\n  source: "+source+"\n"+xmppSection(srv, uid, password, allow))
	setup.Secrets = append(setup.Secrets, password)
	if logLevel != "" {
		cfg, err := os.ReadFile(setup.Config)
		require.NoError(tb, err)
		require.NoError(tb, os.WriteFile(setup.Config, []byte(strings.Replace(string(cfg), "level: trace", "level: "+logLevel, 1)), 0o600))
	}
	bot := setup.start(tb)
	waitMetric(tb, bot, "voipbot_xmpp_connected 1")
	return &xmppBot{setup: setup, bot: bot, id: uid}
}

// jid is the bot's bare JID.
func (xb *xmppBot) jid() string { return qbJID(xb.id) }

// metricSample is one sample of the bot's /metrics.
type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads Prometheus' text format (no escapes in the values:
// the bot's labels have none).
func parseMetrics(text string) []metricSample {
	var out []metricSample
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			continue
		}
		s := metricSample{name: series, labels: map[string]string{}, value: v}
		if name, labels, ok := strings.Cut(series, "{"); ok {
			s.name = name
			for pair := range strings.SplitSeq(strings.TrimSuffix(labels, "}"), ",") {
				k, val, ok := strings.Cut(pair, "=")
				if ok {
					s.labels[k] = strings.Trim(val, `"`)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// signalCount is voipbot_xmpp_signals_total for result, of signal type
// typ, or of every type if typ is "".
func signalCount(metrics, result, typ string) float64 {
	var n float64
	for _, s := range parseMetrics(metrics) {
		if s.name == "voipbot_xmpp_signals_total" && s.labels["result"] == result && (typ == "" || s.labels["type"] == typ) {
			n += s.value
		}
	}
	return n
}

// signalCountNow reads signalCount from the bot's /metrics now.
func signalCountNow(tb testing.TB, bot *testbed.Bot, result, typ string) float64 {
	tb.Helper()
	metrics, err := bot.Metrics()
	require.NoError(tb, err)
	return signalCount(metrics, result, typ)
}

// waitSignals waits until voipbot_xmpp_signals_total for result (and typ,
// unless "") is at least n, and returns it.
func waitSignals(tb testing.TB, bot *testbed.Bot, result, typ string, n float64) float64 {
	tb.Helper()
	var last string
	var got float64
	err := testbed.WaitFor(ctxFor(tb), func() (bool, error) {
		metrics, err := bot.Metrics()
		if err != nil {
			return false, nil
		}
		last = metrics
		got = signalCount(metrics, result, typ)
		return got >= n, nil
	})
	require.NoErrorf(tb, err, "voipbot_xmpp_signals_total{result=%q,type=%q} did not reach %v (it is %v):\n%s", result, typ, n, got, xmppMetricLines(last))
	return got
}

// xmppMetricLines are the lines of metrics about QuickBlox and bridges,
// for failure messages.
func xmppMetricLines(metrics string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(metrics, "\n") {
		if strings.HasPrefix(line, "voipbot_xmpp_") || strings.HasPrefix(line, "voipbot_bridge") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// qbSignal builds a WebRTCVideoChat signal as the SDK sends it, for
// SendRaw: fields are the children of extraParams after moduleIdentifier
// (raw XML), extra what goes in the message before extraParams.
func qbSignal(to, msgID, extra, fields string) string {
	return fmt.Sprintf(`<message xmlns="jabber:client" to="%s" type="headline" id="%s">%s`+
		`<extraParams xmlns="jabber:client"><moduleIdentifier>WebRTCVideoChat</moduleIdentifier>%s`+
		`</extraParams></message>`, to, msgID, extra, fields)
}

// qbCallFields are the fields of a call signal (an SDP the bot can parse,
// though no media follows it).
func qbCallFields(session, callerID string, opponent uint64) string {
	return fmt.Sprintf(`<signalType>call</signalType><sessionID>%s</sessionID><callType>2</callType>`+
		`<callerID>%s</callerID><opponentsIDs><opponentID>%d</opponentID></opponentsIDs>`+
		`<userInfo><name>Hand</name></userInfo><sdp>v=0&#10;o=- 1 2 IN IP4 127.0.0.1&#10;s=-&#10;t=0 0&#10;</sdp><platform>web</platform>`,
		session, callerID, opponent)
}

// waitQBClosed waits until an SDK session has closed.
func waitQBClosed(tb testing.TB, s *qbclient.Session) {
	tb.Helper()
	_, err := s.WaitState(jsCtx(tb), qbclient.StateClosed)
	require.NoError(tb, err)
}

// waitQBConnected waits until an SDK session is connected and logs its
// setup (placed or ringing to connected, browser clock).
func waitQBConnected(tb testing.TB, s *qbclient.Session) {
	tb.Helper()
	_, err := s.WaitState(jsCtx(tb), qbclient.StateConnected)
	require.NoError(tb, err)
	tb.Logf("%s session %s (%s) of %s connected %s after it was placed/rang",
		s.Direction(), s.ID(), callTypeName(s.CallType()), s.Client().Name(), s.Times().Setup().Round(time.Millisecond))
}

func callTypeName(t qbclient.CallType) string {
	if t == qbclient.CallVideo {
		return "video"
	}
	return "audio"
}

// requireQBHears waits until the SDK session's remote audio has hz as its
// dominant frequency.
func requireQBHears(tb testing.TB, s *qbclient.Session, hz int) {
	tb.Helper()
	mix, err := s.WaitRemoteTone(jsCtx(tb), float64(hz), toneTolerance)
	require.NoErrorf(tb, err, "%s hears %d Hz", s.Client().Name(), hz)
	tb.Logf("%s hears %s", s.Client().Name(), mix.Dominant)
}

// endQB hangs up an SDK session still open at the end of a test (a live
// session makes the SDK refuse the next call) and waits until it closed.
func endQB(tb testing.TB, s *qbclient.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, closed := s.Reached(qbclient.StateClosed); !closed {
		_, accepted := s.Reached(qbclient.StateAccepted)
		if s.Direction() == qbclient.Incoming && !accepted {
			_ = s.Reject(ctx, nil)
		} else {
			_ = s.Hangup(ctx, nil)
		}
	}
	if _, err := s.WaitState(ctx, qbclient.StateClosed); err != nil {
		tb.Errorf("the session %s of %s did not close: %v", s.ID(), s.Client().Name(), err)
	}
}
