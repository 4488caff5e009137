package jami

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/voipbot/voipbot/jami/dht"
)

// packAnnouncement writes a DeviceAnnouncement's data as jami-daemon does
// (MSGPACK_DEFINE_MAP(dev, pk)): {"dev": bin(20), "pk": bin(SPKI DER)}.
func packAnnouncement(dev dht.InfoHash, spki []byte) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	_ = enc.EncodeMapLen(2)
	_ = enc.EncodeString("dev")
	_ = enc.EncodeBytesLen(len(dev))
	buf.Write(dev[:])
	_ = enc.EncodeString("pk")
	_ = enc.EncodeBytesLen(len(spki))
	buf.Write(spki)
	return buf.Bytes()
}

// Announcement is a device announcement read from the DHT.
type Announcement struct {
	Device    dht.InfoHash
	PublicKey []byte // DER SubjectPublicKeyInfo; may be empty in old ones
}

// ParseAnnouncement reads a device announcement's data.
func ParseAnnouncement(data []byte) (*Announcement, error) {
	var raw struct {
		Dev []byte `msgpack:"dev"`
		PK  []byte `msgpack:"pk"`
	}
	if err := msgpack.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("device announcement: %w", err)
	}
	if len(raw.Dev) != dht.HashLen {
		return nil, fmt.Errorf("device announcement: device id of %d bytes", len(raw.Dev))
	}
	a := &Announcement{PublicKey: raw.PK}
	copy(a.Device[:], raw.Dev)
	return a, nil
}
