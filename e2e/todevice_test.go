package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/store"
)

// TestEncryptedToDeviceIsDecryptedBeforeDispatch runs the Matrix client in
// process with a handler for a to-device type, as group calls will use it,
// and has a real client send it both plain and Olm-encrypted.
func TestEncryptedToDeviceIsDecryptedBeforeDispatch(t *testing.T) {
	ctx := ctxFor(t)
	localpart := fmt.Sprintf("inproc%d", userSeq.Add(1))
	botUser, err := hs.Register(ctx, localpart, "pw-"+localpart)
	require.NoError(t, err)
	st, err := store.Open(ctx, store.Config{Path: filepath.Join(t.TempDir(), "voipbot.db")}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	mx, err := matrix.New(matrix.Config{
		Homeserver: matrix.HomeserverConfig{URL: hs.URL, SyncStaleAfter: 40 * time.Second},
		Bot:        matrix.BotConfig{UserID: botUser, Password: "pw-" + localpart, DeviceName: "voipbot"},
		Mode:       matrix.ModeUser,
		Encryption: matrix.EncryptionConfig{Enabled: true, PickleKey: "0123456789abcdef-" + localpart, KeyWait: 5 * time.Second},
	}, st, prometheus.NewRegistry(), zerolog.Nop())
	require.NoError(t, err)
	testType := event.Type{Type: "org.voipbot.test", Class: event.ToDeviceEventType}
	got := make(chan *matrix.Event, 2)
	mx.On(testType, nil, func(_ context.Context, evt *matrix.Event) error {
		got <- evt
		return nil
	})
	require.NoError(t, mx.Start(ctx))
	runCtx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- mx.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-ran)
		mx.Stop(time.Second)
	})
	require.NoError(t, testbed.WaitFor(ctx, func() (bool, error) {
		ok, _ := mx.Health().Ready(time.Now())
		return ok, nil
	}))

	alice := newUser(t, hs, "alice", true)
	_, err = alice.SendToDevice(ctx, testType, &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
		botUser: {mx.DeviceID(): {Raw: map[string]any{"n": "plain"}}},
	}})
	require.NoError(t, err)
	plain := <-got
	require.False(t, plain.Encrypted)
	require.Equal(t, "plain", plain.Content.Raw["n"])

	mach := alice.Crypto.Machine()
	device, err := mach.GetOrFetchDevice(ctx, botUser, mx.DeviceID())
	require.NoError(t, err)
	require.NoError(t, mach.SendEncryptedToDevice(ctx, device, testType, event.Content{Raw: map[string]any{"n": "secret"}}))
	var decrypted *matrix.Event
	select {
	case decrypted = <-got:
	case <-ctx.Done():
		t.Fatal("the encrypted to-device event did not reach the handler")
	}
	require.True(t, decrypted.Encrypted, "it arrived encrypted")
	require.Equal(t, testType, decrypted.Type, "the handler sees the inner type")
	require.Equal(t, "secret", decrypted.Content.Raw["n"])
	require.Equal(t, alice.UserID, decrypted.Sender)
	require.Equal(t, alice.DeviceID, decrypted.SenderDevice, "the sending device, as Olm proved it")
}
