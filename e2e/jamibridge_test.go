//go:build linux

package e2e

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/dhtnode"
	"github.com/voipbot/voipbot/internal/testbed/jamid"
	"github.com/voipbot/voipbot/internal/testbed/jsclient"
)

// jamiBridge is a bot on a local Jami DHT with a real jami-daemon account
// (in its own network namespace), and a Matrix user with a 880 Hz
// microphone in a room with the bot. jamid's microphone is a 660 Hz tone,
// and what it plays is recorded (jamid.Options.RecordPlayback).
type jamiBridge struct {
	setup   *botSetup
	bot     *testbed.Bot
	d       *jamid.Daemon
	jamiAcc string // jamid's local account id
	jamiID  string // its Jami ID
	botJami string // the bot's Jami ID
	a       *jsclient.Client
	room    string
}

func newJamiBridge(t *testing.T) *jamiBridge {
	t.Helper()
	jamid.RequireInstalled(t)
	ctx := jsCtx(t)
	n := dhtnode.NewTestNetwork(t)
	require.NoError(t, jamid.DisableIPv6(n.Link))
	peer, err := n.Start(ctx, dhtnode.Options{NoRateLimit: true})
	require.NoError(t, err)
	jb := &jamiBridge{}
	// jamid's microphone plays toneB (a file:// source does not work in
	// jamid 13.7.0: see jamid.Options.CaptureToneHz); the Matrix user's
	// is toneA.
	jb.d = jamid.NewTestDaemon(t, ctx, jamid.Options{Link: n.Link, CaptureToneHz: toneB, RecordPlayback: true})
	jb.jamiAcc, err = jb.d.AddAccount(ctx, jamid.LoopbackAccount(peer.Addr().String()))
	require.NoError(t, err)
	require.NoError(t, jb.d.WaitRegistered(ctx, jb.jamiAcc))
	jb.jamiID, err = jb.d.JamiID(ctx, jb.jamiAcc)
	require.NoError(t, err)

	jb.setup, jb.bot = startCallBot(t, fmt.Sprintf(`jami:
  enabled: true
  listen: %s:0
  bootstrap: [%q]
  ice_addresses: [%s]
  allow: ["*"]
`, n.HostIP, peer.Addr(), n.HostIP))
	jb.a = newToneUser(t, "jma", toneA, false, jsclient.IncomingNotify)
	jb.room = jsRoomWithBot(t, jb.a, jb.setup.UserID, false)
	require.NoError(t, testbed.WaitFor(ctx, func() (bool, error) {
		reply := jsCommand(t, jb.a, jb.room, jb.setup.UserID, "!voip jami").Body
		m := regexp.MustCompile("Jami ID is `([0-9a-f]{40})`").FindStringSubmatch(reply)
		if m == nil {
			return false, nil
		}
		jb.botJami = m[1]
		return true, nil
	}), "the bot tells its Jami ID")
	reply := jsCommand(t, jb.a, jb.room, jb.setup.UserID, "!voip route jami:"+jb.jamiID)
	require.Contains(t, reply.Body, "now go to **jami:"+jb.jamiID+"**")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("jamid log tail:\n%s", jb.d.LogTail(8000))
		}
	})
	return jb
}

// requireJamidHears waits until what jamid plays (the audio it decoded) has
// the tone hz: proof that jamid decrypts and decodes what the bot sends.
// jamid's pipeline shifts a tone by up to about 20 Hz (Opus at its
// bitrate, resampling), and the three tones are 220 Hz apart.
// requireJamidHears: what jamid played after since has hz dominant.
func (jb *jamiBridge) requireJamidHears(t *testing.T, since jamid.PlaybackMark, hz int) {
	t.Helper()
	heard, err := jb.d.WaitHears(jsCtx(t), since, float64(hz), 30)
	require.NoError(t, err)
	t.Logf("jamid plays %v", heard)
}

// waitJamidState waits for one of states on jamid's call.
func (jb *jamiBridge) waitJamidState(t *testing.T, callID string, states ...string) jamid.CallState {
	t.Helper()
	st, err := jb.d.WaitCallState(jsCtx(t), jb.jamiAcc, callID, states...)
	require.NoError(t, err)
	return st
}

// TestJamiBridgeMatrixCallsJami: a Matrix user calls the bot in a room
// routed to a Jami account; jamid rings (from the bot's Jami ID) and
// answers; the call is CURRENT on jamid and connected in js-sdk, the
// Matrix user hears jamid's microphone tone and jamid plays the Matrix
// user's (neither hears its own, nor the bot's). Hanging up in Matrix ends
// the call on jamid.
func TestJamiBridgeMatrixCallsJami(t *testing.T) {
	jb := newJamiBridge(t)
	defer stopBot(t, jb.bot)
	ctx := jsCtx(t)
	begin := time.Now()
	callA, err := jb.a.PlaceCall(ctx, jb.room, "", false)
	require.NoError(t, err)
	in, err := jb.d.WaitIncomingCall(ctx, jb.jamiAcc, jb.botJami)
	require.NoError(t, err)
	require.NoError(t, jb.d.AcceptWithMedia(ctx, jb.jamiAcc, in.CallID, jamid.AudioMedia()))
	require.Equal(t, "CURRENT", jb.waitJamidState(t, in.CallID, "CURRENT", "OVER", "FAILURE").State)
	waitConnected(t, callA)
	requireHears(t, callA, toneB)
	t.Logf("setup Matrix (js-sdk) → bot → Jami, dial to the caller hearing jamid: %s (jamid answers at once)", time.Since(begin).Round(time.Millisecond))
	jb.requireJamidHears(t, 0, toneA)

	require.NoError(t, callA.Hangup(ctx, "user_hangup"))
	jb.waitJamidState(t, in.CallID, "OVER")
}

// TestJamiBridgeJamiCallsMatrix: jamid calls the bot's Jami ID; the call
// rings the room whose route names jamid's account, the Matrix user
// answers; each hears the other's tone. Hold crosses both ways: the
// Matrix user's hold silences what jamid plays until the resume, jamid's
// hold silences what the Matrix user hears. Hanging up on jamid ends the Matrix call.
func TestJamiBridgeJamiCallsMatrix(t *testing.T) {
	jb := newJamiBridge(t)
	defer stopBot(t, jb.bot)
	ctx := jsCtx(t)
	begin := time.Now()
	callID, err := jb.d.PlaceCallWithMedia(ctx, jb.jamiAcc, jb.botJami, jamid.AudioMedia())
	require.NoError(t, err)
	callA, err := jb.a.WaitIncoming(ctx)
	require.NoError(t, err)
	rang := time.Since(begin)
	require.NoError(t, callA.Answer(ctx))
	answered := time.Now()
	waitConnected(t, callA)
	require.Equal(t, "CURRENT", jb.waitJamidState(t, callID, "CURRENT", "OVER", "FAILURE").State)
	requireHears(t, callA, toneB)
	t.Logf("setup Jami → bot → Matrix: dial to the Matrix user ringing %s; answer to the Matrix user hearing jamid %s",
		rang.Round(time.Millisecond), time.Since(answered).Round(time.Millisecond))
	jb.requireJamidHears(t, 0, toneA)
	t.Logf("answer to jamid hearing the Matrix user: %s", time.Since(answered).Round(time.Millisecond))

	// jamid 13.7.0 reports no peerHold for a re-offer on the same ICE
	// session (jamid's own holds to another jamid are like ours, and get
	// none either: setupNegotiatedMedia runs only after ICE): what jamid
	// decodes is the evidence, silence while held, the tone after.
	held := jb.d.MarkPlayback()
	require.NoError(t, callA.SetRemoteOnHold(ctx, true))
	quiet, err := jb.d.WaitQuiet(ctx, held)
	require.NoError(t, err, "jamid plays nothing while the Matrix user holds")
	t.Logf("jamid plays %.0f dBFS while the Matrix user holds", quiet.DBFS)
	resumed := jb.d.MarkPlayback()
	require.NoError(t, callA.SetRemoteOnHold(ctx, false))
	jb.requireJamidHears(t, resumed, toneA)

	// jamid's hold of an audio call says nothing in its SDP (its audio
	// sections are always sendrecv: Sdp::getMediaDirection's comment,
	// "mute/un-mute audio is only done locally"); it stops sending. The
	// Matrix user hears that as silence, then jamid's tone again.
	require.NoError(t, jb.d.Hold(ctx, jb.jamiAcc, callID, true))
	jb.waitJamidState(t, callID, "HOLD")
	heldTone, err := callA.WaitRemoteQuiet(ctx)
	require.NoError(t, err, "the Matrix user hears nothing while jamid holds")
	t.Logf("while jamid holds, %s hears %.0f dB", callA.Client().UserID, heldTone.DB)
	require.NoError(t, jb.d.Hold(ctx, jb.jamiAcc, callID, false))
	jb.waitJamidState(t, callID, "CURRENT")
	requireHears(t, callA, toneB)

	require.NoError(t, jb.d.HangUp(ctx, jb.jamiAcc, callID))
	_, err = callA.WaitState(ctx, jsclient.StateEnded)
	require.NoError(t, err)
}

// TestJamiBridgeInviteCommand: `!voip jami add` sends the bot's trust
// request to jamid, jamid accepts, and `!voip jami contacts` shows the
// contact confirmed once jamid's confirmation reached the bot. A bad ID
// gets a clear answer.
func TestJamiBridgeInviteCommand(t *testing.T) {
	jb := newJamiBridge(t)
	defer stopBot(t, jb.bot)
	ctx := jsCtx(t)
	say := func(text string) string { return jsCommand(t, jb.a, jb.room, jb.setup.UserID, text).Body }

	require.Contains(t, say("!voip jami contacts"), "no Jami contacts yet")
	require.Contains(t, say("!voip jami add 12345"), "is not a Jami ID")
	require.Contains(t, say("!voip jami add "+jb.jamiID), "Invited `"+jb.jamiID+"`")
	_, err := jb.d.WaitIncomingTrustRequest(ctx, jb.jamiAcc, jb.botJami)
	require.NoError(t, err, "jamid gets the bot's trust request")
	require.Contains(t, say("!voip jami contacts"), "`"+jb.jamiID+"`: invited, not accepted yet")
	require.NoError(t, jb.d.AcceptTrustRequest(ctx, jb.jamiAcc, jb.botJami))
	_, err = jb.d.WaitContactConfirmed(ctx, jb.jamiAcc, jb.botJami)
	require.NoError(t, err)
	// The confirmation travels over the DHT to the bot's inbox: the
	// command is the bot's only outside view of it.
	var last string
	err = testbed.WaitFor(ctx, func() (bool, error) {
		last = say("!voip jami contacts")
		return strings.Contains(last, "`"+jb.jamiID+"`: confirmed"), nil
	})
	require.NoError(t, err, "the contact is confirmed; last reply:\n%s", last)
}

// jamiCallLength is how long TestJamiBridgeLongCall's call lasts: short in
// the test run, ten minutes in `make soak`.
var jamiCallLength = flag.Duration("jami-call", 20*time.Second, "how long TestJamiBridgeLongCall's call lasts (make soak: 10m)")

// TestJamiBridgeLongCall: a Matrix ⇄ Jami call held for -jami-call. Every
// 10 s both sides still hear each other's tone (jamid what it decoded since
// the last check); at the end, the bot's call report has the Jami leg's
// packets both ways at the rate of 20 ms Opus frames, no loss from jamid,
// and (once jamid sent receiver reports: ffmpeg sends one per ~280 KB it
// received, about a minute of Opus) a round trip.
func TestJamiBridgeLongCall(t *testing.T) {
	length := *jamiCallLength
	jb := newJamiBridge(t)
	defer stopBot(t, jb.bot)
	require.Contains(t, jsCommand(t, jb.a, jb.room, jb.setup.UserID, "!voip report on").Body, "**on**")
	ctx, cancel := context.WithTimeout(context.Background(), length+2*testbed.Timeout)
	defer cancel()
	callA, err := jb.a.PlaceCall(ctx, jb.room, "", false)
	require.NoError(t, err)
	in, err := jb.d.WaitIncomingCall(ctx, jb.jamiAcc, jb.botJami)
	require.NoError(t, err)
	require.NoError(t, jb.d.AcceptWithMedia(ctx, jb.jamiAcc, in.CallID, jamid.AudioMedia()))
	waitConnected(t, callA)
	begin := time.Now()
	since := jb.d.MarkPlayback()
	// The ticker paces the checks of a call that is meant to last; it
	// synchronises nothing.
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for checks := 1; ; checks++ {
		requireHears(t, callA, toneB)
		jb.requireJamidHears(t, since, toneA)
		require.Equal(t, "CURRENT", jb.waitJamidState(t, in.CallID, "CURRENT", "OVER", "FAILURE", "HOLD").State)
		since = jb.d.MarkPlayback()
		if time.Since(begin) >= length {
			t.Logf("%d checks in %s: both sides heard each other's tone each time", checks, time.Since(begin).Round(time.Second))
			break
		}
		<-tick.C
	}
	require.NoError(t, callA.Hangup(ctx, "user_hangup"))
	jb.waitJamidState(t, in.CallID, "OVER")
	report, err := jb.a.WaitMessage(ctx, jb.room, jsclient.MessageMatch{Sender: jb.setup.UserID.String(), Contains: "Call report"})
	require.NoError(t, err)
	t.Logf("the report:\n%s", report.Body)

	jamiLine := regexp.MustCompile(`(?s)\* ` + jb.jamiID + ` \(jami, outbound\):\s*\* from it, audio audio/opus: (\d+) packets, [^;]*; lost (\d+).*?\* to it, audio audio/opus: (\d+) packets, [^;]*; lost (-?\d+) \([^)]*\), jitter [^,]*, round trip ([^,]*),`)
	m := jamiLine.FindStringSubmatch(report.Body)
	require.NotNil(t, m, "the report has the Jami leg both ways")
	var fromJami, lostFromJami, toJami int
	_, _ = fmt.Sscan(m[1], &fromJami)
	_, _ = fmt.Sscan(m[2], &lostFromJami)
	_, _ = fmt.Sscan(m[3], &toJami)
	want := int(0.9 * length.Seconds() * 50) // 20 ms frames, less a 10 % margin for setup and the last check
	assert.GreaterOrEqual(t, fromJami, want, "packets from jamid")
	assert.GreaterOrEqual(t, toJami, want, "packets to jamid")
	assert.LessOrEqual(t, lostFromJami, fromJami/1000, "loss from jamid on loopback")
	if length >= 2*time.Minute {
		assert.NotEqual(t, "0s", m[5], "jamid's receiver reports give a round trip")
	}
	t.Logf("Jami leg over %s: %d packets from jamid (%d lost), %d to it, round trip %s", length, fromJami, lostFromJami, toJami, m[5])
}
