package livekit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/livekit/protocol/auth"
	lkproto "github.com/livekit/protocol/livekit"
	protoLogger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	pionmedia "github.com/pion/webrtc/v4/pkg/media"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/internal/testbed/livekit"
	"github.com/voipbot/voipbot/internal/testbed/lkjwt"
	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/voip/media"
)

// sdkLog collects server-sdk-go's log (and pion's, through it), which
// goes to standard error by default and is verbose: a failed test shows
// its end.
var sdkLog = &syncBuffer{}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	data := b.buf.Bytes()
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

func TestMain(m *testing.M) {
	// Set once, before any room exists: the SDK reads its logger from a
	// plain package variable.
	lksdk.SetLogger(protoLogger.LogRLogger(funcr.New(func(prefix, args string) {
		fmt.Fprintf(sdkLog, "%s %s %s\n", time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{})))
	os.Exit(m.Run())
}

func ctxFor(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*testbed.Timeout)
	tb.Cleanup(cancel)
	return ctx
}

func startDendrite(t *testing.T, federation bool) *testbed.Dendrite {
	t.Helper()
	hs, err := testbed.StartDendrite(t.TempDir(), testbed.DendriteOptions{Federation: federation})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dendrite log, last part:\n%s", hs.LogTail())
		}
		hs.Stop()
	})
	return hs
}

func login(ctx context.Context, t *testing.T, hs *testbed.Dendrite, localpart string) *testbed.User {
	t.Helper()
	_, err := hs.Register(ctx, localpart, "password-"+localpart)
	require.NoError(t, err)
	u, err := hs.Login(ctx, localpart, "password-"+localpart, t.TempDir(), false)
	require.NoError(t, err)
	t.Cleanup(u.Close)
	return u
}

// userinfo asks the homeserver's federation API who an OpenID token
// belongs to, over plain HTTP at its client URL.
func userinfo(ctx context.Context, t *testing.T, hsURL, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, hsURL+"/_matrix/federation/v1/openid/userinfo?access_token="+url.QueryEscape(token), nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// TestDendriteWithoutFederationHasNoUserinfo is why DendriteOptions has
// Federation: with the default (federation off) the userinfo endpoint a JWT
// service needs is not there.
func TestDendriteWithoutFederationHasNoUserinfo(t *testing.T) {
	ctx := ctxFor(t)
	hs := startDendrite(t, false)
	alice := login(ctx, t, hs, "alice")
	raw, err := lkjwt.RequestOpenIDToken(ctx, hs.URL, alice.UserID.String(), alice.AccessToken)
	require.NoError(t, err)
	var tok lkjwt.OpenIDToken
	require.NoError(t, json.Unmarshal(raw, &tok))
	status, body := userinfo(ctx, t, hs.URL, tok.AccessToken)
	require.Equalf(t, http.StatusNotFound, status, "%s", body)
}

// TestTwoParticipantsThroughJWTService is the MatrixRTC media path of the
// test bed with real peers: Matrix users get OpenID tokens from Dendrite,
// exchange them at the JWT service for LiveKit tokens of one room, and two
// Go participants meet in livekit-server, one hearing the other's Opus.
func TestTwoParticipantsThroughJWTService(t *testing.T) {
	ctx := ctxFor(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server-sdk-go log, last part:\n%s", sdkLog.tail(16<<10))
		}
	})
	hs := startDendrite(t, true)
	start := time.Now()
	lk, err := livekit.Start(ctx, livekit.Options{Dir: t.TempDir(), Test: t})
	require.NoError(t, err)
	t.Logf("livekit-server ready at %s in %s", lk.URL, time.Since(start).Round(time.Millisecond))
	jwt, err := lkjwt.Start(lk.JWTConfig(map[string]string{testbed.ServerName: hs.URL}))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, jwt.Close()) })

	alice := login(ctx, t, hs, "alice")
	bob := login(ctx, t, hs, "bob")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	require.NoError(t, err)

	// With federation on, Dendrite answers userinfo on its plain-HTTP
	// client listener.
	rawA, err := lkjwt.RequestOpenIDToken(ctx, hs.URL, alice.UserID.String(), alice.AccessToken)
	require.NoError(t, err)
	var tokA lkjwt.OpenIDToken
	require.NoError(t, json.Unmarshal(rawA, &tokA))
	require.Equal(t, testbed.ServerName, tokA.MatrixServerName)
	status, body := userinfo(ctx, t, hs.URL, tokA.AccessToken)
	require.Equalf(t, http.StatusOK, status, "%s", body)
	require.JSONEq(t, fmt.Sprintf(`{"sub":%q}`, alice.UserID), body)

	sfuGet := func(u *testbed.User, tok json.RawMessage) lkjwt.Response {
		t.Helper()
		resp, err := lkjwt.Post(ctx, jwt.URL, "/sfu/get", map[string]any{"room": room.RoomID, "openid_token": tok, "device_id": u.DeviceID})
		require.NoError(t, err)
		require.Equal(t, lk.URL, resp.URL)
		return resp
	}
	respA := sfuGet(alice, rawA)
	rawB, err := lkjwt.RequestOpenIDToken(ctx, hs.URL, bob.UserID.String(), bob.AccessToken)
	require.NoError(t, err)
	respB := sfuGet(bob, rawB)
	minted := jwt.Minted()
	require.Len(t, minted, 2)
	require.Equal(t, minted[0].Room, minted[1].Room, "one call, one LiveKit room")
	require.Equal(t, lkjwt.RoomAlias(room.RoomID.String(), lkjwt.LegacySlot), minted[0].Room)
	aliceIdentity := lkjwt.LegacyIdentity(alice.UserID.String(), alice.DeviceID.String())
	require.Equal(t, aliceIdentity, minted[0].Identity)

	// Bob hears: every RTP packet of the first track he is given goes to
	// received, from the SDK's goroutine.
	type heard struct {
		identity string
		pkt      *rtp.Packet
	}
	received := make(chan heard, 256)
	bobRoom, err := lksdk.ConnectToRoomWithToken(respB.URL, respB.JWT, &lksdk.RoomCallback{
		ParticipantCallback: lksdk.ParticipantCallback{
			OnTrackSubscribed: func(track *webrtc.TrackRemote, _ *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
				go func() {
					for {
						pkt, _, err := track.ReadRTP()
						if err != nil {
							return
						}
						select {
						case received <- heard{rp.Identity(), pkt}:
						default: // the test has what it needs
						}
					}
				}()
			},
		},
	})
	require.NoError(t, err)
	t.Cleanup(bobRoom.Disconnect)

	// Alice speaks: the project's embedded 440 Hz Opus tone, 20 ms frames
	// paced by the tone itself, written as samples.
	aliceRoom, err := lksdk.ConnectToRoomWithToken(respA.URL, respA.JWT, &lksdk.RoomCallback{}, lksdk.WithAutoSubscribe(false))
	require.NoError(t, err)
	t.Cleanup(aliceRoom.Disconnect)
	require.Equal(t, minted[0].Room, aliceRoom.Name())
	track, err := lksdk.NewLocalTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	require.NoError(t, err)
	_, err = aliceRoom.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{Name: "tone", Source: lkproto.TrackSource_MICROPHONE})
	require.NoError(t, err)
	tone, err := media.Tone("alice", voip.AudioCodecs[0], 440)
	require.NoError(t, err)
	var in *voip.InboundTrack
	tone.OnInbound(func(tr *voip.InboundTrack) { in = tr })
	var (
		mu   sync.Mutex
		sent = map[string]bool{}
	)
	// The writer's failure, if any, is set before writeDone closes.
	var writeFailure error
	writeDone := make(chan struct{})
	go func() {
		defer close(writeDone)
		buf := make([]byte, 1500)
		for {
			n, err := in.Read(buf)
			if err != nil {
				return // the tone was closed
			}
			var p rtp.Packet
			if err = p.Unmarshal(buf[:n]); err != nil {
				writeFailure = fmt.Errorf("parsing the tone's packet: %w", err)
				return
			}
			payload := append([]byte(nil), p.Payload...)
			mu.Lock()
			sent[string(payload)] = true
			mu.Unlock()
			if err = track.WriteSample(pionmedia.Sample{Data: payload, Duration: 20 * time.Millisecond}, nil); err != nil {
				writeFailure = fmt.Errorf("writing a sample: %w", err)
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = tone.Close()
		<-writeDone
		require.NoError(t, writeFailure)
	})

	// A second of Alice's packets, each one of the tone's, reaches Bob
	// from her identity.
	start = time.Now()
	for n := 0; n < 50; n++ {
		select {
		case h := <-received:
			require.Equal(t, aliceIdentity, h.identity)
			require.EqualValues(t, 48000*20/1000, samples(t, h.pkt.Payload))
			mu.Lock()
			known := sent[string(h.pkt.Payload)]
			mu.Unlock()
			require.True(t, known, "a packet Alice sent")
			if n == 0 {
				t.Logf("first packet %s after publishing", time.Since(start).Round(time.Millisecond))
			}
		case <-writeDone:
			t.Fatalf("alice stopped sending: %v", writeFailure)
		case <-ctx.Done():
			t.Fatalf("bob heard %d of 50 packets: %v\nlivekit-server:\n%s", n, ctx.Err(), lk.LogTail())
		}
	}

	// Refused: an OpenID token Dendrite does not know gets no LiveKit
	// token.
	_, err = lkjwt.Post(ctx, jwt.URL, "/sfu/get", map[string]any{
		"room":         room.RoomID,
		"openid_token": lkjwt.OpenIDToken{AccessToken: "forged", TokenType: "Bearer", MatrixServerName: testbed.ServerName, ExpiresIn: 3600},
		"device_id":    "MALLORY",
	})
	var se *lkjwt.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusUnauthorized, se.Status)
	require.Equal(t, "M_UNAUTHORIZED", se.ErrCode)
	require.Len(t, jwt.Minted(), 2)

	// And livekit-server takes only tokens signed with its secret.
	forged, err := auth.NewAccessToken(lk.APIKey, "not-the-secret-not-the-secret-00").
		SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: minted[0].Room}).SetIdentity("@mallory:localhost:M").SetValidFor(time.Minute).ToJWT()
	require.NoError(t, err)
	_, err = lksdk.ConnectToRoomWithToken(lk.URL, forged, &lksdk.RoomCallback{})
	require.Error(t, err)
}

// samples is the duration of an Opus packet in 48 kHz samples (RFC 6716
// §3.1), for code-0 and code-1 packets (one or two frames), which is what
// the tone is made of.
func samples(t *testing.T, p []byte) int {
	t.Helper()
	require.NotEmpty(t, p)
	toc := p[0]
	config := toc >> 3
	var frame int // in samples at 48 kHz
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = []int{480, 960, 1920, 2880}[config%4]
	case config < 16: // hybrid: 10, 20 ms
		frame = []int{480, 960}[config%2]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = []int{120, 240, 480, 960}[config%4]
	}
	switch toc & 3 {
	case 0:
		return frame
	case 1, 2:
		return 2 * frame
	default:
		require.GreaterOrEqual(t, len(p), 2)
		return int(p[1]&0x3f) * frame
	}
}
