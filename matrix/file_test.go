package matrix

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// mediaHS is a fake homeserver for the requests SendFile makes.
type mediaHS struct {
	t   *testing.T
	srv *httptest.Server

	mu          sync.Mutex
	v1Config    int    // status of /_matrix/client/v1/media/config (0: 200)
	v3Config    int    // status of /_matrix/media/v3/config (0: 200)
	limit       int64  // m.upload.size (0: none stated)
	encryption  string // the room's m.room.encryption algorithm ("": none)
	uploadFails []int  // statuses answering the first upload tries
	configCalls int
	uploadTries int
	uploads     []upload // the accepted uploads
	sent        []map[string]any
	txnIDs      []string
}

type upload struct {
	body        []byte
	contentType string
	filename    string
}

func newMediaHS(t *testing.T) *mediaHS {
	h := &mediaHS{t: t}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *mediaHS) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	answer := func(status int, body any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	}
	config := func(status int) {
		h.configCalls++
		switch {
		case status == http.StatusNotFound:
			answer(status, map[string]any{"errcode": "M_UNRECOGNIZED", "error": "unknown endpoint"})
		case status != 0:
			answer(status, map[string]any{"errcode": "M_UNKNOWN", "error": "oops"})
		case h.limit > 0:
			answer(http.StatusOK, map[string]any{"m.upload.size": h.limit})
		default:
			answer(http.StatusOK, map[string]any{})
		}
	}
	path := r.URL.Path
	switch {
	case r.Method == http.MethodGet && path == "/_matrix/client/v1/media/config":
		config(h.v1Config)
	case r.Method == http.MethodGet && path == "/_matrix/media/v3/config":
		config(h.v3Config)
	case r.Method == http.MethodPost && path == "/_matrix/media/v3/upload":
		body, err := io.ReadAll(r.Body)
		require.NoError(h.t, err)
		require.Equal(h.t, r.ContentLength, int64(len(body)))
		h.uploadTries++
		if len(h.uploadFails) > 0 {
			status := h.uploadFails[0]
			h.uploadFails = h.uploadFails[1:]
			code := map[int]string{413: "M_TOO_LARGE", 403: "M_FORBIDDEN"}[status]
			if code == "" {
				code = "M_UNKNOWN"
			}
			answer(status, map[string]any{"errcode": code, "error": "no"})
			return
		}
		h.uploads = append(h.uploads, upload{body: body, contentType: r.Header.Get("Content-Type"), filename: r.URL.Query().Get("filename")})
		answer(http.StatusOK, map[string]any{"content_uri": fmt.Sprintf("mxc://hs/media%d", len(h.uploads))})
	case r.Method == http.MethodGet && strings.Contains(path, "/state/m.room.encryption"):
		if h.encryption == "" {
			answer(http.StatusNotFound, map[string]any{"errcode": "M_NOT_FOUND", "error": "no such state"})
			return
		}
		answer(http.StatusOK, map[string]any{"algorithm": h.encryption})
	case r.Method == http.MethodPut && strings.Contains(path, "/send/m.room.message/"):
		var content map[string]any
		require.NoError(h.t, json.NewDecoder(r.Body).Decode(&content))
		h.sent = append(h.sent, content)
		h.txnIDs = append(h.txnIDs, path[strings.LastIndex(path, "/")+1:])
		answer(http.StatusOK, map[string]any{"event_id": fmt.Sprintf("$event%d", len(h.sent))})
	default:
		h.t.Errorf("unexpected request %s %s", r.Method, path)
		answer(http.StatusNotFound, map[string]any{"errcode": "M_UNRECOGNIZED"})
	}
}

// newFileClient is a Client talking to h, as after Start without
// encryption.
func newFileClient(t *testing.T, h *mediaHS) *Client {
	t.Helper()
	st, _ := openStore(t)
	c, err := New(Config{
		Homeserver: HomeserverConfig{URL: h.srv.URL, SyncStaleAfter: time.Minute},
		Bot:        BotConfig{UserID: "@bot:hs", DeviceName: "voipbot"},
		Mode:       ModeUser,
	}, st, prometheus.NewRegistry(), zerolog.Nop())
	require.NoError(t, err)
	c.cli.AccessToken, c.cli.DeviceID = "token", "BOTDEVICE"
	c.cli.StateStore = mautrix.NewMemoryStateStore()
	c.cli.DefaultHTTPBackoff = time.Millisecond
	return c
}

func shortUploadRetries(t *testing.T) {
	uploadRetryDelay = time.Millisecond
	t.Cleanup(func() { uploadRetryDelay = 4 * time.Second })
}

func recording(data []byte) File {
	return File{
		Name: "call.ogg", MimeType: "audio/ogg", Data: bytes.NewReader(data), Size: int64(len(data)),
		MsgType: event.MsgAudio, Duration: 83*time.Second + 250*time.Millisecond,
	}
}

// In a plain room the file goes to the media repository as it is, and the
// message points at it with its type, size and duration.
func TestSendFilePlainRoom(t *testing.T) {
	h := newMediaHS(t)
	h.limit = 1000
	c := newFileClient(t, h)
	data := bytes.Repeat([]byte("opus"), 100)
	f := recording(data)
	f.Caption = "Recording of the call with Alice"

	evtID, err := c.SendFile(context.Background(), "!room:hs", f)
	require.NoError(t, err)
	assert.Equal(t, id.EventID("$event1"), evtID)
	require.Len(t, h.uploads, 1)
	assert.Equal(t, data, h.uploads[0].body)
	assert.Equal(t, "audio/ogg", h.uploads[0].contentType)
	assert.Equal(t, "call.ogg", h.uploads[0].filename)
	require.Len(t, h.sent, 1)
	assert.Equal(t, map[string]any{
		"msgtype":  "m.audio",
		"body":     "Recording of the call with Alice",
		"filename": "call.ogg",
		"url":      "mxc://hs/media1",
		"info":     map[string]any{"mimetype": "audio/ogg", "size": float64(400), "duration": float64(83250)},
	}, h.sent[0])

	// A second file: the upload limit is not asked for again; the message
	// has a transaction ID of its own.
	f = File{Name: "notes.bin", Data: bytes.NewReader([]byte{1, 2, 3}), Size: 3}
	_, err = c.SendFile(context.Background(), "!room:hs", f)
	require.NoError(t, err)
	assert.Equal(t, 1, h.configCalls)
	require.Len(t, h.sent, 2)
	assert.Equal(t, "m.file", h.sent[1]["msgtype"])
	assert.Equal(t, "notes.bin", h.sent[1]["body"], "without a caption the body is the file name")
	assert.Equal(t, map[string]any{"mimetype": "application/octet-stream", "size": float64(3)}, h.sent[1]["info"])
	assert.Equal(t, "application/octet-stream", h.uploads[1].contentType)
	assert.NotEqual(t, h.txnIDs[0], h.txnIDs[1])
}

// A file above the homeserver's m.upload.size is refused before anything
// is uploaded, saying both sizes.
func TestSendFileTooLarge(t *testing.T) {
	h := newMediaHS(t)
	h.limit = 10_000_000
	c := newFileClient(t, h)
	f := recording([]byte("x"))
	f.Size = 12_345_678 // the limit is checked before anything is read
	_, err := c.SendFile(context.Background(), "!room:hs", f)
	require.ErrorIs(t, err, ErrFileTooLarge)
	assert.Contains(t, err.Error(), "12.3 MB is more than its upload limit of 10.0 MB")
	assert.Contains(t, err.Error(), `sending file "call.ogg" to !room:hs`)
	assert.Zero(t, h.uploadTries)
	assert.Empty(t, h.sent)
	f.Size = h.limit + 1
	_, err = c.SendFile(context.Background(), "!room:hs", f)
	require.ErrorIs(t, err, ErrFileTooLarge)
	assert.Contains(t, err.Error(), "10000001 bytes is more than its upload limit of 10000000 bytes", "sizes that read alike are told exactly")

	// The homeserver refusing the upload as too large says so too.
	h.limit = 0
	c = newFileClient(t, h)
	h.uploadFails = []int{413}
	_, err = c.SendFile(context.Background(), "!room:hs", recording([]byte("x")))
	require.ErrorIs(t, err, ErrFileTooLarge)
	require.ErrorIs(t, err, mautrix.MTooLarge)
	assert.Equal(t, 1, h.uploadTries, "a refusal is not retried")
}

// Uploads that may succeed later are tried again, each with the whole
// file; refusals are final at once.
func TestSendFileUploadRetries(t *testing.T) {
	shortUploadRetries(t)
	data := bytes.Repeat([]byte{0xAB}, 100_000)

	t.Run("transient", func(t *testing.T) {
		h := newMediaHS(t)
		c := newFileClient(t, h)
		h.uploadFails = []int{502, 503, 429}
		_, err := c.SendFile(context.Background(), "!room:hs", recording(data))
		require.NoError(t, err)
		assert.Equal(t, 4, h.uploadTries)
		require.Len(t, h.uploads, 1)
		assert.Equal(t, data, h.uploads[0].body)
	})
	t.Run("giving up", func(t *testing.T) {
		h := newMediaHS(t)
		c := newFileClient(t, h)
		h.uploadFails = []int{500, 500, 500, 500, 500}
		_, err := c.SendFile(context.Background(), "!room:hs", recording(data))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "uploading 100.0 kB (try 4)")
		assert.Equal(t, 4, h.uploadTries, "1 + DefaultHTTPRetries tries")
		assert.Empty(t, h.sent)
	})
	t.Run("forbidden", func(t *testing.T) {
		h := newMediaHS(t)
		c := newFileClient(t, h)
		h.uploadFails = []int{403}
		_, err := c.SendFile(context.Background(), "!room:hs", recording(data))
		require.ErrorIs(t, err, mautrix.MForbidden)
		assert.Equal(t, 1, h.uploadTries)
	})
}

// The encrypted upload is ciphertext the media repository learns nothing
// from; the key in the message decrypts it, even after a retried try.
func TestUploadEncrypted(t *testing.T) {
	shortUploadRetries(t)
	h := newMediaHS(t)
	c := newFileClient(t, h)
	h.uploadFails = []int{502}
	data := []byte(strings.Repeat("a recording of a call ", 5000))
	f := recording(data)
	ef := attachment.NewEncryptedFile()
	mxc, err := c.upload(context.Background(), "!room:hs", f, ef)
	require.NoError(t, err)
	assert.Equal(t, 2, h.uploadTries)
	require.Len(t, h.uploads, 1)
	up := h.uploads[0]
	assert.Equal(t, "application/octet-stream", up.contentType)
	assert.Empty(t, up.filename, "the file name stays out of the media repository")
	assert.Len(t, up.body, len(data))
	assert.NotContains(t, string(up.body), "recording")

	// What a recipient does: read the message's file, download, decrypt.
	raw, err := json.Marshal(fileMessage(f, mxc, ef))
	require.NoError(t, err)
	var msg map[string]any
	require.NoError(t, json.Unmarshal(raw, &msg))
	assert.NotContains(t, msg, "url", "the URL is inside file")
	file := msg["file"].(map[string]any)
	assert.Equal(t, "mxc://hs/media1", file["url"])
	assert.Equal(t, "v2", file["v"])
	assert.Equal(t, "A256CTR", file["key"].(map[string]any)["alg"])
	var content event.MessageEventContent
	require.NoError(t, json.Unmarshal(raw, &content))
	require.NotNil(t, content.File)
	plain := bytes.Clone(up.body)
	require.NoError(t, content.File.DecryptInPlace(plain))
	assert.Equal(t, data, plain)
}

// A room with m.room.encryption gets no plaintext file from a bot whose
// encryption is off; the state store is asked first, the homeserver when
// the store does not know.
func TestSendFileEncryptedRoomWithoutEncryption(t *testing.T) {
	h := newMediaHS(t)
	c := newFileClient(t, h)
	h.encryption = string(id.AlgorithmMegolmV1)
	_, err := c.SendFile(context.Background(), "!room:hs", recording([]byte("secret")))
	require.ErrorContains(t, err, "the room is encrypted and the bot's encryption is off")
	assert.Zero(t, h.uploadTries)
	stored, err := c.cli.StateStore.IsEncrypted(context.Background(), "!room:hs")
	require.NoError(t, err)
	assert.True(t, stored, "the homeserver's answer went into the state store")

	h.encryption = "org.example.unknown"
	_, err = c.SendFile(context.Background(), "!other:hs", recording([]byte("secret")))
	require.ErrorContains(t, err, `encrypted with "org.example.unknown"`)
	assert.Zero(t, h.uploadTries)
}

// Homeservers before authenticated media have the media config at the old
// path; one with neither has no known limit, and is not asked again.
func TestUploadSizeLimitFallback(t *testing.T) {
	h := newMediaHS(t)
	h.v1Config, h.limit = http.StatusNotFound, 5000
	c := newFileClient(t, h)
	limit, err := c.uploadSizeLimit(context.Background())
	require.NoError(t, err)
	assert.Equal(t, int64(5000), limit)
	assert.Equal(t, 2, h.configCalls)

	h = newMediaHS(t)
	h.v1Config, h.v3Config = http.StatusNotFound, http.StatusNotFound
	c = newFileClient(t, h)
	for range 2 {
		limit, err = c.uploadSizeLimit(context.Background())
		require.NoError(t, err)
		assert.Zero(t, limit)
	}
	assert.Equal(t, 2, h.configCalls)

	// A failure that may pass is reported, and the next file asks again.
	h = newMediaHS(t)
	h.v1Config = http.StatusInternalServerError
	c = newFileClient(t, h)
	c.cli.DefaultHTTPRetries = 0
	_, err = c.SendFile(context.Background(), "!room:hs", recording([]byte("x")))
	require.ErrorContains(t, err, "asking the homeserver's upload limit")
	h.v1Config = 0
	_, err = c.SendFile(context.Background(), "!room:hs", recording([]byte("x")))
	require.NoError(t, err)
}

func TestFileCheck(t *testing.T) {
	ok := File{Name: "a.ogg", Data: bytes.NewReader([]byte{1}), Size: 1}
	require.NoError(t, ok.check())
	for name, tc := range map[string]struct {
		edit func(*File)
		want string
	}{
		"no name":   {func(f *File) { f.Name = "" }, "no name"},
		"no data":   {func(f *File) { f.Data = nil }, "no data"},
		"empty":     {func(f *File) { f.Size = 0 }, "empty"},
		"duration":  {func(f *File) { f.Duration = -time.Second }, "negative duration"},
		"msgtype":   {func(f *File) { f.MsgType = event.MsgText }, `"m.text" is not one of`},
		"image too": {func(f *File) { f.MsgType = event.MsgImage }, `"m.image" is not one of`},
	} {
		t.Run(name, func(t *testing.T) {
			f := ok
			tc.edit(&f)
			require.ErrorContains(t, f.check(), tc.want)
		})
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1_500_000: "1.5 MB", 104_857_600: "104.9 MB", 3e9: "3.0 GB"} {
		assert.Equal(t, want, byteSize(n).String())
	}
}

// A body the HTTP client never closes is reported instead of waited for
// forever.
func TestUploadBodyWait(t *testing.T) {
	b := &uploadBody{r: strings.NewReader("abc"), closed: make(chan struct{})}
	assert.False(t, b.wait(time.Millisecond))
	_, err := io.Copy(io.Discard, b)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
	assert.True(t, b.wait(time.Millisecond))
	assert.Equal(t, int64(3), b.n.Load())
	_, isSeeker := any(b).(io.Seeker)
	assert.False(t, isSeeker, "nothing may rewind a body")
}
