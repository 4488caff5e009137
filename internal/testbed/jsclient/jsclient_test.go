package jsclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/jsclient"
)

var (
	hs      *testbed.Dendrite
	browser *jsclient.Browser
	userSeq atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "voipbot-jsclient-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	hsDir := filepath.Join(dir, "dendrite")
	if err = os.Mkdir(hsDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if hs, err = testbed.StartDendrite(hsDir, testbed.DendriteOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer hs.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // npm ci on a cold machine
	defer cancel()
	start := time.Now()
	// No chromium, node or npm is a failure, not a skip: CI installs them.
	if browser, err = jsclient.Launch(ctx, jsclient.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "Chromium %s ready in %s\n", browser.Version, time.Since(start).Round(time.Millisecond))
	code := m.Run()
	if err = browser.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: closing the browser:", err)
		code = 1
	}
	return code
}

func ctxFor(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
	tb.Cleanup(cancel)
	return ctx
}

// newClientOn registers a user, logs it in on a device of its own and starts
// a js-sdk client for it on browser br.
func newClientOn(tb testing.TB, br *jsclient.Browser, name string, crypto bool, incoming jsclient.IncomingPolicy) (*jsclient.Client, jsclient.ClientOptions) {
	tb.Helper()
	ctx := ctxFor(tb)
	localpart := fmt.Sprintf("%s%d", name, userSeq.Add(1))
	_, err := hs.Register(ctx, localpart, "password-"+localpart)
	require.NoError(tb, err)
	opts, err := jsclient.Login(ctx, hs.URL, localpart, "password-"+localpart)
	require.NoError(tb, err)
	opts.Crypto, opts.Incoming = crypto, incoming
	c, err := br.NewClient(ctx, opts)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, c.Close()) })
	require.Equal(tb, opts.DeviceID, c.DeviceID)
	return c, opts
}

// pair makes two clients in a private room (created by the first).
func pair(tb testing.TB, encrypted bool, incoming jsclient.IncomingPolicy) (a, b *jsclient.Client, room string, aOpts jsclient.ClientOptions) {
	tb.Helper()
	return pairOn(tb, browser, browser, encrypted, incoming)
}

// pairOn is pair with the first client on browser brA, the second on brB.
func pairOn(tb testing.TB, brA, brB *jsclient.Browser, encrypted bool, incoming jsclient.IncomingPolicy) (a, b *jsclient.Client, room string, aOpts jsclient.ClientOptions) {
	tb.Helper()
	ctx := ctxFor(tb)
	a, aOpts = newClientOn(tb, brA, "alice", encrypted, jsclient.IncomingNotify)
	b, _ = newClientOn(tb, brB, "bob", encrypted, incoming)
	room, err := a.CreateRoom(ctx, jsclient.CreateRoomOptions{Invite: []string{b.UserID}, Encrypted: encrypted, Direct: true})
	require.NoError(tb, err)
	_, err = b.JoinRoom(ctx, room)
	require.NoError(tb, err)
	if encrypted {
		// As people do, chat before calling: once b has read a's message,
		// a's room key has reached b's device, so the invite that follows
		// decrypts there (a call placed at once can race the key).
		_, err = a.SendText(ctx, room, "hello before the call")
		require.NoError(tb, err)
		_, err = b.WaitMessage(ctx, room, jsclient.MessageMatch{Sender: a.UserID, Contains: "hello before the call"})
		require.NoError(tb, err)
	}
	return a, b, room, aOpts
}

// connect has a call b and b answer; both reach connected.
func connect(t *testing.T, a, b *jsclient.Client, room string, video bool) (ca, cb *jsclient.Call) {
	t.Helper()
	ctx := ctxFor(t)
	ca, err := a.PlaceCall(ctx, room, "", video)
	require.NoError(t, err)
	require.Equal(t, "outbound", ca.Direction())
	cb, err = b.WaitIncoming(ctx)
	require.NoError(t, err)
	require.Equal(t, ca.ID(), cb.ID())
	require.Equal(t, jsclient.StateRinging, cb.State())
	require.Equal(t, "inbound", cb.Direction())
	require.Equal(t, room, cb.RoomID())
	require.Equal(t, a.UserID, cb.Opponent())
	wantType := "voice"
	if video {
		wantType = "video"
	}
	require.Equal(t, wantType, cb.Type())
	require.NoError(t, cb.Answer(ctx))
	connectedA, err := ca.WaitState(ctx, jsclient.StateConnected)
	require.NoError(t, err)
	_, err = cb.WaitState(ctx, jsclient.StateConnected)
	require.NoError(t, err)
	t.Logf("call %s connected %s after it was placed (caller's clock)", ca.ID(), connectedA.Sub(ca.PlacedAt()).Round(time.Millisecond))
	return ca, cb
}

// requireMedia waits until a call receives the kinds of media asked for:
// audio bytes grow and Chromium's fake microphone's beep is heard (an audio
// level above zero), and with video, video bytes grow and frames decode.
func requireMedia(t *testing.T, call *jsclient.Call, video bool) {
	t.Helper()
	first, last, err := call.WaitMedia(ctxFor(t), video)
	require.NoErrorf(t, err, "media of %s (%s): first %+v last %+v", call.ID(), call.Client().UserID, first, last)
	require.Equal(t, "audio/opus", last.Audio.InboundCodec)
	require.Positive(t, last.Audio.TotalAudioEnergy)
	if video {
		require.NotEmpty(t, last.Video.InboundCodec)
		require.Positive(t, last.Video.FrameWidth)
	} else {
		require.Zero(t, last.Video.InboundBytes)
	}
	t.Logf("%s: audio in %d B/%d pkts level %.3f, out %d B; video in %d B %d frames %dx%d (%s)",
		call.Client().UserID, last.Audio.InboundBytes, last.Audio.InboundPackets, last.Audio.AudioLevel, last.Audio.OutboundBytes,
		last.Video.InboundBytes, last.Video.FramesDecoded, last.Video.FrameWidth, last.Video.FrameHeight, last.Video.InboundCodec)
}

// hangup has ca hang up; both end with user_hangup.
func hangup(t *testing.T, ca, cb *jsclient.Call) {
	t.Helper()
	ctx := ctxFor(t)
	require.NoError(t, ca.Hangup(ctx, ""))
	_, err := ca.WaitState(ctx, jsclient.StateEnded)
	require.NoError(t, err)
	_, err = cb.WaitState(ctx, jsclient.StateEnded)
	require.NoError(t, err)
	require.Equal(t, "user_hangup", ca.HangupReason())
	require.Equal(t, "local", ca.HangupParty())
	require.Equal(t, "user_hangup", cb.HangupReason())
	require.Equal(t, "remote", cb.HangupParty())
	require.Empty(t, ca.Errors())
	require.Empty(t, cb.Errors())
}

func TestVoiceCall(t *testing.T) {
	a, b, room, _ := pair(t, false, jsclient.IncomingNotify)
	ca, cb := connect(t, a, b, room, false)
	requireMedia(t, ca, false)
	requireMedia(t, cb, false)

	// Hold and resume: a renegotiation that the other side sees.
	ctx := ctxFor(t)
	require.NoError(t, ca.SetRemoteOnHold(ctx, true))
	require.NoError(t, cb.WaitLocalHold(ctx, true))
	require.NoError(t, ca.SetRemoteOnHold(ctx, false))
	require.NoError(t, cb.WaitLocalHold(ctx, false))
	require.NoError(t, cb.SetMicrophoneMuted(ctx, true))
	require.NoError(t, cb.SetMicrophoneMuted(ctx, false))
	require.Equal(t, jsclient.StateConnected, ca.State())

	hangup(t, ca, cb)
}

func TestVideoCall(t *testing.T) {
	a, b, room, _ := pair(t, false, jsclient.IncomingNotify)
	ca, cb := connect(t, a, b, room, true)
	requireMedia(t, ca, true)
	requireMedia(t, cb, true)
	hangup(t, ca, cb)
}

func TestEncryptedVoiceCall(t *testing.T) {
	a, b, room, aOpts := pair(t, true, jsclient.IncomingNotify)
	ca, cb := connect(t, a, b, room, false)
	requireMedia(t, ca, false)
	requireMedia(t, cb, false)
	hangup(t, ca, cb)

	// The call's events went over the wire encrypted.
	types := roomEventTypes(t, aOpts, room)
	require.Contains(t, types, "m.room.encrypted")
	for _, typ := range types {
		require.NotContains(t, []string{"m.call.invite", "m.call.answer", "m.call.candidates", "m.call.hangup"}, typ, "a call event in the clear")
	}
}

func TestReject(t *testing.T) {
	a, b, room, _ := pair(t, false, jsclient.IncomingNotify)
	ctx := ctxFor(t)
	ca, err := a.PlaceCall(ctx, room, b.UserID, false)
	require.NoError(t, err)
	cb, err := b.WaitIncoming(ctx)
	require.NoError(t, err)
	require.NoError(t, cb.Reject(ctx))
	_, err = ca.WaitState(ctx, jsclient.StateEnded)
	require.NoError(t, err)
	_, err = cb.WaitState(ctx, jsclient.StateEnded)
	require.NoError(t, err)
	require.Equal(t, "remote", ca.HangupParty())
	_, ok := ca.StateTime(jsclient.StateConnected)
	require.False(t, ok)
	// Waiting for a state the call can no longer reach fails at once.
	_, err = ca.WaitState(ctx, jsclient.StateConnected)
	require.ErrorContains(t, err, "without reaching connected")
}

func TestIgnoreIncoming(t *testing.T) {
	a, b, room, _ := pair(t, false, jsclient.IncomingIgnore)
	ctx := ctxFor(t)
	ca, err := a.PlaceCall(ctx, room, "", false)
	require.NoError(t, err)
	ignored, err := b.WaitIgnored(ctx)
	require.NoError(t, err)
	require.Equal(t, ca.ID(), ignored.ID())
	require.Equal(t, jsclient.StateRinging, ignored.State())
	require.NoError(t, ca.Hangup(ctx, ""))
	_, err = ca.WaitState(ctx, jsclient.StateEnded)
	require.NoError(t, err)
	_, err = ignored.WaitState(ctx, jsclient.StateEnded)
	require.NoError(t, err)

	// Reported again once the policy is back to notify.
	require.NoError(t, b.SetIgnoreIncoming(ctx, false))
	ca, err = a.PlaceCall(ctx, room, "", false)
	require.NoError(t, err)
	cb, err := b.WaitIncoming(ctx)
	require.NoError(t, err)
	require.Equal(t, ca.ID(), cb.ID(), "the ignored call was not reported")
	require.NoError(t, ca.Hangup(ctx, ""))
	_, err = cb.WaitState(ctx, jsclient.StateEnded)
	require.NoError(t, err)
}

// TestMessagesMembersAndCallID: text messages and their replies, waiting
// for a member, and a call placed with a call ID of the test's choosing.
func TestMessagesMembersAndCallID(t *testing.T) {
	a, b, room, _ := pair(t, false, jsclient.IncomingNotify)
	ctx := ctxFor(t)
	require.NoError(t, a.WaitMember(ctx, room, b.UserID, "join"))
	sent, err := a.SendText(ctx, room, "hello from a")
	require.NoError(t, err)
	msg, err := b.WaitMessage(ctx, room, jsclient.MessageMatch{Sender: a.UserID, Contains: "from a"})
	require.NoError(t, err)
	require.Equal(t, sent, msg.EventID)
	require.Equal(t, "m.text", msg.MsgType)
	require.Equal(t, "hello from a", msg.Body)
	// A message that never comes: the page gives up with the context.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = b.WaitMessage(short, room, jsclient.MessageMatch{Contains: "never sent"})
	require.Error(t, err)

	callID := "0000000000001" + "ChosenCallId0000"
	ca, err := a.PlaceCallWith(ctx, room, jsclient.PlaceOptions{CallID: callID})
	require.NoError(t, err)
	require.Equal(t, callID, ca.ID())
	cb, err := b.WaitIncoming(ctx)
	require.NoError(t, err)
	require.Equal(t, callID, cb.ID())
	require.NoError(t, cb.Answer(ctx))
	_, err = ca.WaitState(ctx, jsclient.StateConnected)
	require.NoError(t, err)
	hangup(t, ca, cb)
	// The ID is the page's to check: a second call with it is refused.
	_, err = a.PlaceCallWith(ctx, room, jsclient.PlaceOptions{CallID: callID})
	require.ErrorContains(t, err, "is taken")
}

// roomEventTypes lists the types of the room's latest events as the server
// stores them (before any decryption).
func roomEventTypes(t *testing.T, opts jsclient.ClientOptions, room string) []string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t), http.MethodGet,
		fmt.Sprintf("%s/_matrix/client/v3/rooms/%s/messages?dir=b&limit=100", opts.HomeserverURL, url.PathEscape(room)), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+opts.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var page struct {
		Chunk []struct {
			Type string `json:"type"`
		} `json:"chunk"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
	var types []string
	for _, e := range page.Chunk {
		types = append(types, e.Type)
	}
	return types
}

func TestLaunchErrorsNameWhatIsMissing(t *testing.T) {
	_, err := jsclient.Launch(ctxFor(t), jsclient.Options{Chromium: "/nonexistent/chromium"})
	require.ErrorContains(t, err, "apt-get install chromium")
}

// TestCloseLeavesNoProcesses launches a browser of its own with a client
// (so that renderers run) and checks that Close leaves no process behind.
func TestCloseLeavesNoProcesses(t *testing.T) {
	ctx := ctxFor(t)
	br, err := jsclient.Launch(ctx, jsclient.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = br.Close() })
	localpart := fmt.Sprintf("leak%d", userSeq.Add(1))
	_, err = hs.Register(ctx, localpart, "password-leak")
	require.NoError(t, err)
	opts, err := jsclient.Login(ctx, hs.URL, localpart, "password-leak")
	require.NoError(t, err)
	_, err = br.NewClient(ctx, opts)
	require.NoError(t, err)
	procs := br.Processes()
	require.Greater(t, len(procs), 3, "the driver, the browser and its helpers: %v", procs)
	require.NotEmpty(t, browserProcesses(t, br.StateDir()), "the leak check below recognises this browser's processes")

	require.NoError(t, br.Close())
	var alive []jsclient.Process
	for _, p := range procs {
		if p.Alive() {
			alive = append(alive, p)
		}
	}
	require.Empty(t, alive, "processes left after Close")
	// Nor any process of this browser outside the driver's tree (a crash
	// handler forked away to init, say): found by the browser's own folder
	// in its environment, so that other tests' browsers (the e2e package
	// runs its own, in parallel) do not count.
	for p := range browserProcesses(t, br.StateDir()) {
		t.Errorf("browser process %d left after Close", p.Pid)
	}
	select {
	case <-br.Done():
	default:
		t.Fatal("Close returned before the driver exited")
	}
	_, err = br.NewClient(ctx, opts)
	require.Error(t, err)
}

// BenchmarkJSCallSetup measures the setup of a js-sdk → js-sdk voice call
// as the caller sees it: from just before js-sdk creates the call to its
// "connected" state (browser clock; the callee answers in its page at
// once). It reports the median and 90th percentile over at least 20 calls
// (ns/op is the mean), and the median time until the invite was sent (the
// caller's own part). It is the baseline for calls to the bot.
func BenchmarkJSCallSetup(b *testing.B) {
	a, bob, room, _ := pair(b, false, jsclient.IncomingAnswer)
	n := max(b.N, 20)
	setups := make([]time.Duration, 0, n)
	invites := make([]time.Duration, 0, n)
	b.ResetTimer()
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), testbed.Timeout)
		ca, err := a.PlaceCall(ctx, room, "", false)
		require.NoError(b, err)
		connected, err := ca.WaitState(ctx, jsclient.StateConnected)
		require.NoError(b, err)
		setups = append(setups, connected.Sub(ca.PlacedAt()))
		invited, _ := ca.StateTime(jsclient.StateInviteSent)
		invites = append(invites, invited.Sub(ca.PlacedAt()))
		cb, err := bob.WaitIncoming(ctx)
		require.NoError(b, err)
		require.Equal(b, ca.ID(), cb.ID())
		require.NoError(b, ca.Hangup(ctx, ""))
		_, err = ca.WaitState(ctx, jsclient.StateEnded)
		require.NoError(b, err)
		_, err = cb.WaitState(ctx, jsclient.StateEnded)
		require.NoError(b, err)
		cancel()
	}
	b.StopTimer()
	slices.Sort(setups)
	slices.Sort(invites)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var sum time.Duration
	for _, d := range setups {
		sum += d
	}
	b.ReportMetric(ms(setups[len(setups)/2]), "p50-ms")
	b.ReportMetric(ms(setups[(len(setups)*9+9)/10-1]), "p90-ms")
	b.ReportMetric(float64(sum)/float64(len(setups)), "ns/op")
	b.ReportMetric(float64(len(setups)), "calls")
	// The caller's own part: local media, offer, and sending the invite.
	b.ReportMetric(ms(invites[len(invites)/2]), "invite-p50-ms")
}

// browserProcesses lists the running processes of Chromium's binaries.
// browserProcesses lists the live Chromium processes whose environment
// names stateDir.
func browserProcesses(t *testing.T, stateDir string) map[jsclient.Process]bool {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	out := make(map[jsclient.Process]bool)
	for _, e := range entries {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || !strings.Contains(filepath.Base(exe), "chrom") {
			continue
		}
		environ, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !strings.Contains(string(environ), "TMPDIR="+stateDir) {
			continue
		}
		pid, err := strconv.Atoi(e.Name())
		require.NoError(t, err)
		if p, ok := jsclient.ProcessOf(pid); ok && p.Alive() {
			out[p] = true
		}
	}
	return out
}
