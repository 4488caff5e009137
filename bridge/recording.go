package bridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/voip/media"
)

// recording is a bridge's recorder: a tap on each party's media writing
// its tracks without transcoding (Opus to Ogg, VP8/VP9 to IVF), posted
// into the room when the call ends.
type recording struct {
	rec     *media.Recorder
	started time.Time
}

// recordingOn says whether calls in room are recorded (and may be).
func (reg *registry) recordingOn(ctx context.Context, room id.RoomID) bool {
	if !reg.cfg.Recording {
		return false
	}
	r, err := reg.store.Room(ctx, room)
	if err != nil {
		reg.log.Warn().Err(err).Stringer("room_id", room).Msg("Cannot read the room's settings; not recording")
		return false
	}
	return r != nil && r.Settings.Record
}

// startRecording starts recording the bridge if its room records calls
// (on the queue, as the bridge starts).
func (b *Bridge) startRecording() {
	if !b.reg.recordingOn(b.reg.ctx, b.room) {
		return
	}
	rec, err := media.NewRecorder(b.reg.recordDir, string(b.id), b.log)
	if err != nil {
		b.log.Err(err).Msg("Cannot record the call")
		b.reg.notice(b.room, fmt.Sprintf("This call cannot be recorded: %v", err))
		return
	}
	b.recording = &recording{rec: rec, started: b.reg.now()}
	b.reg.notice(b.room, "🔴 This call is being recorded; the recording is posted here when it ends.")
}

// finishRecording closes the files and posts them into the room, then
// removes them unless media.keep_recordings. It runs once the forwarder
// has stopped (off the queue).
func (b *Bridge) finishRecording() {
	r := b.recording
	if r == nil {
		return
	}
	if err := r.rec.Close(); err != nil {
		b.log.Warn().Err(err).Msg("Finishing the recording")
	}
	files := r.rec.Files()
	if len(files) == 0 {
		b.reg.notice(b.room, "Recording stopped: nothing was recorded.")
		return
	}
	ctx, cancel := context.WithTimeout(b.reg.ctx, 5*time.Minute)
	defer cancel()
	duration := b.reg.now().Sub(r.started)
	var failed []string
	for _, path := range files {
		if err := b.reg.postFile(ctx, b.room, path, duration); err != nil {
			b.log.Err(err).Str("file", path).Msg("Failed to post a recording")
			failed = append(failed, fmt.Sprintf("%s (%v)", filepath.Base(path), err))
			continue
		}
		if !b.reg.keepRecordings {
			if err := os.Remove(path); err != nil {
				b.log.Warn().Err(err).Str("file", path).Msg("Removing a posted recording")
			}
		}
	}
	if len(failed) > 0 {
		b.reg.notice(b.room, "Recording stopped, but not all of it could be posted (kept on the bot's disk): "+strings.Join(failed, "; "))
		return
	}
	b.reg.notice(b.room, fmt.Sprintf("Recording stopped (%s, %d file(s) above).", duration.Round(time.Second), len(files)))
}

// postFile posts one recorded file into room: Ogg/Opus as audio, IVF as a
// file (few clients play IVF video inline).
func (reg *registry) postFile(ctx context.Context, room id.RoomID, path string, duration time.Duration) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	file := matrix.File{Name: filepath.Base(path), Data: f, Size: info.Size(), Duration: duration, MsgType: event.MsgFile}
	switch filepath.Ext(path) {
	case ".ogg":
		file.MimeType, file.MsgType = "audio/ogg", event.MsgAudio
	case ".ivf":
		file.MimeType = "video/x-ivf"
	case ".wav":
		file.MimeType, file.MsgType = "audio/wav", event.MsgAudio
	case ".h264":
		file.MimeType = "video/h264"
	}
	_, err = reg.mx.SendFile(ctx, room, file)
	return err
}

// setRecord shows or sets whether calls in this room are recorded.
func (b *Bot) setRecord(ctx context.Context, evt *matrix.Event, args []string) (string, error) {
	if !b.cfg.Calls.Recording {
		return "", userErrorf("recording is turned off by the bot's operator (calls.recording)")
	}
	room, err := b.store.Room(ctx, evt.RoomID)
	if err != nil {
		return "", err
	}
	if room == nil {
		return "", errors.New("the bot has no record of this room")
	}
	state := map[bool]string{true: "on", false: "off"}
	if len(args) == 0 {
		return fmt.Sprintf("Recording of calls in this room is **%s**. Choose with `%s record on|off`.",
			state[room.Settings.Record], b.cfg.Commands.Prefix), nil
	}
	if may, err := b.mx.MayChangeState(ctx, evt.RoomID, evt.Sender); err != nil {
		return "", err
	} else if !may {
		return "", userErrorf("only members who may change this room's settings (power level at least the room's state_default) may turn recording on or off")
	}
	switch strings.ToLower(args[0]) {
	case "on":
		room.Settings.Record = true
	case "off":
		room.Settings.Record = false
	default:
		return "", userErrorf("%q: say on or off", args[0])
	}
	if err = b.store.SetRoomSettings(ctx, evt.RoomID, room.Settings); err != nil {
		return "", err
	}
	if room.Settings.Record {
		return "Recording is now **on**: calls in this room from now on are recorded, and each recording is posted here when its call ends.", nil
	}
	return "Recording is now **off** for new calls in this room (a call being recorded keeps its recording until it ends).", nil
}
