package media

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/h264writer"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/voip"
)

// Recorder is a forwarder tap writing each track it sees to a file of its own,
// without transcoding: Opus to Ogg, VP8/VP9/AV1 to IVF, H.264 to an Annex B
// stream, G.711 to WAV. Attach it to one leg or to the whole forwarder.
type Recorder struct {
	dir, prefix string
	log         zerolog.Logger

	mu      sync.Mutex
	writers map[*voip.InboundTrack]trackWriter
	files   []string
	failed  map[*voip.InboundTrack]bool
	closed  bool
	packet  rtp.Packet // scratch
}

type trackWriter interface {
	WriteRTP(*rtp.Packet) error
	Close() error
}

var _ voip.Tap = (*Recorder)(nil)

// NewRecorder writes files named <prefix>-<leg>-<track>.<ext> into dir
// (created if missing).
func NewRecorder(dir, prefix string, log zerolog.Logger) (*Recorder, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating recording directory: %w", err)
	}
	return &Recorder{dir: dir, prefix: prefix, log: log, writers: map[*voip.InboundTrack]trackWriter{}, failed: map[*voip.InboundTrack]bool{}}, nil
}

// Files lists the files written so far.
func (r *Recorder) Files() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.files...)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Packet implements voip.Tap.
func (r *Recorder) Packet(t *voip.InboundTrack, h *rtp.Header, payload []byte) {
	if t.DTMFPayloadType != 0 && h.PayloadType == t.DTMFPayloadType {
		return // telephone events are not audio
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.failed[t] {
		return
	}
	w, ok := r.writers[t]
	if !ok {
		var err error
		if w, err = r.open(t); err != nil {
			r.failed[t] = true
			r.log.Error().Err(err).Str("leg", t.Leg).Str("track", t.ID).Msg("Cannot record track")
			return
		}
		r.writers[t] = w
	}
	r.packet.Header = *h
	r.packet.Payload = payload
	if err := w.WriteRTP(&r.packet); err != nil {
		r.failed[t] = true
		r.log.Error().Err(err).Str("leg", t.Leg).Str("track", t.ID).Msg("Recording failed; stopping this track's recording")
	}
}

func (r *Recorder) open(t *voip.InboundTrack) (trackWriter, error) {
	base := unsafeName.ReplaceAllString(fmt.Sprintf("%s-%s-%s", r.prefix, t.Leg, t.ID), "_")
	mime := strings.ToLower(t.Codec.MimeType)
	var ext string
	switch mime {
	case strings.ToLower(webrtc.MimeTypeOpus):
		ext = ".ogg"
	case strings.ToLower(webrtc.MimeTypeVP8), strings.ToLower(webrtc.MimeTypeVP9), strings.ToLower(webrtc.MimeTypeAV1):
		ext = ".ivf"
	case strings.ToLower(webrtc.MimeTypeH264):
		ext = ".h264"
	case strings.ToLower(webrtc.MimeTypePCMU), strings.ToLower(webrtc.MimeTypePCMA):
		ext = ".wav"
	default:
		return nil, fmt.Errorf("recording %s is not supported", t.Codec.MimeType)
	}
	path := filepath.Join(r.dir, base+ext)
	var w trackWriter
	var err error
	switch ext {
	case ".ogg":
		w, err = oggwriter.New(path, 48000, 2)
	case ".ivf":
		// RTP timestamps as pts in a 1/90000 s time base: exact, and read
		// back the same way by any IVF reader.
		w, err = ivfwriter.New(path, ivfwriter.WithCodec(t.Codec.MimeType), ivfwriter.WithFrameRate(1, t.Codec.ClockRate), ivfwriter.WithDirectPTS())
	case ".h264":
		w, err = h264writer.New(path)
	case ".wav":
		w, err = newWAVWriter(path, mime == strings.ToLower(webrtc.MimeTypePCMU), t.Codec.ClockRate)
	}
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	r.files = append(r.files, path)
	return w, nil
}

// Close implements voip.Tap: it finishes every file.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	var errs []error
	for t, w := range r.writers {
		if err := w.Close(); err != nil {
			errs = append(errs, fmt.Errorf("finishing recording of %s/%s: %w", t.Leg, t.ID, err))
		}
	}
	return errors.Join(errs...)
}

// wavWriter writes G.711 RTP payloads into a WAV file (format 7 mu-law or
// 6 A-law, mono); the sizes in the header are filled in on Close.
type wavWriter struct {
	f    *os.File
	data uint32
}

func newWAVWriter(path string, muLaw bool, rate uint32) (*wavWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	format := uint16(6)
	if muLaw {
		format = 7
	}
	hdr := make([]byte, 0, 58)
	hdr = append(hdr, "RIFF\x00\x00\x00\x00WAVEfmt "...)
	hdr = le32(hdr, 18)
	hdr = le16(hdr, format)
	hdr = le16(hdr, 1) // mono
	hdr = le32(hdr, rate)
	hdr = le32(hdr, rate) // bytes per second: one byte per sample
	hdr = le16(hdr, 1)    // block align
	hdr = le16(hdr, 8)    // bits per sample
	hdr = le16(hdr, 0)    // no extension
	hdr = append(hdr, "data\x00\x00\x00\x00"...)
	if _, err = f.Write(hdr); err != nil {
		_ = f.Close()
		return nil, err
	}
	return &wavWriter{f: f}, nil
}

func (w *wavWriter) WriteRTP(p *rtp.Packet) error {
	n, err := w.f.Write(p.Payload)
	w.data += uint32(n)
	return err
}

func (w *wavWriter) Close() error {
	// The RIFF size (at 4) counts all after it: "WAVE", the 26-byte fmt
	// chunk, the data chunk header and the data; the data size is at 42.
	for _, patch := range []struct {
		at  int64
		val uint32
	}{{4, 38 + w.data}, {42, w.data}} {
		if _, err := w.f.Seek(patch.at, io.SeekStart); err != nil {
			_ = w.f.Close()
			return err
		}
		if _, err := w.f.Write(le32(nil, patch.val)); err != nil {
			_ = w.f.Close()
			return err
		}
	}
	return w.f.Close()
}

func le16(b []byte, v uint16) []byte { return append(b, byte(v), byte(v>>8)) }
func le32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}
