//go:build !opus

package opuscodec

// Available says whether this build has an Opus codec.
const Available = false

// Decoder decodes one stream (never made in this build).
type Decoder struct{}

// NewDecoder returns ErrUnavailable in this build.
func NewDecoder(int) (*Decoder, error) { return nil, ErrUnavailable }

// Decode is never called in this build.
func (*Decoder) Decode([]byte, []int16) (int, error) { return 0, ErrUnavailable }

// Close does nothing.
func (*Decoder) Close() {}

// Encoder encodes one stream (never made in this build).
type Encoder struct{}

// NewEncoder returns ErrUnavailable in this build.
func NewEncoder(int, int) (*Encoder, error) { return nil, ErrUnavailable }

// Encode is never called in this build.
func (*Encoder) Encode([]int16, []byte) (int, error) { return 0, ErrUnavailable }

// Close does nothing.
func (*Encoder) Close() {}
