package rtc

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/matrix/rtcevent"
	"github.com/voipbot/voipbot/voip/livekit"
)

// Per-participant media keys, as Element Call keeps them in an encrypted
// room (js-sdk RTCEncryptionManager): each member has a key of its own,
// sent Olm-encrypted to every other member's device. A member leaving
// makes everyone rotate (it must not hear what follows); a member joining
// is given the current key if that is under keyReuseAge old, else everyone
// rotates (it must not decrypt what came before). A new key is used only
// after keyUseDelay, so that it has reached the others first; until then
// they decrypt with the old one, which they keep.
const (
	keyReuseAge = 10 * time.Second
	keyUseDelay = 5 * time.Second // Element Call's wait_for_key_rotation_ms
)

// ownKey is the bot's current media key; only the leg's queue touches it.
type ownKey struct {
	index   uint8
	raw     []byte
	made    time.Time
	sentTo  map[string]bool // identities that have it
	started bool
}

// newOwnKey makes the next key (index+1 mod 256) of ours.
func (k *ownKey) next(now time.Time) {
	raw := make([]byte, rtcevent.KeyLength)
	_, _ = rand.Read(raw) // never fails (crypto/rand)
	if k.started {
		k.index++
	}
	k.started, k.raw, k.made, k.sentTo = true, raw, now, map[string]bool{}
}

// keysFor: on the queue, with the call's members now, decide what to send
// whom: nothing, our key to newcomers, or a new key to all.
func (l *Leg) keysFor(members []rtcevent.Member) {
	if !l.encrypted || l.sharedKey != "" {
		return
	}
	now := time.Now()
	current := map[string]bool{}
	for _, m := range members {
		current[m.Identity()] = true
	}
	left := false
	for identity := range l.key.sentTo {
		if !current[identity] {
			left = true
		}
	}
	var joined []rtcevent.Member
	for _, m := range members {
		if !l.key.sentTo[m.Identity()] {
			joined = append(joined, m)
		}
	}
	switch {
	case !l.key.started:
		l.key.next(now)
		l.useKey(0)
		l.sendKey(members)
	case left || (len(joined) > 0 && now.Sub(l.key.made) >= keyReuseAge):
		l.key.next(now)
		l.useKey(keyUseDelay)
		l.sendKey(members)
	case len(joined) > 0:
		l.sendKey(joined)
	}
}

// useKey has what the bot publishes encrypted with its current key after
// delay.
func (l *Leg) useKey(delay time.Duration) {
	index, raw := l.key.index, l.key.raw
	set := func() {
		if err := l.encryptor.SetKey(index, raw); err != nil {
			l.log.Error().Err(err).Msg("Setting the bot's media key")
		}
	}
	if delay == 0 {
		set()
		return
	}
	t := time.AfterFunc(delay, func() { l.post(set) })
	l.keyTimers = append(l.keyTimers, t)
}

// sendKey sends our current key to the members' devices, off the queue.
func (l *Leg) sendKey(to []rtcevent.Member) {
	if len(to) == 0 {
		return
	}
	devices := map[id.UserID][]id.DeviceID{}
	for _, m := range to {
		devices[id.UserID(m.User)] = append(devices[id.UserID(m.User)], id.DeviceID(m.Device))
		l.key.sentTo[m.Identity()] = true
	}
	content := rtcevent.NewEncryptionKeys(string(l.room), l.m.mx.UserID().String(), l.m.mx.DeviceID().String(), l.key.index, l.key.raw, time.Now())
	index := l.key.index
	l.m.wg.Add(1)
	go func() {
		defer l.m.wg.Done()
		ctx, cancel := context.WithTimeout(l.ctx, 20*time.Second)
		defer cancel()
		if err := l.m.mx.SendEncryptedToDevice(ctx, rtcevent.TypeEncryptionKeys, content, devices); err != nil {
			l.log.Warn().Err(err).Msg("Sending the bot's media key: those members cannot hear the bot")
			return
		}
		l.log.Debug().Int("devices", len(to)).Uint8("index", index).Msg("Sent the bot's media key")
	}()
}

// KeysReceived takes a member's media key (a decrypted to-device event
// from sender's device senderDevice, as Olm proved it). A key not sent
// over Olm, for a room the bot is in no call of, or claiming another
// device than the one that sent it, is refused.
func (m *Manager) KeysReceived(sender id.UserID, senderDevice id.DeviceID, encrypted bool, raw json.RawMessage) error {
	if !encrypted {
		return errors.New("a media key sent in the clear is not taken")
	}
	var head struct {
		RoomID id.RoomID `json:"room_id"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return err
	}
	l := m.In(head.RoomID)
	if l == nil {
		return errors.New("a media key for a room whose call the bot is not in")
	}
	key, err := rtcevent.ParseEncryptionKeys(raw, sender.String(), head.RoomID.String())
	if err != nil {
		return err
	}
	if senderDevice != "" && key.Identity != rtcevent.Identity(sender.String(), senderDevice.String()) {
		return errors.New("the key claims another device than the one that sent it")
	}
	if err = l.keys.SetKey(key.Identity, key.Index, key.Key); err != nil {
		return err
	}
	// A member that joined with a sticky membership is in the SFU under
	// the hash of its user, device and member id (the id its key names):
	// its key is filed under that identity too.
	hashed := rtcevent.HashedIdentity(sender.String(), string(senderDevice), key.MemberID)
	if senderDevice != "" {
		if err = l.keys.SetKey(hashed, key.Index, key.Key); err != nil {
			return err
		}
	}
	l.log.Debug().Str("identity", key.Identity).Uint8("index", key.Index).Msg("Took a member's media key")
	return nil
}

// stopKeyTimers cancels pending key switches (the leg ended).
func (l *Leg) stopKeyTimers() {
	for _, t := range l.keyTimers {
		t.Stop()
	}
	l.keyTimers = slices.Delete(l.keyTimers, 0, len(l.keyTimers))
}

// e2ee is what the participant needs for an encrypted call (nil, nil for
// a call without media encryption).
func (l *Leg) e2ee() (*livekit.KeyRing, *livekit.Encryptor) {
	if !l.encrypted {
		return nil, nil
	}
	return l.keys, l.encryptor
}
