package sip

import (
	"regexp"
	"strconv"
	"strings"
)

// ContentTypeMediaControl is the content type of jamid's INFO bodies.
const ContentTypeMediaControl = "application/media_control+xml"

// xmlDecl starts every media_control body jamid sends.
const xmlDecl = `<?xml version="1.0" encoding="utf-8" ?>`

// MediaControl is what one media_control INFO body says. jamid's bodies
// are not valid XML ("<mute_state=1/>"), so they are read with the same
// patterns jamid uses (handleMediaControl), not an XML parser.
type MediaControl struct {
	// StreamID is the index of the RTP stream in the SDP (the m= line),
	// or -1 for all streams (no <stream_id>).
	StreamID        int
	KeyframeRequest bool  // <picture_fast_update/>
	Orientation     *int  // device_orientation=<degrees>
	Recording       *bool // recording_state=0|1
	Mute            *bool // mute_state=0|1
	VoiceActivity   *bool // voice_activity=0|1
}

var (
	mcStreamID    = regexp.MustCompile(`<stream_id>([0-9]+)</stream_id>`)
	mcOrientation = regexp.MustCompile(`device_orientation=([-+]?[0-9]+)`)
	mcRecording   = regexp.MustCompile(`recording_state=([0-1])`)
	mcMute        = regexp.MustCompile(`mute_state=([0-1])`)
	mcVoice       = regexp.MustCompile(`voice_activity=([0-1])`)
)

// ParseMediaControl reads a media_control body. ok is false when jamid
// would not recognise it either (it then leaves the INFO unanswered by its
// own code). Like jamid, one primitive is taken per body, the first of
// keyframe, orientation, recording, mute, voice activity.
func ParseMediaControl(body []byte) (mc MediaControl, ok bool) {
	s := string(body)
	mc.StreamID = -1
	if m := mcStreamID.FindStringSubmatch(s); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			mc.StreamID = n
		}
	}
	flag := func(re *regexp.Regexp) (*bool, bool) {
		m := re.FindStringSubmatch(s)
		if m == nil {
			return nil, false
		}
		b := m[1] == "1"
		return &b, true
	}
	switch {
	case strings.Contains(s, "picture_fast_update"):
		mc.KeyframeRequest = true
		return mc, true
	case strings.Contains(s, "device_orientation"):
		m := mcOrientation.FindStringSubmatch(s)
		if m == nil {
			return mc, false
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return mc, false
		}
		mc.Orientation = &n
		return mc, true
	case strings.Contains(s, "recording_state"):
		mc.Recording, ok = flag(mcRecording)
	case strings.Contains(s, "mute_state"):
		mc.Mute, ok = flag(mcMute)
	case strings.Contains(s, "voice_activity"):
		mc.VoiceActivity, ok = flag(mcVoice)
	}
	return mc, ok
}

func streamIDPart(streamIndex int) string {
	if streamIndex < 0 {
		return ""
	}
	return "<stream_id>" + strconv.Itoa(streamIndex) + "</stream_id>"
}

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// KeyframeRequest is the body asking the peer for a keyframe on the video
// stream at streamIndex (-1: all its video streams), as jamid's
// requestKeyframe writes it (the space after <vc_primitive> included).
func KeyframeRequest(streamIndex int) []byte {
	return []byte(xmlDecl + "<media_control><vc_primitive> " + streamIDPart(streamIndex) +
		"<to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>")
}

// MuteState is the body telling the peer we (un)muted, as jamid's
// sendMuteState writes it.
func MuteState(muted bool) []byte {
	return []byte(xmlDecl + "<media_control><vc_primitive><to_encoder><mute_state=" +
		boolDigit(muted) + "/></to_encoder></vc_primitive></media_control>")
}

// VoiceActivity is the body of jamid's sendVoiceActivity.
func VoiceActivity(streamIndex int, active bool) []byte {
	return []byte(xmlDecl + "<media_control><vc_primitive>" + streamIDPart(streamIndex) +
		"<to_encoder><voice_activity=" + boolDigit(active) +
		"/></to_encoder></vc_primitive></media_control>")
}

// RecordingState is the body of jamid's updateRecState.
func RecordingState(recording bool) []byte {
	return []byte(xmlDecl + "<media_control><vc_primitive><to_encoder><recording_state=" +
		boolDigit(recording) + "/></to_encoder></vc_primitive></media_control>")
}
