package matrix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// File is a file to post into a room, such as a call recording.
type File struct {
	// Name is the file name clients show and save it under.
	Name string
	// MimeType is the content's type, such as audio/ogg; ""
	// is application/octet-stream.
	MimeType string
	// Data holds the content: Size bytes from offset 0. Each upload try
	// reads it afresh (an *os.File or a *bytes.Reader will do); nothing
	// reads it once SendFile has returned.
	Data io.ReaderAt
	Size int64
	// MsgType is event.MsgAudio, event.MsgVideo or event.MsgFile ("" is
	// m.file).
	MsgType event.MessageType
	// Duration is the length of a recording; 0 leaves it out.
	Duration time.Duration
	// Caption is the message's text; "" shows the file name alone.
	Caption string
}

// ErrFileTooLarge is the homeserver's upload limit refusing a file.
var ErrFileTooLarge = errors.New("file too large for the homeserver")

// uploadRetryDelay is the first wait between upload tries, doubling after
// each, as mautrix's own retries of the other requests (tests shorten it).
var uploadRetryDelay = 4 * time.Second

// bodyCloseWait bounds the wait for the HTTP client to let go of an upload
// body it has answered for.
const bodyCloseWait = 10 * time.Second

// uploadLimit caches the homeserver's m.upload.size.
type uploadLimit struct {
	mu    sync.Mutex
	known bool
	size  int64 // 0: the homeserver states no limit
}

// SendFile uploads a file to the homeserver's media repository and posts it
// to a room as an m.room.message of f.MsgType. In an encrypted room the
// file is encrypted first (AES-CTR, as the spec's encrypted attachments) and
// the message carries its key, encrypted like every event sent there. A
// file larger than the homeserver's upload limit is refused before it is
// sent, with ErrFileTooLarge. Uploads that fail for a reason that may pass
// (no answer, a 5xx, a rate limit) are tried again, as is the message.
func (c *Client) SendFile(ctx context.Context, room id.RoomID, f File) (id.EventID, error) {
	if err := f.check(); err != nil {
		return "", fmt.Errorf("sending file %q to %s: %w", f.Name, room, err)
	}
	evtID, err := c.sendFile(ctx, room, f)
	if err != nil {
		c.metrics.Errors.WithLabelValues("send").Inc()
		return "", fmt.Errorf("sending file %q to %s: %w", f.Name, room, err)
	}
	return evtID, nil
}

func (f *File) check() error {
	switch {
	case f.Name == "":
		return errors.New("the file has no name")
	case f.Data == nil:
		return errors.New("the file has no data")
	case f.Size <= 0:
		return fmt.Errorf("the file is empty (size %d)", f.Size)
	case f.Duration < 0:
		return fmt.Errorf("negative duration %s", f.Duration)
	}
	switch f.MsgType {
	case "", event.MsgFile, event.MsgAudio, event.MsgVideo:
		return nil
	}
	return fmt.Errorf("message type %q is not one of m.file, m.audio, m.video", f.MsgType)
}

func (c *Client) sendFile(ctx context.Context, room id.RoomID, f File) (id.EventID, error) {
	limit, err := c.uploadSizeLimit(ctx)
	if err != nil {
		return "", err
	}
	if limit > 0 && f.Size > limit {
		size, most := byteSize(f.Size).String(), byteSize(limit).String()
		if size == most {
			size, most = fmt.Sprintf("%d bytes", f.Size), fmt.Sprintf("%d bytes", limit)
		}
		return "", fmt.Errorf("%w: %s is more than its upload limit of %s", ErrFileTooLarge, size, most)
	}
	encrypted, err := c.RoomEncrypted(ctx, room)
	if err != nil {
		return "", err
	}
	if encrypted && c.crypto == nil {
		return "", errors.New("the room is encrypted and the bot's encryption is off: not posting the file unencrypted")
	}
	var ef *attachment.EncryptedFile
	if encrypted {
		ef = attachment.NewEncryptedFile()
	}
	mxc, err := c.upload(ctx, room, f, ef)
	if err != nil {
		return "", err
	}
	content := fileMessage(f, mxc, ef)
	resp, err := c.cli.SendMessageEvent(ctx, room, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: NewTxnID()})
	if err != nil {
		return "", fmt.Errorf("sending the message for %s: %w", mxc, err)
	}
	return resp.EventID, nil
}

// fileMessage is the m.room.message posting an uploaded file: with its
// mxc:// URL, or in an encrypted room with the key to the ciphertext there.
func fileMessage(f File, mxc id.ContentURI, ef *attachment.EncryptedFile) *event.MessageEventContent {
	content := &event.MessageEventContent{
		MsgType:  f.MsgType,
		Body:     f.Name,
		FileName: f.Name,
		Info: &event.FileInfo{
			MimeType: mimeType(f),
			Size:     int(f.Size),
			Duration: int(f.Duration.Milliseconds()),
		},
	}
	if content.MsgType == "" {
		content.MsgType = event.MsgFile
	}
	if f.Caption != "" {
		content.Body = f.Caption
	}
	if ef != nil {
		content.File = &event.EncryptedFileInfo{EncryptedFile: *ef, URL: mxc.CUString()}
	} else {
		content.URL = mxc.CUString()
	}
	return content
}

func mimeType(f File) string {
	if f.MimeType == "" {
		return "application/octet-stream"
	}
	return f.MimeType
}

// RoomEncrypted says whether a room has m.room.encryption: by the state
// store, or else by asking the homeserver (the answer goes into the store,
// where the send path looks).
func (c *Client) RoomEncrypted(ctx context.Context, room id.RoomID) (bool, error) {
	ss := c.cli.StateStore
	if ss == nil {
		return false, errors.New("the client has not started")
	}
	encrypted, err := ss.IsEncrypted(ctx, room)
	if err != nil {
		return false, fmt.Errorf("reading whether the room is encrypted: %w", err)
	}
	if encrypted {
		return true, nil
	}
	var content event.EncryptionEventContent
	err = c.cli.StateEvent(ctx, room, event.StateEncryption, "", &content)
	if errors.Is(err, mautrix.MNotFound) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("reading whether the room is encrypted: %w", err)
	}
	if content.Algorithm != id.AlgorithmMegolmV1 {
		return false, fmt.Errorf("the room is encrypted with %q, which the bot does not support", content.Algorithm)
	}
	if err = ss.SetEncryptionEvent(ctx, room, &content); err != nil {
		return false, fmt.Errorf("storing the room's encryption: %w", err)
	}
	return true, nil
}

// uploadSizeLimit is the homeserver's m.upload.size (0 if it states none),
// asked for once.
func (c *Client) uploadSizeLimit(ctx context.Context) (int64, error) {
	l := &c.uploadLimit
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known {
		return l.size, nil
	}
	resp, err := c.cli.GetMediaConfig(ctx)
	if unsupported(err) {
		// Before authenticated media (Matrix 1.11) the endpoint was here.
		resp = nil
		_, err = c.cli.MakeRequest(ctx, http.MethodGet, c.cli.BuildURL(mautrix.MediaURLPath{"v3", "config"}), nil, &resp)
	}
	switch {
	case unsupported(err):
		c.log.Warn().Err(err).Msg("The homeserver has no media config; its upload limit is unknown")
	case err != nil:
		return 0, fmt.Errorf("asking the homeserver's upload limit: %w", err)
	case resp != nil:
		l.size = resp.UploadSize
	}
	l.known = true
	return l.size, nil
}

// unsupported says whether a homeserver does not know an endpoint.
func unsupported(err error) bool {
	if errors.Is(err, mautrix.MUnrecognized) {
		return true
	}
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) && httpErr.Response != nil {
		s := httpErr.Response.StatusCode
		return s == http.StatusNotFound || s == http.StatusMethodNotAllowed
	}
	return false
}

// upload uploads f's content (encrypted with ef if it is not nil) and
// returns its mxc:// URI. A try that may succeed later is repeated (with a
// fresh read of f.Data) up to the client's DefaultHTTPRetries times.
func (c *Client) upload(ctx context.Context, room id.RoomID, f File, ef *attachment.EncryptedFile) (id.ContentURI, error) {
	log := c.log.With().Stringer("room_id", room).Str("file", f.Name).Int64("size", f.Size).Bool("encrypted", ef != nil).Logger()
	delay := uploadRetryDelay
	for try := 1; ; try++ {
		mxc, err := c.uploadOnce(ctx, f, ef)
		if err == nil {
			log.Debug().Stringer("mxc", mxc).Int("tries", try).Msg("Uploaded file")
			return mxc, nil
		}
		if status := httpStatus(err); status == http.StatusRequestEntityTooLarge || errors.Is(err, mautrix.MTooLarge) {
			return id.ContentURI{}, fmt.Errorf("uploading %s: %w: %w", byteSize(f.Size), ErrFileTooLarge, err)
		}
		retry, after := RetryAfter(err)
		if !retry || try > c.cli.DefaultHTTPRetries || ctx.Err() != nil {
			return id.ContentURI{}, fmt.Errorf("uploading %s (try %d): %w", byteSize(f.Size), try, err)
		}
		wait := max(delay, after)
		log.Warn().Err(err).Int("try", try).Dur("retry_in", wait).Msg("Uploading a file failed; retrying")
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return id.ContentURI{}, fmt.Errorf("uploading %s: %w (after: %w)", byteSize(f.Size), ctx.Err(), err)
		}
		delay *= 2
	}
}

// uploadOnce is one upload try. The content streams from f.Data, through
// the encryption if ef is set; the ciphertext's hash is known once the
// HTTP client has read the body to its end.
func (c *Client) uploadOnce(ctx context.Context, f File, ef *attachment.EncryptedFile) (id.ContentURI, error) {
	var r io.Reader = io.NewSectionReader(f.Data, 0, f.Size)
	contentType, name := mimeType(f), f.Name
	var enc io.ReadCloser
	if ef != nil {
		enc = ef.EncryptStream(r)
		r = enc
		// The media repository sees ciphertext and nothing about it.
		contentType, name = "application/octet-stream", ""
	}
	body := &uploadBody{r: r, closed: make(chan struct{})}
	resp, err := c.cli.UploadMedia(mautrix.WithMaxRetries(ctx, 0), mautrix.ReqUploadMedia{
		Content:       body,
		ContentLength: f.Size,
		ContentType:   contentType,
		FileName:      name,
	})
	// The HTTP client closes the body when it is done with it, which may be
	// after the answer: until then it may still read.
	released := body.wait(bodyCloseWait)
	if err != nil {
		return id.ContentURI{}, err
	}
	switch {
	case !released:
		return id.ContentURI{}, errors.New("the HTTP client did not release the upload body")
	case body.n.Load() != f.Size:
		return id.ContentURI{}, fmt.Errorf("read %d bytes of the file, not %d", body.n.Load(), f.Size)
	case resp.ContentURI.IsEmpty():
		return id.ContentURI{}, errors.New("the homeserver answered the upload without a content URI")
	}
	if enc != nil {
		if err = enc.Close(); err != nil { // fills in the ciphertext's hash
			return id.ContentURI{}, fmt.Errorf("encrypting: %w", err)
		}
	}
	return resp.ContentURI, nil
}

// uploadBody is an upload's request body: it counts what is read and tells
// when the HTTP client closes it. It is deliberately not an io.Seeker, so
// that nothing rewinds it; a new try reads through a new one.
type uploadBody struct {
	r      io.Reader
	n      atomic.Int64
	once   sync.Once
	closed chan struct{}
}

func (b *uploadBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *uploadBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// wait waits up to d for the body to be closed and says whether it was.
func (b *uploadBody) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-b.closed:
		return true
	case <-t.C:
		return false
	}
}

// httpStatus is the HTTP status of a homeserver's answer in err, or 0.
func httpStatus(err error) int {
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) {
		return 0
	}
	if httpErr.Response != nil {
		return httpErr.Response.StatusCode
	}
	if httpErr.RespError != nil {
		return httpErr.RespError.StatusCode
	}
	return 0
}

// byteSize renders a size for people: 12.3 MB.
type byteSize int64

func (s byteSize) String() string {
	const unit = 1000
	if s < unit {
		return fmt.Sprintf("%d B", int64(s))
	}
	div, exp := int64(unit), 0
	for n := int64(s) / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(s)/float64(div), "kMGTPE"[exp])
}
