//go:build vpx

package media

import (
	"encoding/binary"
	"fmt"
	"image"
	"io"
	"time"

	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/codec/vpx"
	"github.com/pion/mediadevices/pkg/frame"
	"github.com/pion/mediadevices/pkg/io/video"
	"github.com/pion/mediadevices/pkg/prop"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/voipbot/voipbot/voip"
)

const (
	patternWidth  = 320
	patternHeight = 240
	patternFPS    = 15
)

// Pattern makes a source leg sending a live-encoded moving test pattern
// (VP8, libvpx through mediadevices; build tag vpx). A receiver's keyframe
// request forces a keyframe.
func Pattern(id string) (*voip.SourceLeg, error) {
	enc, err := newPatternEncoder()
	if err != nil {
		return nil, err
	}
	stream := voip.NewPacketized(webrtc.RTPCodecTypeVideo, voip.VideoCodecs[0], id+"-pattern", id)
	payloader := &codecs.VP8Payloader{EnablePictureID: true}
	frameTime := time.Second / patternFPS
	return play(id, stream, enc.Close, func(done <-chan struct{}) error {
		p := newPacer()
		var step uint32
		for p.wait(frameTime, done) {
			select {
			case <-stream.KeyframeRequests():
				if kc, ok := enc.Controller().(codec.KeyFrameController); ok {
					_ = kc.ForceKeyFrame()
				}
			default:
			}
			data, release, err := enc.Read()
			if err != nil {
				return fmt.Errorf("encoding test pattern: %w", err)
			}
			pkts := payloader.Payload(mtu, data)
			release()
			for j, pl := range pkts {
				if stream.Write(pl, j == len(pkts)-1, step) != nil {
					return nil
				}
				step = 0
			}
			step = 90000 / patternFPS
		}
		return nil
	}), nil
}

func newPatternEncoder() (codec.ReadCloser, error) {
	params, err := vpx.NewVP8Params()
	if err != nil {
		return nil, err
	}
	params.BitRate = 250_000
	params.KeyFrameInterval = 2 * patternFPS
	media := prop.Media{Video: prop.Video{Width: patternWidth, Height: patternHeight, FrameRate: patternFPS, FrameFormat: frame.FormatI420}}
	enc, err := params.BuildVideoEncoder(movingPattern(), media)
	if err != nil {
		return nil, fmt.Errorf("starting VP8 encoder: %w", err)
	}
	return enc, nil
}

// movingPattern draws colour bars with a white bar sweeping across them,
// one frame per call (the caller paces).
func movingPattern() video.Reader {
	colours := [][3]uint8{{235, 128, 128}, {210, 16, 146}, {170, 166, 16}, {145, 54, 34}, {107, 202, 222}, {82, 90, 240}, {41, 240, 110}}
	n := 0
	return video.ReaderFunc(func() (image.Image, func(), error) {
		img := image.NewYCbCr(image.Rect(0, 0, patternWidth, patternHeight), image.YCbCrSubsampleRatio420)
		bar := n * 4 % patternWidth
		for y := range patternHeight {
			for x := range patternWidth {
				c := colours[x*len(colours)/patternWidth]
				luma := c[0]
				if x >= bar && x < bar+16 {
					luma = 255
				}
				img.Y[y*img.YStride+x] = luma
				if y%2 == 0 && x%2 == 0 {
					img.Cb[y/2*img.CStride+x/2] = c[1]
					img.Cr[y/2*img.CStride+x/2] = c[2]
				}
			}
		}
		n++
		return img, func() {}, nil
	})
}

// WritePatternIVF encodes frames of the moving pattern into an IVF file:
// the asset the default build plays.
func WritePatternIVF(w io.Writer, frames int) error {
	enc, err := newPatternEncoder()
	if err != nil {
		return err
	}
	defer enc.Close()
	hdr := make([]byte, 32)
	copy(hdr, "DKIF")
	binary.LittleEndian.PutUint16(hdr[6:], 32)
	copy(hdr[8:], "VP80")
	binary.LittleEndian.PutUint16(hdr[12:], patternWidth)
	binary.LittleEndian.PutUint16(hdr[14:], patternHeight)
	binary.LittleEndian.PutUint32(hdr[16:], patternFPS) // timebase denominator
	binary.LittleEndian.PutUint32(hdr[20:], 1)          // numerator
	binary.LittleEndian.PutUint32(hdr[24:], uint32(frames))
	if _, err = w.Write(hdr); err != nil {
		return err
	}
	for i := range frames {
		data, release, err := enc.Read()
		if err != nil {
			return fmt.Errorf("encoding frame %d: %w", i, err)
		}
		fh := make([]byte, 12)
		binary.LittleEndian.PutUint32(fh, uint32(len(data)))
		binary.LittleEndian.PutUint64(fh[4:], uint64(i))
		_, err = w.Write(append(fh, data...))
		release()
		if err != nil {
			return err
		}
	}
	return nil
}
