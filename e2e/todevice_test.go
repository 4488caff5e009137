package e2e

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix"
)

// TestEncryptedToDeviceIsDecryptedBeforeDispatch runs the Matrix client in
// process with a handler for a to-device type, as group calls will use it,
// and has a real client send it both plain and Olm-encrypted.
func TestEncryptedToDeviceIsDecryptedBeforeDispatch(t *testing.T) {
	ctx := ctxFor(t)
	testType := event.Type{Type: "org.voipbot.test", Class: event.ToDeviceEventType}
	got := make(chan *matrix.Event, 2)
	mx, botUser := startInProcess(t, func(mx *matrix.Client) {
		mx.On(testType, nil, func(_ context.Context, evt *matrix.Event) error {
			got <- evt
			return nil
		})
	})

	alice := newUser(t, hs, "alice", true)
	_, err := alice.SendToDevice(ctx, testType, &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
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
