package sip

import "testing"

func TestParseMediaControlJamidBodies(t *testing.T) {
	b, i := func(v bool) *bool { return &v }, func(v int) *int { return &v }
	eqB := func(x, y *bool) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	for _, tc := range []struct {
		body string
		want MediaControl
	}{
		{xmlDecl + `<media_control><vc_primitive> <stream_id>0</stream_id><to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>`,
			MediaControl{StreamID: 0, KeyframeRequest: true}},
		{xmlDecl + `<media_control><vc_primitive><to_encoder><device_orientation=-90/></to_encoder><stream_id>1</stream_id></vc_primitive></media_control>`,
			MediaControl{StreamID: 1, Orientation: i(-90)}},
		{xmlDecl + `<media_control><vc_primitive><stream_id>0</stream_id><to_encoder><voice_activity=1/></to_encoder></vc_primitive></media_control>`,
			MediaControl{StreamID: 0, VoiceActivity: b(true)}},
		{xmlDecl + `<media_control><vc_primitive><to_encoder><mute_state=1/></to_encoder></vc_primitive></media_control>`,
			MediaControl{StreamID: -1, Mute: b(true)}},
		{xmlDecl + `<media_control><vc_primitive><to_encoder><recording_state=0/></to_encoder></vc_primitive></media_control>`,
			MediaControl{StreamID: -1, Recording: b(false)}},
		{string(KeyframeRequest(-1)), MediaControl{StreamID: -1, KeyframeRequest: true}},
		{string(KeyframeRequest(2)), MediaControl{StreamID: 2, KeyframeRequest: true}},
		{string(MuteState(false)), MediaControl{StreamID: -1, Mute: b(false)}},
		{string(VoiceActivity(1, false)), MediaControl{StreamID: 1, VoiceActivity: b(false)}},
		{string(RecordingState(true)), MediaControl{StreamID: -1, Recording: b(true)}},
	} {
		got, ok := ParseMediaControl([]byte(tc.body))
		if !ok || got.StreamID != tc.want.StreamID || got.KeyframeRequest != tc.want.KeyframeRequest ||
			!eqB(got.Mute, tc.want.Mute) || !eqB(got.VoiceActivity, tc.want.VoiceActivity) ||
			!eqB(got.Recording, tc.want.Recording) ||
			(got.Orientation == nil) != (tc.want.Orientation == nil) ||
			(got.Orientation != nil && *got.Orientation != *tc.want.Orientation) {
			t.Errorf("%s: got %+v (ok %v), want %+v", tc.body, got, ok, tc.want)
		}
	}
	for _, body := range []string{"", "Signal=5\r\nDuration=160\r\n", xmlDecl + "<media_control><mute_state=x/></media_control>"} {
		if _, ok := ParseMediaControl([]byte(body)); ok {
			t.Errorf("%q parsed as media_control", body)
		}
	}
}

func TestKeyframeRequestIsJamids(t *testing.T) {
	const jamid = `<?xml version="1.0" encoding="utf-8" ?><media_control><vc_primitive> <stream_id>0</stream_id><to_encoder><picture_fast_update/></to_encoder></vc_primitive></media_control>`
	if got := string(KeyframeRequest(0)); got != jamid {
		t.Fatalf("got %s", got)
	}
}

func TestParseUserAgent(t *testing.T) {
	for ua, want := range map[string]Version{
		"Jami Daemon 13.7.0 (linux)":           {13, 7, 0, 0},
		DefaultUserAgent:                       {11, 0, 2, 0},
		"Jami Daemon 16.0.0-4c1e3b8 (android)": {16, 0, 0, 0},
		"Jami Daemon 10.0.2.1 (win)":           {10, 0, 2, 1},
	} {
		if got, ok := ParseUserAgent(ua); !ok || got != want {
			t.Errorf("%q: %v %v", ua, got, ok)
		}
	}
	for _, ua := range []string{"", "Jami Daemon 13.7.0", "Ring 9.0.0 (x)", "Jami Daemon 1.2.3.4.5 (x)", "Jami Daemon a.b (x)"} {
		if v, ok := ParseUserAgent(ua); ok {
			t.Errorf("%q parsed as %v", ua, v)
		}
	}
	v := Version{13, 3, 0, 0}
	if !v.AtLeast(11, 0, 2) || !v.AtLeast(13, 3, 0) || v.AtLeast(13, 11, 0) {
		t.Error("AtLeast")
	}
}
