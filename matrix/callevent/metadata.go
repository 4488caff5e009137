package callevent

import (
	"encoding/json"
)

// Purpose is what a media stream is for.
type Purpose string

// The two purposes the spec defines; streams with any other are ignored.
const (
	PurposeUserMedia   Purpose = "m.usermedia"
	PurposeScreenshare Purpose = "m.screenshare"
)

// StreamInfo describes one media stream (by its MediaStream id, the "msid"
// in the SDP) of the sender.
type StreamInfo struct {
	Purpose    Purpose `json:"purpose"`
	AudioMuted bool    `json:"audio_muted"`
	VideoMuted bool    `json:"video_muted"`
}

// UnmarshalJSON also reads "audio_muted:" and "video_muted:": the spec's own
// example of sdp_stream_metadata_changed has that typo, and clients written
// from it may send it.
func (s *StreamInfo) UnmarshalJSON(raw []byte) error {
	var v struct {
		Purpose        Purpose `json:"purpose"`
		AudioMuted     *bool   `json:"audio_muted"`
		VideoMuted     *bool   `json:"video_muted"`
		AudioMutedTypo *bool   `json:"audio_muted:"`
		VideoMutedTypo *bool   `json:"video_muted:"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	*s = StreamInfo{Purpose: v.Purpose, AudioMuted: firstBool(v.AudioMuted, v.AudioMutedTypo), VideoMuted: firstBool(v.VideoMuted, v.VideoMutedTypo)}
	return nil
}

func firstBool(values ...*bool) bool {
	for _, v := range values {
		if v != nil {
			return *v
		}
	}
	return false
}

// Known says whether the purpose is one the spec defines.
func (s StreamInfo) Known() bool {
	return s.Purpose == PurposeUserMedia || s.Purpose == PurposeScreenshare
}

// Streams maps MediaStream ids to what they are.
type Streams map[string]StreamInfo

// StreamMetadata is the sdp_stream_metadata field of invite, answer,
// negotiate and sdp_stream_metadata_changed (MSC3077), under its stable name
// and the unstable one older clients read. It is embedded, so it must not
// have JSON methods of its own (they would replace the embedding struct's).
// Only absent (nil) metadata is left out: an empty map says "no streams",
// which is metadata (and sdp_stream_metadata_changed requires the field).
type StreamMetadata struct {
	Metadata         Streams `json:"sdp_stream_metadata,omitzero"`
	UnstableMetadata Streams `json:"org.matrix.msc3077.sdp_stream_metadata,omitzero"`
}

// Streams is the metadata the sender sent, under either name; nil if it sent
// none (a client that does not support MSC3077: use its first stream only).
func (m *StreamMetadata) Streams() Streams {
	if m.Metadata != nil {
		return m.Metadata
	}
	return m.UnstableMetadata
}

// SetStreams sets the metadata under both names.
func (m *StreamMetadata) SetStreams(s Streams) {
	m.Metadata = s
	m.UnstableMetadata = s
}
