package e2e

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"

	"github.com/voipbot/voipbot/internal/testbed"
	"github.com/voipbot/voipbot/matrix"
)

// TestSendFile has the bot's client post a recording into a plain and an
// encrypted room; the other member receives it and gets the same bytes
// back from the media repository (decrypting them in the encrypted room).
func TestSendFile(t *testing.T) {
	mx, botUser := startInProcess(t, nil)
	data := make([]byte, 300_000)
	_, _ = rand.Read(data)
	for _, encrypted := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "encrypted"}[encrypted], func(t *testing.T) {
			ctx := ctxFor(t)
			alice := newUser(t, hs, "alice", encrypted)
			room := inviteBot(t, alice, botUser, encrypted)
			// The bot's sync has brought the room's members (whom an
			// encrypted message's room key goes to).
			require.NoError(t, testbed.WaitFor(ctx, func() (bool, error) {
				n, err := mx.OthersInRoom(ctx, room, "")
				return n == 1, err
			}))

			evtID, err := mx.SendFile(ctx, room, matrix.File{
				Name: "call.ogg", MimeType: "audio/ogg", Data: bytes.NewReader(data), Size: int64(len(data)),
				MsgType: event.MsgAudio, Duration: 95 * time.Second, Caption: "Call recording",
			})
			require.NoError(t, err)
			evt, err := alice.WaitEvent(ctx, func(evt *event.Event) bool { return evt.ID == evtID })
			require.NoError(t, err)
			require.Equal(t, botUser, evt.Sender)
			require.Equal(t, encrypted, evt.Mautrix.WasEncrypted)
			_ = evt.Content.ParseRaw(evt.Type)
			msg := evt.Content.AsMessage()
			require.Equal(t, event.MsgAudio, msg.MsgType)
			require.Equal(t, "Call recording", msg.Body)
			require.Equal(t, "call.ogg", msg.FileName)
			require.NotNil(t, msg.Info)
			require.Equal(t, "audio/ogg", msg.Info.MimeType)
			require.Equal(t, len(data), msg.Info.Size)
			require.Equal(t, 95_000, msg.Info.Duration)

			var got []byte
			if encrypted {
				require.Empty(t, msg.URL, "no plaintext URL in an encrypted room")
				require.NotNil(t, msg.File)
				mxc, err := msg.File.URL.Parse()
				require.NoError(t, err)
				got, err = alice.DownloadBytes(ctx, mxc)
				require.NoError(t, err)
				require.NotEqual(t, data, got, "the media repository holds ciphertext")
				require.NoError(t, msg.File.DecryptInPlace(got))
			} else {
				require.Nil(t, msg.File)
				mxc, err := msg.URL.Parse()
				require.NoError(t, err)
				got, err = alice.DownloadBytes(ctx, mxc)
				require.NoError(t, err)
			}
			require.Equal(t, data, got)
		})
	}

	// Dendrite's default limit is 10 MiB: a larger file is refused before
	// a byte of it is read.
	t.Run("too large", func(t *testing.T) {
		ctx := ctxFor(t)
		alice := newUser(t, hs, "alice", false)
		room := inviteBot(t, alice, botUser, false)
		_, err := mx.SendFile(ctx, room, matrix.File{Name: "long.webm", MimeType: "video/webm", Data: unreadable{}, Size: 11_000_000, MsgType: event.MsgVideo})
		require.ErrorIs(t, err, matrix.ErrFileTooLarge)
		require.ErrorContains(t, err, "11.0 MB is more than its upload limit of 10.5 MB")
	})
}

// unreadable is file data that must not be read.
type unreadable struct{}

func (unreadable) ReadAt([]byte, int64) (int, error) {
	return 0, errors.New("read a file that was to be refused")
}
