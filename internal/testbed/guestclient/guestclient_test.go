package guestclient_test

import (
	"context"
	"flag"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/transport/v4/test"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/guestclient"
)

var screenshotPath = flag.String("screenshot", "", "TestScreenshot writes its screenshot of the call page in a connected call to this PNG file (make screenshot)")

const (
	// guestHz is the guests' microphone tone (the bot's is botToneHz).
	guestHz       = 660.0
	toneTolerance = 15.0
	// testBudget bounds a test: the first launch may run npm ci.
	testBudget = 5 * time.Minute
	// callTitle is the call's name in the bot's hello.
	callTitle = "Team stand-up"
)

// uuidPattern is a version 4 UUID, as the page makes session ids.
var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testBudget)
	t.Cleanup(cancel)
	return ctx
}

// launch starts a guest for t, closed (with its artifacts written) when t
// ends, and checks then that its page logged no error other than those
// matching allowed.
func launch(t *testing.T, opts guestclient.Options, allowed ...*regexp.Regexp) *guestclient.Guest {
	t.Helper()
	if opts.ToneHz == 0 {
		opts.ToneHz = guestHz
	}
	opts.Logf = t.Logf
	opts.ArtifactsDir = t.ArtifactDir()
	opts.Test = t
	g, err := guestclient.Launch(ctxFor(t), opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, l := range g.ConsoleErrors() {
			ok := false
			for _, re := range allowed {
				ok = ok || re.MatchString(l.Text)
			}
			if !ok {
				t.Errorf("%s: a console error: %s", g.Name(), l)
			}
		}
	})
	return g
}

// connect opens the call page, joins, and has the bot accept as peer once
// the page rings: the call is connected when it returns.
func connect(t *testing.T, ctx context.Context, bot *fakeBot, g *guestclient.Guest, peer string) *botSession {
	t.Helper()
	status, title, err := g.Open(ctx, bot.URL(goodToken))
	require.NoError(t, err)
	require.Equal(t, 200, status)
	require.Contains(t, []string{"Call", callTitle}, title, "the page's title, until hello and after")
	return join(t, ctx, bot, g, peer)
}

// join joins on the open page and has the bot accept.
func join(t *testing.T, ctx context.Context, bot *fakeBot, g *guestclient.Guest, peer string) *botSession {
	t.Helper()
	require.NoError(t, g.Join(ctx))
	s := bot.NextSession(ctx)
	ringing, err := g.WaitState(ctx, guestclient.StateRinging)
	require.NoError(t, err)
	s.Accept(ctx, peer)
	answered, err := g.WaitState(ctx, guestclient.StateAnswered)
	require.NoError(t, err)
	connected, err := g.WaitState(ctx, guestclient.StateConnected)
	require.NoError(t, err)
	require.False(t, answered.Before(ringing), "answered after ringing")
	require.False(t, connected.Before(answered), "connected after answered")
	return s
}

// checkCall checks the guest's call message.
func checkCall(t *testing.T, s *botSession, name string, callType int) {
	t.Helper()
	c := s.Call
	require.Regexp(t, uuidPattern, c.SessionID)
	require.Equal(t, callType, c.CallType)
	require.Equal(t, map[string]string{"name": name}, c.UserInfo)
	require.Contains(t, c.SDP, "m=audio")
	require.Contains(t, c.SDP, "a=candidate:", "ICE gathering completes at once without STUN: the offer holds the candidates")
	require.Equal(t, callType == 1, strings.Contains(c.SDP, "m=video"))
}

func TestAudioCall(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	ctx := ctxFor(t)
	bot := newFakeBot(t, false, callTitle)
	g := launch(t, guestclient.Options{Name: "Ada Lovelace"})

	s := connect(t, ctx, bot, g, "Alice (Matrix)")
	checkCall(t, s, "Ada Lovelace", 2)
	v := g.View()
	require.Equal(t, callTitle, v.Title)
	require.Equal(t, "Alice (Matrix)", v.Peer)
	require.Equal(t, "In call with Alice (Matrix)", v.Status)
	require.False(t, v.Video)

	// What the guest hears is the bot's tone, through its <audio>; what
	// the bot gets is the guest's audio.
	mix, err := g.WaitRemoteTone(ctx, botToneHz, toneTolerance)
	require.NoError(t, err, "%s", mix)
	s.WaitMedia(ctx, false)

	// The quality readout, from getStats every 2 s.
	q, err := g.WaitStats(ctx, func(q guestclient.Quality) bool {
		return q.HasRTT && q.HasLoss && q.HasBitrates && q.InKbps > 10 && q.OutKbps > 10
	})
	require.NoError(t, err)
	require.Less(t, q.RTT, time.Second, "on one machine")
	require.Less(t, q.LossPercent, 5.0)
	q2, err := g.Stats(ctx)
	require.NoError(t, err)
	require.True(t, q2.HasBitrates)

	require.NoError(t, g.Hangup(ctx))
	require.Empty(t, s.WaitHangUp(ctx), "hangUp's userInfo is empty")
	require.NoError(t, s.WaitClosed(ctx))
	require.Equal(t, guestclient.End{Reason: "local", Text: "You hung up"}, g.EndReason())
}

func TestVideoCall(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	ctx := ctxFor(t)
	bot := newFakeBot(t, true, callTitle)
	g := launch(t, guestclient.Options{Name: "Grace", Video: true})

	s := connect(t, ctx, bot, g, "Alice")
	checkCall(t, s, "Grace", 1)
	require.True(t, g.View().Video)
	w, h, err := g.WaitRemoteVideo(ctx)
	require.NoError(t, err)
	require.Equal(t, [2]int{320, 240}, [2]int{w, h}, "the bot's test pattern")
	_, err = g.WaitView(ctx, "remote video shown", func(v guestclient.View) bool { return v.RemoteVideo })
	require.NoError(t, err)
	s.WaitMedia(ctx, true)
	_, err = g.WaitRemoteTone(ctx, botToneHz, toneTolerance)
	require.NoError(t, err)

	require.NoError(t, g.CameraOff(ctx, true))
	require.Equal(t, map[string]string{"audio_muted": "false", "video_muted": "true"}, s.WaitUpdate(ctx))
	require.NoError(t, g.CameraOff(ctx, false))
	require.Equal(t, map[string]string{"audio_muted": "false", "video_muted": "false"}, s.WaitUpdate(ctx))

	// The other side turns its camera off.
	s.Update(ctx, false, true)
	require.NoError(t, g.WaitRemoteMuted(ctx, false, true))
}

// A guest without a camera in a video call: it offers to receive video
// and says, once answered, that its camera is off.
func TestVideoCallWithoutCamera(t *testing.T) {
	ctx := ctxFor(t)
	bot := newFakeBot(t, true, callTitle)
	g := launch(t, guestclient.Options{Name: "Linus"})

	s := connect(t, ctx, bot, g, "Alice")
	checkCall(t, s, "Linus", 1)
	video := s.Call.SDP[strings.Index(s.Call.SDP, "m=video"):]
	require.Contains(t, video, "a=recvonly")
	require.Equal(t, map[string]string{"audio_muted": "false", "video_muted": "true"}, s.WaitUpdate(ctx))
	_, _, err := g.WaitRemoteVideo(ctx)
	require.NoError(t, err)
	require.True(t, g.View().VideoMuted)
}

// hello's iceServers reach the page's peer connection; a candidate found
// after the page's 2 s cap on gathering is trickled after the call, and the
// call connects all the same.
func TestICEServersAndTrickle(t *testing.T) {
	ctx := ctxFor(t)
	stunServer := newSlowSTUN(t, 3*time.Second)
	bot := newFakeBotWith(t, map[string]any{"video": false, "title": callTitle, "iceServers": []map[string]any{{"urls": stunServer.URL()}}})
	g := launch(t, guestclient.Options{Name: "Ada"})
	_, _, err := g.Open(ctx, bot.URL(goodToken))
	require.NoError(t, err)
	require.NoError(t, g.Join(ctx))
	s := bot.NextSession(ctx)
	starting, ok := g.StateTime(guestclient.StateStarting)
	require.True(t, ok)
	ringing, err := g.WaitState(ctx, guestclient.StateRinging)
	require.NoError(t, err)
	waited := ringing.Sub(starting)
	require.Greater(t, waited, 1500*time.Millisecond, "the page waited for gathering")
	require.NotContains(t, s.Call.SDP, "typ srflx", "but not for the slow server: its answer came after the call")

	c := s.WaitTrickled(ctx)
	require.Contains(t, c, "typ srflx")
	require.Contains(t, c, "127.0.0.2")
	s.Accept(ctx, "Alice")
	_, err = g.WaitState(ctx, guestclient.StateConnected)
	require.NoError(t, err)
}

// The name field takes the protocol's 64 characters at most (maxlength),
// and the name goes trimmed.
func TestLongName(t *testing.T) {
	ctx := ctxFor(t)
	bot := newFakeBot(t, false, callTitle)
	long := "  Ärzte-Übersetzerin " + strings.Repeat("é", 60) + "  "
	g := launch(t, guestclient.Options{Name: long})
	_, _, err := g.Open(ctx, bot.URL(goodToken))
	require.NoError(t, err)
	require.NoError(t, g.Join(ctx))
	s := bot.NextSession(ctx)
	typed := string([]rune(long)[:64]) // every character here is one UTF-16 unit
	require.Equal(t, strings.TrimSpace(typed), s.Call.UserInfo["name"])
	require.LessOrEqual(t, len([]rune(s.Call.UserInfo["name"])), 64)
}

func TestMute(t *testing.T) {
	ctx := ctxFor(t)
	bot := newFakeBot(t, false, callTitle)
	g := launch(t, guestclient.Options{Name: "Ada"})
	s := connect(t, ctx, bot, g, "Alice")

	require.NoError(t, g.Mute(ctx, true))
	require.Equal(t, map[string]string{"audio_muted": "true", "video_muted": "true"}, s.WaitUpdate(ctx), "no video in an audio call")
	require.NoError(t, g.Mute(ctx, false))
	require.Equal(t, map[string]string{"audio_muted": "false", "video_muted": "true"}, s.WaitUpdate(ctx))

	audio, video := g.RemoteMuted()
	require.False(t, audio)
	require.False(t, video)
	s.Update(ctx, true, false)
	require.NoError(t, g.WaitRemoteMuted(ctx, true, false))
	s.Update(ctx, false, false)
	require.NoError(t, g.WaitRemoteMuted(ctx, false, false))
}

// Every way the bot ends a call, and what the page says for it; one guest
// for all (a page per case).
func TestEndReasons(t *testing.T) {
	tests := []struct {
		name      string
		connected bool // end it after accept (else while ringing)
		end       func(ctx context.Context, s *botSession)
		want      guestclient.End
	}{
		{"declined", false, func(ctx context.Context, s *botSession) { s.Reject(ctx, "declined", "Nobody answered in the room") },
			guestclient.End{Reason: "declined", Text: "Nobody took the call", Detail: "Nobody answered in the room"}},
		{"busy", false, func(ctx context.Context, s *botSession) { s.Reject(ctx, "busy", "") },
			guestclient.End{Reason: "busy", Text: "The line is busy"}},
		{"no answer", false, func(ctx context.Context, s *botSession) { s.Reject(ctx, "no_answer", "Rang for 60 s") },
			guestclient.End{Reason: "no_answer", Text: "No answer", Detail: "Rang for 60 s"}},
		{"hangup", true, func(ctx context.Context, s *botSession) { s.HangUp(ctx, "hangup", "Alice hung up") },
			guestclient.End{Reason: "hangup", Text: "The call ended", Detail: "Alice hung up"}},
		{"failed", true, func(ctx context.Context, s *botSession) { s.HangUp(ctx, "failed", "The Matrix side lost its media") },
			guestclient.End{Reason: "failed", Text: "The call failed", Detail: "The Matrix side lost its media"}},
		{"shutdown", true, func(ctx context.Context, s *botSession) { s.HangUp(ctx, "shutdown", "Back in a minute") },
			guestclient.End{Reason: "shutdown", Text: "The bot is restarting", Detail: "Back in a minute"}},
		{"unknown reason", true, func(ctx context.Context, s *botSession) { s.HangUp(ctx, "gone fishing", "") },
			guestclient.End{Reason: "hangup", Text: "The call ended"}},
		{"error", true, func(ctx context.Context, s *botSession) {
			s.Fail(ctx, "message too big", websocket.StatusMessageTooBig)
		}, guestclient.End{Reason: "error", Text: "Something went wrong", Detail: "message too big"}},
		{"socket closed", true, func(_ context.Context, s *botSession) { s.Drop() },
			guestclient.End{Reason: "lost", Text: "The connection to the call was lost"}},
		{"detail is text", false, func(ctx context.Context, s *botSession) {
			s.Reject(ctx, "declined", "<b>no</b> & <script>x()</script>")
		},
			guestclient.End{Reason: "declined", Text: "Nobody took the call", Detail: "<b>no</b> & <script>x()</script>"}},
	}
	g := launch(t, guestclient.Options{Name: "Ada"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxFor(t)
			bot := newFakeBot(t, false, callTitle)
			status, _, err := g.Open(ctx, bot.URL(goodToken))
			require.NoError(t, err)
			require.Equal(t, 200, status)
			var s *botSession
			if tt.connected {
				s = join(t, ctx, bot, g, "Alice")
			} else {
				require.NoError(t, g.Join(ctx))
				s = bot.NextSession(ctx)
				_, err = g.WaitState(ctx, guestclient.StateRinging)
				require.NoError(t, err)
			}
			tt.end(ctx, s)
			_, err = g.WaitState(ctx, guestclient.StateEnded)
			require.NoError(t, err)
			require.Equal(t, tt.want, g.EndReason())
			require.NoError(t, s.WaitClosed(ctx), "the page closes its socket")
		})
	}
}

// Call again: a new socket and at once a new call (a new session id, the
// same name), which connects.
func TestCallAgain(t *testing.T) {
	ctx := ctxFor(t)
	bot := newFakeBot(t, false, callTitle)
	g := launch(t, guestclient.Options{Name: "Ada"})
	status, _, err := g.Open(ctx, bot.URL(goodToken))
	require.NoError(t, err)
	require.Equal(t, 200, status)
	require.NoError(t, g.Join(ctx))
	first := bot.NextSession(ctx)
	_, err = g.WaitState(ctx, guestclient.StateRinging)
	require.NoError(t, err)
	first.Reject(ctx, "no_answer", "")
	_, err = g.WaitState(ctx, guestclient.StateEnded)
	require.NoError(t, err)

	require.NoError(t, g.CallAgain(ctx))
	second := bot.NextSession(ctx)
	require.NotEqual(t, first.Call.SessionID, second.Call.SessionID)
	checkCall(t, second, "Ada", 2)
	_, err = g.WaitState(ctx, guestclient.StateRinging)
	require.NoError(t, err)
	_, ok := g.StateTime(guestclient.StateReady)
	require.False(t, ok, "straight to the call, not the form")
	second.Accept(ctx, "Bob")
	_, err = g.WaitState(ctx, guestclient.StateConnected)
	require.NoError(t, err)
	require.Equal(t, "Bob", g.View().Peer)
	_, err = g.WaitRemoteTone(ctx, botToneHz, toneTolerance)
	require.NoError(t, err)
}

// Chromium's own console lines for what the tests below make fail on
// purpose: an error status of the page and a refused socket.
var (
	errorStatusLine = regexp.MustCompile(`^Failed to load resource: the server responded with a status of (404|410|503)`)
	refusedSocket   = regexp.MustCompile(`^WebSocket connection to 'ws://127\.0\.0\.1:\d+/call/[A-Za-z0-9_-]+/ws' failed`)
)

func TestErrorPages(t *testing.T) {
	ctx := ctxFor(t)
	bot := newFakeBot(t, false, callTitle)
	g := launch(t, guestclient.Options{Name: "Ada"}, errorStatusLine)
	for _, tt := range []struct {
		token  string
		status int
		title  string
	}{
		{"nope", 404, "This call link does not exist"},
		{expiredToken, 410, "This call link has expired"},
		{goodToken + "x", 404, "This call link does not exist"},
	} {
		status, title, err := g.Open(ctx, bot.URL(tt.token))
		require.NoError(t, err)
		require.Equal(t, tt.status, status, tt.token)
		require.Equal(t, tt.title, title, tt.token)
		require.Equal(t, guestclient.State(""), g.State(), "not the call page")
	}
}

// A link that expires between the page's load and its socket: the socket
// is refused, and the page reloads to show the bot's error page.
func TestRefusedSocketShowsTheErrorPage(t *testing.T) {
	ctx := ctxFor(t)
	bot := newFakeBot(t, false, callTitle)
	g := launch(t, guestclient.Options{Name: "Ada"}, errorStatusLine, refusedSocket)
	bot.revokeOnSocket.Store(true)
	status, _, err := g.Open(ctx, bot.URL(goodToken))
	require.NoError(t, err)
	require.Equal(t, 200, status)
	_, err = g.WaitView(ctx, "the error page", func(v guestclient.View) bool { return v.Title == "This call link was revoked" })
	require.NoError(t, err)
	require.Equal(t, guestclient.State(""), g.State())
}

// A socket refused while the page itself loads: the page says it could
// not reach the call, and offers to try again.
func TestUnreachable(t *testing.T) {
	ctx := ctxFor(t)
	bot := newFakeBot(t, false, callTitle)
	g := launch(t, guestclient.Options{Name: "Ada"}, errorStatusLine, refusedSocket)
	bot.refuseSocket.Store(true)
	_, _, err := g.Open(ctx, bot.URL(goodToken))
	require.NoError(t, err)
	_, err = g.WaitState(ctx, guestclient.StateEnded)
	require.NoError(t, err)
	require.Equal(t, guestclient.End{Reason: "unreachable", Text: "Could not reach the call"}, g.EndReason())

	bot.refuseSocket.Store(false)
	require.NoError(t, g.CallAgain(ctx))
	_, err = g.WaitState(ctx, guestclient.StateReady)
	require.NoError(t, err, "no name typed yet: the form")
	require.NoError(t, g.Join(ctx))
	bot.NextSession(ctx).Accept(ctx, "Alice")
	_, err = g.WaitState(ctx, guestclient.StateConnected)
	require.NoError(t, err)
}

// TestScreenshot takes the README's screenshot of the call page: a
// connected video call, the bot's test pattern as the remote video. With
// -screenshot=<file> (make screenshot) it writes it there, else among the
// test's artifacts.
func TestScreenshot(t *testing.T) {
	ctx := ctxFor(t)
	bot := newFakeBot(t, true, callTitle)
	// A large phone's width, as high as the call's card.
	g := launch(t, guestclient.Options{Name: "Ada", Video: true, ViewportWidth: 480, ViewportHeight: 620})
	s := connect(t, ctx, bot, g, "Alice (Matrix)")
	_, _, err := g.WaitRemoteVideo(ctx)
	require.NoError(t, err)
	s.Update(ctx, true, false)
	require.NoError(t, g.WaitRemoteMuted(ctx, true, false))
	_, err = g.WaitStats(ctx, func(q guestclient.Quality) bool { return q.HasRTT && q.HasLoss && q.HasBitrates })
	require.NoError(t, err)

	path := *screenshotPath
	if path == "" {
		path = filepath.Join(t.ArtifactDir(), "call-page.png")
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, g.Screenshot(ctx, path))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Equal(t, 480, img.Bounds().Dx())
	require.Equal(t, 620, img.Bounds().Dy())
	t.Logf("screenshot: %s", path)
}

// Close leaves no process, and closing the page in a call hangs up.
func TestCloseLeavesNoProcesses(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	ctx := ctxFor(t)
	bot := newFakeBot(t, false, callTitle)
	g, err := guestclient.Launch(ctx, guestclient.Options{Name: "Ada", ToneHz: guestHz, Logf: t.Logf})
	require.NoError(t, err)
	s := connect(t, ctx, bot, g, "Alice")
	pids := g.PIDs()
	require.Greater(t, len(pids), 2, "the driver and the browser's processes")

	require.NoError(t, g.Close())
	require.Empty(t, s.WaitHangUp(ctx), "the closed page hung up")
	require.NoError(t, s.WaitClosed(ctx))
	for _, pid := range pids {
		_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err == nil {
			st, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
			require.Containsf(t, string(st), ") Z ", "process %d is still alive: %s", pid, st)
		}
	}
	require.NoError(t, g.Close(), "a second Close")
	<-g.Done()
}
