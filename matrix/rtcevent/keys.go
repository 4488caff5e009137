package rtcevent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// KeyLength is the length of a member's raw media key (js-sdk makes 16
// random bytes; the frame key is derived from it).
const KeyLength = 16

// EncryptionKeys is the content of TypeEncryptionKeys: one member's media
// key at an index, sent Olm-encrypted to one device of each other member
// (js-sdk ToDeviceKeyTransport).
type EncryptionKeys struct {
	Keys   KeyAtIndex `json:"keys"`
	RoomID string     `json:"room_id"`
	Member KeyMember  `json:"member"`
	// Session is the call the key is for.
	Session KeySession `json:"session"`
	// SentTS is when it was sent, in ms.
	SentTS int64 `json:"sent_ts"`
}

// KeyAtIndex is a key and its index (0–255, increasing by one mod 256).
type KeyAtIndex struct {
	Index int    `json:"index"`
	Key   string `json:"key"`
}

// KeyMember says whose key it is.
type KeyMember struct {
	ID       string `json:"id,omitempty"`
	DeviceID string `json:"claimed_device_id"`
}

// KeySession names the call.
type KeySession struct {
	Application string `json:"application"`
	CallID      string `json:"call_id"`
	Scope       string `json:"scope"`
}

// NewEncryptionKeys is our key for a room's call, from the bot's device.
func NewEncryptionKeys(room, user, device string, index uint8, key []byte, now time.Time) EncryptionKeys {
	return EncryptionKeys{
		Keys:    KeyAtIndex{Index: int(index), Key: base64.StdEncoding.EncodeToString(key)},
		RoomID:  room,
		Member:  KeyMember{ID: Identity(user, device), DeviceID: device},
		Session: KeySession{Application: ApplicationCall, CallID: "", Scope: ScopeRoom},
		SentTS:  now.UnixMilli(),
	}
}

// ReceivedKey is a key a member sent us, checked.
type ReceivedKey struct {
	// Identity is the member's LiveKit identity (sender:claimed_device_id),
	// under which Element Call files the key too.
	Identity string
	// MemberID is the member id the key is for (Element Call's
	// matrix_2_0 mode makes a UUID per join; else "sender:device").
	MemberID string
	Index    uint8
	Key      []byte
	Sent     time.Time
}

// ParseEncryptionKeys reads a decrypted TypeEncryptionKeys event from
// sender, as js-sdk checks it: the room must be room, the key non-empty
// base64, the index a number in 0–255, and the claimed device present.
func ParseEncryptionKeys(raw json.RawMessage, sender, room string) (ReceivedKey, error) {
	var c struct {
		Keys struct {
			Index *float64 `json:"index"`
			Key   string   `json:"key"`
		} `json:"keys"`
		RoomID string    `json:"room_id"`
		Member KeyMember `json:"member"`
		SentTS float64   `json:"sent_ts"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return ReceivedKey{}, fmt.Errorf("encryption keys: %w", err)
	}
	switch {
	case c.RoomID != room:
		return ReceivedKey{}, fmt.Errorf("encryption keys: for room %q, not %s", c.RoomID, room)
	case c.Keys.Key == "":
		return ReceivedKey{}, errors.New("encryption keys: no key")
	case c.Keys.Index == nil || *c.Keys.Index < 0 || *c.Keys.Index > 255 || *c.Keys.Index != float64(int(*c.Keys.Index)):
		return ReceivedKey{}, errors.New("encryption keys: the index is not a number from 0 to 255")
	case c.Member.DeviceID == "":
		return ReceivedKey{}, errors.New("encryption keys: no claimed_device_id")
	}
	key, err := base64.StdEncoding.DecodeString(c.Keys.Key)
	if err != nil {
		if key, err = base64.RawStdEncoding.DecodeString(c.Keys.Key); err != nil {
			return ReceivedKey{}, errors.New("encryption keys: the key is not base64")
		}
	}
	if len(key) == 0 {
		return ReceivedKey{}, errors.New("encryption keys: no key")
	}
	memberID := c.Member.ID
	if memberID == "" {
		memberID = Identity(sender, c.Member.DeviceID) // js-sdk's default
	}
	return ReceivedKey{
		Identity: Identity(sender, c.Member.DeviceID), MemberID: memberID, Index: uint8(*c.Keys.Index), Key: key,
		Sent: time.UnixMilli(int64(c.SentTS)),
	}, nil
}

// Notification is the content of TypeNotification: a ring (or a quieter
// notification) for the room's members, referring to the sender's own
// membership event.
type Notification struct {
	Mentions  Mentions  `json:"m.mentions"`
	Type      string    `json:"notification_type"`
	RelatesTo RelatesTo `json:"m.relates_to"`
	SenderTS  int64     `json:"sender_ts"`
	// Lifetime is how long it rings, in ms (clients cap it at 90 s).
	Lifetime int64  `json:"lifetime"`
	Intent   string `json:"m.call.intent,omitempty"`
}

// Mentions says who is rung.
type Mentions struct {
	UserIDs []string `json:"user_ids"`
	Room    bool     `json:"room,omitempty"`
}

// RelatesTo refers to another event.
type RelatesTo struct {
	RelType string `json:"rel_type"`
	EventID string `json:"event_id"`
}

// MaxRing is the longest ring clients honour.
const MaxRing = 90 * time.Second

// NewRing rings users (or the whole room when users is empty) for the call
// the membership event membershipEvent joined.
func NewRing(membershipEvent string, users []string, lifetime time.Duration, video bool, now time.Time) Notification {
	lifetime = min(lifetime, MaxRing)
	intent := "audio"
	if video {
		intent = "video"
	}
	if users == nil {
		users = []string{}
	}
	return Notification{
		Mentions:  Mentions{UserIDs: users, Room: len(users) == 0},
		Type:      "ring",
		RelatesTo: RelatesTo{RelType: "m.reference", EventID: membershipEvent},
		SenderTS:  now.UnixMilli(),
		Lifetime:  lifetime.Milliseconds(),
		Intent:    intent,
	}
}
