//go:build linux

package jamid

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
)

// YCbCr is a colour in BT.601 studio range, as a Y4M frame stores it.
type YCbCr struct{ Y, Cb, Cr uint8 }

// WriteY4M writes a YUV4MPEG2 file (4:2:0, fps frames a second) of frames
// frames of one colour: a video source jamid reads with libavformat and
// loops (Jami's file input). A solid colour survives any encoder, so the
// far side can check by content that what it decodes is this file.
func WriteY4M(path string, width, height, fps, frames int, c YCbCr) error {
	if width <= 0 || height <= 0 || width%2 != 0 || height%2 != 0 {
		return fmt.Errorf("y4m %dx%d: width and height must be even and positive", width, height)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating the y4m file: %w", err)
	}
	w := bufio.NewWriter(f)
	// One frame: its header, then the Y, Cb and Cr planes.
	frame := []byte("FRAME\n")
	frame = append(frame, bytes.Repeat([]byte{c.Y}, width*height)...)
	frame = append(frame, bytes.Repeat([]byte{c.Cb}, width*height/4)...)
	frame = append(frame, bytes.Repeat([]byte{c.Cr}, width*height/4)...)
	_, err = fmt.Fprintf(w, "YUV4MPEG2 W%d H%d F%d:1 Ip A1:1 C420jpeg\n", width, height, fps)
	for i := 0; i < frames && err == nil; i++ {
		_, err = w.Write(frame)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("writing the y4m file: %w", err)
	}
	return f.Close()
}

// VideoFileMedia is an audio stream from audioPath (a WAV; "" for the
// default capture device) and a video stream from videoPath (a file jamid
// can demux, e.g. WriteY4M's), for placeCallWithMedia, acceptWithMedia and
// requestMediaChange.
func VideoFileMedia(audioPath, videoPath string) []map[string]string {
	audio := AudioMedia()
	if audioPath != "" {
		audio = AudioFileMedia(audioPath)
	}
	return append(audio, map[string]string{
		"MEDIA_TYPE": "MEDIA_TYPE_VIDEO", "ENABLED": "true", "MUTED": "false", "SOURCE": "file://" + videoPath, "LABEL": "video_0",
	})
}

// Decoding is a video jamid decodes and shows (its decodingStarted
// signal): Sink is the call id for a peer's video ("local" for its own
// preview), and the size is the decoded picture's.
type Decoding struct {
	Sink          string
	Width, Height int
	Mixer         bool
}

// WaitDecoding waits for jamid to start decoding a video for which match
// is true, from signal index since on (SignalCount).
func (d *Daemon) WaitDecoding(ctx context.Context, since int, match func(Decoding) bool) (Decoding, error) {
	var got Decoding
	_, err := d.WaitSignal(ctx, since, func(s Signal) bool {
		if s.Interface() != VideoManager || s.Member() != "decodingStarted" {
			return false
		}
		dec := Decoding{Sink: s.str(0), Width: int(s.int32(2)), Height: int(s.int32(3))}
		if len(s.Body) > 4 {
			dec.Mixer, _ = s.Body[4].(bool)
		}
		if !match(dec) {
			return false
		}
		got = dec
		return true
	})
	if err != nil {
		return Decoding{}, fmt.Errorf("waiting for jamid to decode a video: %w", err)
	}
	return got, nil
}
