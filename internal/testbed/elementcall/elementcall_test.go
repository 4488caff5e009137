package elementcall_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/elementcall"
	"github.com/voipbot/voipbot/internal/testbed/jsclient"
	"github.com/voipbot/voipbot/internal/testbed/livekit"
	"github.com/voipbot/voipbot/internal/testbed/lkjwt"
)

// callTimeout bounds a test's call: two EC joins (about 10 s each in the
// research runs) and the tones.
const callTimeout = 3 * time.Minute

// bed is what a MatrixRTC call needs, started once for the package's tests
// that need it: Dendrite with federation routes (the JWT service checks
// OpenID tokens at its userinfo endpoint), livekit-server, the JWT service
// and EC's static server.
type bed struct {
	hs  *testbed.Dendrite
	lk  *livekit.Server
	jwt *lkjwt.Server
	ec  *elementcall.Server
	dir string
}

var (
	bedOnce sync.Once
	theBed  *bed
	bedErr  error
	userSeq atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theBed != nil {
		theBed.stop()
	}
	os.Exit(code)
}

// startBed starts the call stack (once) and returns it.
func startBed(t *testing.T) *bed {
	t.Helper()
	bedOnce.Do(func() {
		// livekit-server's first build takes minutes; npm ci of EC about
		// ten seconds.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		theBed, bedErr = newBed(ctx)
	})
	require.NoError(t, bedErr)
	return theBed
}

func newBed(ctx context.Context) (b *bed, err error) {
	b = &bed{}
	defer func() {
		if err != nil {
			b.stop()
		}
	}()
	if err = elementcall.Prepare(ctx, "", os.Stderr); err != nil {
		return nil, err
	}
	if b.dir, err = os.MkdirTemp("", "voipbot-elementcall-"); err != nil {
		return nil, err
	}
	if b.hs, err = testbed.StartDendrite(b.dir, testbed.DendriteOptions{Federation: true}); err != nil {
		return nil, err
	}
	if b.lk, err = livekit.Start(ctx, livekit.Options{}); err != nil {
		return nil, err
	}
	if b.jwt, err = lkjwt.Start(b.lk.JWTConfig(map[string]string{testbed.ServerName: b.hs.URL})); err != nil {
		return nil, err
	}
	b.ec, err = elementcall.StartServer(elementcall.ServerOptions{HomeserverURL: b.hs.URL, LiveKitServiceURL: b.jwt.URL})
	return b, err
}

func (b *bed) stop() {
	if b.ec != nil {
		_ = b.ec.Close()
	}
	if b.jwt != nil {
		_ = b.jwt.Close()
	}
	if b.lk != nil {
		b.lk.Stop()
	}
	if b.hs != nil {
		b.hs.Stop()
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// user registers a user and logs it in on a device for EC.
func (b *bed) user(t *testing.T, ctx context.Context, name string) elementcall.Session {
	t.Helper()
	localpart := fmt.Sprintf("%s%d", name, userSeq.Add(1))
	_, err := b.hs.Register(ctx, localpart, "password-"+localpart)
	require.NoError(t, err)
	s, err := elementcall.Login(ctx, b.hs.URL, localpart, "password-"+localpart)
	require.NoError(t, err)
	return s
}

// client is a CS API client on the session's device (for room setup
// only: the device's keys are EC's).
func (b *bed) client(t *testing.T, s elementcall.Session) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(b.hs.URL, id.UserID(s.UserID), s.AccessToken)
	require.NoError(t, err)
	cli.DeviceID = id.DeviceID(s.DeviceID)
	return cli
}

// callRoom makes a private room of owner's with the others joined, where
// members may send call memberships (power level 0, as in rooms EC
// creates), encrypted (m.room.encryption) if asked.
func (b *bed) callRoom(t *testing.T, ctx context.Context, encrypted bool, owner elementcall.Session, others ...elementcall.Session) string {
	t.Helper()
	body := map[string]any{
		"preset": "private_chat",
		"name":   "Element Call test",
		"power_level_content_override": map[string]any{
			"events": map[string]int{"org.matrix.msc3401.call.member": 0},
		},
	}
	var invite []string
	for _, o := range others {
		invite = append(invite, o.UserID)
	}
	body["invite"] = invite
	if encrypted {
		body["initial_state"] = []map[string]any{{
			"type": "m.room.encryption", "state_key": "",
			"content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"},
		}}
	}
	cli := b.client(t, owner)
	var resp struct {
		RoomID string `json:"room_id"`
	}
	_, err := cli.MakeRequest(ctx, http.MethodPost, cli.BuildClientURL("v3", "createRoom"), body, &resp)
	require.NoError(t, err)
	for _, o := range others {
		_, err = b.client(t, o).JoinRoomByID(ctx, id.RoomID(resp.RoomID))
		require.NoError(t, err)
	}
	return resp.RoomID
}

// launch starts a browser whose microphone plays a tone of hz.
func (b *bed) launch(t *testing.T, ctx context.Context, name string, hz float64) *elementcall.Browser {
	t.Helper()
	artifacts := t.ArtifactDir()
	wav := filepath.Join(artifacts, fmt.Sprintf("%s-%g.wav", name, hz))
	require.NoError(t, jsclient.ToneWAV(wav, hz, 10))
	br, err := elementcall.Launch(ctx, elementcall.Options{Name: name, AppURL: b.ec.URL, WAV: wav, ArtifactsDir: artifacts})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			shot := filepath.Join(artifacts, name+"-at-failure.png")
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := br.Screenshot(sctx, shot); err != nil {
				shot = "none: " + err.Error()
			}
			cancel()
			t.Logf("%s: screenshot %s; console log %s; its last lines:\n%s", name, shot, br.ConsoleLog, br.ConsoleTail(60))
		}
		require.NoError(t, br.Close())
	})
	return br
}

// TestTwoBrowsersHearEachOther: two EC browsers (two Dendrite users, tones
// of 660 Hz and 880 Hz) join one room's call, through livekit-server and
// the JWT service, and each hears the other's tone, from the other's LiveKit
// participant: without media encryption, in an encrypted room
// (per-participant keys sent over Olm to-device messages), and with a
// shared key (EC's ?password=).
func TestTwoBrowsersHearEachOther(t *testing.T) {
	for _, mode := range []struct {
		name      string
		encrypted bool   // the room has m.room.encryption
		password  string // a shared media key
	}{
		{name: "unencrypted"},
		{name: "per-participant keys", encrypted: true},
		{name: "shared key", password: "s3cretpass"},
	} {
		encrypted := mode.encrypted || mode.password != ""
		t.Run(mode.name, func(t *testing.T) {
			b := startBed(t)
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			alice, bob := b.user(t, ctx, "alice"), b.user(t, ctx, "bob")
			room := b.callRoom(t, ctx, mode.encrypted, alice, bob)
			const aliceHz, bobHz, tolerance = 660, 880, 15
			brA := b.launch(t, ctx, "alice", aliceHz)
			brB := b.launch(t, ctx, "bob", bobHz)

			// Both join at once, as two people would.
			start := time.Now()
			var joinedA, joinedB elementcall.Joined
			var errA, errB error
			var wg sync.WaitGroup
			wg.Go(func() { joinedA, errA = brA.Join(ctx, room, alice, mode.password) })
			wg.Go(func() { joinedB, errB = brB.Join(ctx, room, bob, mode.password) })
			wg.Wait()
			require.NoError(t, errA)
			require.NoError(t, errB)
			t.Logf("joined: alice %s (lobby after %s), bob %s (lobby after %s)",
				joinedA.Took().Round(time.Millisecond), joinedA.Lobby.Sub(start).Round(time.Millisecond),
				joinedB.Took().Round(time.Millisecond), joinedB.Lobby.Sub(start).Round(time.Millisecond))

			// Each hears the other's tone, from the other's participant,
			// and in all it plays.
			heardByA, err := brA.WaitParticipantTone(ctx, bob.Identity(), bobHz, tolerance)
			require.NoError(t, err)
			heardByB, err := brB.WaitParticipantTone(ctx, alice.Identity(), aliceHz, tolerance)
			require.NoError(t, err)
			t.Logf("alice hears %s; bob hears %s; %s after the start", heardByA, heardByB, time.Since(start).Round(time.Millisecond))
			_, err = brA.WaitRemoteTone(ctx, bobHz, tolerance)
			require.NoError(t, err)
			_, err = brB.WaitRemoteTone(ctx, aliceHz, tolerance)
			require.NoError(t, err)

			// EC matched the LiveKit participants to the memberships and
			// shows them, encrypted as the room asks.
			for _, c := range []struct {
				br    *elementcall.Browser
				other elementcall.Session
			}{{brA, bob}, {brB, alice}} {
				_, err = c.br.WaitLog(ctx, "LiveKit participant matched")
				require.NoError(t, err)
				p, err := c.br.WaitParticipant(ctx, c.other.Identity(), nil)
				require.NoError(t, err)
				require.Equal(t, c.other.UserID, p.UserID)
				require.False(t, p.Local)
				require.False(t, p.UnencryptedWarning, "EC shows %s as not encrypted", c.other.UserID)
				// Published encrypted, and heard as the tone above: the
				// keys arrived (ciphertext decodes to noise). EC's own
				// encryption status is not asserted: it keeps an early
				// "key missing" (frames before the key's to-device
				// message) for good; EC hides it for that reason.
				require.Equal(t, encrypted, p.AudioEncrypted, "%s's audio encryption", c.other.UserID)
				st, err := c.br.Stats(ctx)
				require.NoError(t, err)
				in := st.InboundAudio(c.other.Identity())
				require.NotEmpty(t, in, "inbound audio of %s: %+v", c.other.Identity(), st.Inbound)
				require.Positive(t, in[0].PacketsReceived)
				require.Positive(t, in[0].TotalAudioEnergy)
			}

			// Bob mutes his microphone: alice hears silence, then his
			// tone again.
			require.NoError(t, brB.SetMicrophone(ctx, false))
			_, err = brA.WaitRemoteQuiet(ctx)
			require.NoError(t, err)
			require.NoError(t, brB.SetMicrophone(ctx, true))
			_, err = brA.WaitParticipantTone(ctx, bob.Identity(), bobHz, tolerance)
			require.NoError(t, err)

			// Alice hangs up: bob's EC drops her tile.
			require.NoError(t, brA.Leave(ctx))
			_, err = brB.WaitParticipants(ctx, func(ps []elementcall.Participant) bool {
				for _, p := range ps {
					if p.Identity == alice.Identity() {
						return false
					}
				}
				return true
			})
			require.NoError(t, err)
			require.NoError(t, brB.Leave(ctx))
		})
	}
}
