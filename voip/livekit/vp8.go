package livekit

import (
	"errors"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// Encrypted video: livekit-client encrypts each encoded VP8 frame whole
// (before it is cut into RTP packets), so a frame must be put back
// together from its packets, decrypted or encrypted, and cut again.

// vp8MTU bounds the payload of each packet a frame is cut into.
const vp8MTU = 1100

// vp8Frames puts VP8 frames back together from RTP packets (RFC 7741): a
// frame starts with a packet whose descriptor has S set and partition 0,
// ends at the marker bit, and is dropped if a packet of it is missing.
type vp8Frames struct {
	frame   []byte
	ts      uint32
	nextSeq uint16
	open    bool
}

// add takes one packet and returns a whole frame when this packet ends
// one (nil otherwise). The frame is only valid until the next call.
func (a *vp8Frames) add(h *rtp.Header, payload []byte) []byte {
	var d codecs.VP8Packet
	body, err := d.Unmarshal(payload)
	if err != nil {
		a.open = false
		return nil
	}
	switch {
	case d.S == 1 && d.PID == 0:
		a.frame, a.ts, a.open = append(a.frame[:0], body...), h.Timestamp, true
	case !a.open || h.Timestamp != a.ts || h.SequenceNumber != a.nextSeq:
		a.open = false // a packet lost: the frame cannot be decrypted
		return nil
	default:
		a.frame = append(a.frame, body...)
	}
	a.nextSeq = h.SequenceNumber + 1
	if !h.Marker {
		return nil
	}
	a.open = false
	return a.frame
}

// vp8Clear is how much of a frame livekit-client leaves in the clear: the
// VP8 payload header (10 bytes of a keyframe, 3 of an interframe), so
// that the SFU can still tell keyframes.
func vp8Clear(frame []byte) int {
	if len(frame) > 0 && frame[0]&1 == 0 {
		return 10
	}
	return 3
}

// errShortFrame is a VP8 frame too short to have its header.
var errShortFrame = errors.New("a VP8 frame shorter than its header")

// DecryptVP8 decrypts a whole VP8 frame from identity into dst.
func (r *KeyRing) DecryptVP8(dst, frame []byte, identity string) ([]byte, error) {
	return r.decrypt(dst, frame, identity, vp8Clear(frame))
}

// EncryptVP8 encrypts a whole VP8 frame into dst (not aliasing frame).
func (e *Encryptor) EncryptVP8(dst, frame []byte) ([]byte, error) {
	clear := vp8Clear(frame)
	if len(frame) < clear {
		return nil, errShortFrame
	}
	return e.encrypt(dst, frame, clear)
}

// vp8Packets cuts a frame into RTP packets of the frame's timestamp,
// numbered from *seq on, the marker on the last.
func vp8Packets(frame []byte, h rtp.Header, seq *uint16) []*rtp.Packet {
	var pay codecs.VP8Payloader
	parts := pay.Payload(vp8MTU, frame)
	out := make([]*rtp.Packet, 0, len(parts))
	for i, p := range parts {
		ph := h
		ph.SequenceNumber = *seq
		*seq++
		ph.Marker = i == len(parts)-1
		ph.Padding, ph.PaddingSize = false, 0
		ph.Extension, ph.Extensions = false, nil
		out = append(out, &rtp.Packet{Header: ph, Payload: p})
	}
	return out
}
