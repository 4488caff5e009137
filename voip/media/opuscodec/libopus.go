//go:build opus

package opuscodec

/*
#cgo pkg-config: opus
#include <opus.h>

static int voipbot_opus_set_bitrate(OpusEncoder *e, opus_int32 bitrate) {
	return opus_encoder_ctl(e, OPUS_SET_BITRATE(bitrate));
}
static int voipbot_opus_set_fec(OpusEncoder *e, opus_int32 on) {
	return opus_encoder_ctl(e, OPUS_SET_INBAND_FEC(on));
}
static int voipbot_opus_set_complexity(OpusEncoder *e, opus_int32 c) {
	return opus_encoder_ctl(e, OPUS_SET_COMPLEXITY(c));
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Available says whether this build has an Opus codec.
const Available = true

func opusError(what string, code C.int) error {
	return fmt.Errorf("opus: %s: %s", what, C.GoString(C.opus_strerror(code)))
}

// Decoder decodes one stream. It is not safe for concurrent use.
type Decoder struct {
	d        *C.OpusDecoder
	channels int
}

// NewDecoder makes a decoder of 48 kHz audio with channels channels
// (whatever the sender encoded, libopus decodes to this).
func NewDecoder(channels int) (*Decoder, error) {
	var code C.int
	d := C.opus_decoder_create(C.opus_int32(SampleRate), C.int(channels), &code)
	if code != C.OPUS_OK {
		return nil, opusError("making a decoder", code)
	}
	return &Decoder{d: d, channels: channels}, nil
}

// Decode decodes one packet into pcm (interleaved, len(pcm)/channels
// samples per channel at most) and returns the samples per channel. A nil
// packet conceals a lost one (libopus's packet loss concealment) for
// len(pcm)/channels samples.
func (d *Decoder) Decode(packet []byte, pcm []int16) (int, error) {
	if len(pcm) < d.channels {
		return 0, fmt.Errorf("opus: decoding into %d samples", len(pcm))
	}
	var data *C.uchar
	if len(packet) > 0 {
		data = (*C.uchar)(unsafe.Pointer(&packet[0]))
	}
	n := C.opus_decode(d.d, data, C.opus_int32(len(packet)), (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(len(pcm)/d.channels), 0)
	if n < 0 {
		return 0, opusError("decoding", n)
	}
	return int(n), nil
}

// Close frees the decoder.
func (d *Decoder) Close() {
	if d.d != nil {
		C.opus_decoder_destroy(d.d)
		d.d = nil
	}
}

// Encoder encodes one stream of voice. It is not safe for concurrent use.
type Encoder struct {
	e        *C.OpusEncoder
	channels int
}

// NewEncoder makes a VoIP encoder of 48 kHz audio at bitrate bits/s, with
// in-band FEC (what browsers send and expect).
func NewEncoder(channels, bitrate int) (*Encoder, error) {
	var code C.int
	e := C.opus_encoder_create(C.opus_int32(SampleRate), C.int(channels), C.OPUS_APPLICATION_VOIP, &code)
	if code != C.OPUS_OK {
		return nil, opusError("making an encoder", code)
	}
	if code = C.voipbot_opus_set_bitrate(e, C.opus_int32(bitrate)); code != C.OPUS_OK {
		C.opus_encoder_destroy(e)
		return nil, opusError("setting the bitrate", code)
	}
	if code = C.voipbot_opus_set_fec(e, 1); code != C.OPUS_OK {
		C.opus_encoder_destroy(e)
		return nil, opusError("turning FEC on", code)
	}
	// Complexity 5 of 10: about half the CPU of libopus's default for
	// voice that is hard to tell apart (the mixer encodes one stream per
	// mixed leg, every 20 ms).
	if code = C.voipbot_opus_set_complexity(e, 5); code != C.OPUS_OK {
		C.opus_encoder_destroy(e)
		return nil, opusError("setting the complexity", code)
	}
	return &Encoder{e: e, channels: channels}, nil
}

// Encode encodes one frame of pcm (interleaved; 2.5–60 ms of samples) into
// out and returns the packet's length.
func (e *Encoder) Encode(pcm []int16, out []byte) (int, error) {
	if len(pcm) < e.channels || len(out) == 0 {
		return 0, fmt.Errorf("opus: encoding %d samples into %d bytes", len(pcm), len(out))
	}
	n := C.opus_encode(e.e, (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(len(pcm)/e.channels),
		(*C.uchar)(unsafe.Pointer(&out[0])), C.opus_int32(len(out)))
	if n < 0 {
		return 0, opusError("encoding", n)
	}
	return int(n), nil
}

// Close frees the encoder.
func (e *Encoder) Close() {
	if e.e != nil {
		C.opus_encoder_destroy(e.e)
		e.e = nil
	}
}
