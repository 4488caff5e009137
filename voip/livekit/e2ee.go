package livekit

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	lksdk "github.com/livekit/server-sdk-go/v2"
)

// LiveKit's end-to-end media encryption (livekit-client's e2ee worker, as
// Element Call uses it): each frame is AES-128-GCM encrypted with the
// sender's key, leaving the codec's first bytes clear (authenticated, so
// the SFU can still read them):
//
//	clear header ‖ ciphertext and tag ‖ IV (12) ‖ IV length (12) ‖ key index
//
// An Opus frame is one RTP payload with a 1-byte header. The framing is
// done here rather than with server-sdk-go's helpers, which index into a
// frame before checking its length (a short packet from the network
// would panic them).

const (
	ivLength        = 12
	opusClearHeader = 1
	// frameSalt is what the raw key of a per-participant key is derived
	// with (and a shared passphrase too).
	frameSalt = "LKFrameEncryptionKey"
)

// ErrNoKey is returned for a frame whose sender's key (at that index) is
// not known yet: keys come over Matrix, and media may arrive first.
var ErrNoKey = errors.New("no key for the frame")

// errFrame is returned for a frame that cannot be an encrypted one.
var errFrame = errors.New("not an encrypted frame")

// DeriveFrameKey is the AES key a raw per-participant key (16 random bytes
// sent over Olm) stands for: HKDF-SHA256 with LiveKit's salt and 128 zero
// bytes of info, as livekit-client derives it.
func DeriveFrameKey(raw []byte) ([]byte, error) {
	key, err := hkdf.Key(sha256.New, raw, []byte(frameSalt), string(make([]byte, 128)), 16)
	if err != nil {
		return nil, fmt.Errorf("deriving a frame key: %w", err)
	}
	return key, nil
}

// KeyRing holds the media keys of a call: each sender's (by LiveKit
// identity) at each index it used. It is safe for concurrent use: keys
// arrive on Matrix's goroutines while media is read on others.
type KeyRing struct {
	mu   sync.RWMutex
	keys map[string]*[256]cipher.AEAD
	// shared is a call's one key for everyone (Element Call's ?password=
	// calls), used for every sender and index when set.
	shared cipher.AEAD
}

// NewKeyRing makes an empty ring.
func NewKeyRing() *KeyRing { return &KeyRing{keys: map[string]*[256]cipher.AEAD{}} }

// SetKey files identity's raw key at index.
func (r *KeyRing) SetKey(identity string, index uint8, raw []byte) error {
	key, err := DeriveFrameKey(raw)
	if err != nil {
		return err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return fmt.Errorf("frame key of %s: %w", identity, err)
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, ivLength)
	if err != nil {
		return fmt.Errorf("frame key of %s: %w", identity, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ks := r.keys[identity]
	if ks == nil {
		ks = new([256]cipher.AEAD)
		r.keys[identity] = ks
	}
	ks[index] = gcm
	return nil
}

// Forget drops identity's keys (it left the call).
func (r *KeyRing) Forget(identity string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.keys, identity)
}

// Has says whether any key of identity is known.
func (r *KeyRing) Has(identity string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.keys[identity] != nil
}

// SharedKey is the AES key a shared passphrase stands for: PBKDF2-SHA256
// with LiveKit's salt and 100 000 rounds, as livekit-client derives it.
func SharedKey(passphrase string) ([]byte, error) {
	key, err := lksdk.DeriveKeyFromString(passphrase)
	if err != nil {
		return nil, fmt.Errorf("deriving the call's shared key: %w", err)
	}
	return key, nil
}

// SetShared makes key (SharedKey's) every sender's.
func (r *KeyRing) SetShared(key []byte) error {
	gcm, err := newGCM(key)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.shared = gcm
	r.mu.Unlock()
	return nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("frame key: %w", err)
	}
	return cipher.NewGCMWithNonceSize(block, ivLength)
}

func (r *KeyRing) aead(identity string, index uint8) cipher.AEAD {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.shared != nil {
		return r.shared
	}
	if ks := r.keys[identity]; ks != nil {
		return ks[index]
	}
	return nil
}

// DecryptOpus decrypts an Opus frame from identity into dst (which may be
// frame[:0]) and returns the plain frame.
func (r *KeyRing) DecryptOpus(dst, frame []byte, identity string) ([]byte, error) {
	return r.decrypt(dst, frame, identity, opusClearHeader)
}

func (r *KeyRing) decrypt(dst, frame []byte, identity string, clear int) ([]byte, error) {
	if len(frame) < clear+16+ivLength+2 || int(frame[len(frame)-2]) != ivLength {
		return nil, errFrame
	}
	index := frame[len(frame)-1]
	gcm := r.aead(identity, index)
	if gcm == nil {
		return nil, fmt.Errorf("%w: %s at index %d", ErrNoKey, identity, index)
	}
	ivStart := len(frame) - 2 - ivLength
	var iv [ivLength]byte
	copy(iv[:], frame[ivStart:])
	var header [16]byte
	n := copy(header[:], frame[:clear])
	out := append(dst[:0], header[:n]...)
	out, err := gcm.Open(out, iv[:], frame[clear:ivStart], header[:n])
	if err != nil {
		return nil, fmt.Errorf("decrypting a frame of %s (key index %d): %w", identity, index, err)
	}
	return out, nil
}

// Encryptor encrypts what the bot sends with its own key.
type Encryptor struct {
	mu    sync.RWMutex
	index uint8
	gcm   cipher.AEAD
}

// SetKey makes raw at index the key frames are encrypted with from now.
func (e *Encryptor) SetKey(index uint8, raw []byte) error {
	key, err := DeriveFrameKey(raw)
	if err != nil {
		return err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return fmt.Errorf("own frame key: %w", err)
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, ivLength)
	if err != nil {
		return fmt.Errorf("own frame key: %w", err)
	}
	e.mu.Lock()
	e.index, e.gcm = index, gcm
	e.mu.Unlock()
	return nil
}

// SetShared encrypts with a call's shared key (SharedKey's) at index 0.
func (e *Encryptor) SetShared(key []byte) error {
	gcm, err := newGCM(key)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.index, e.gcm = 0, gcm
	e.mu.Unlock()
	return nil
}

// EncryptOpus encrypts an Opus frame into dst (not aliasing frame).
func (e *Encryptor) EncryptOpus(dst, frame []byte) ([]byte, error) {
	if len(frame) < opusClearHeader {
		return nil, errFrame
	}
	return e.encrypt(dst, frame, opusClearHeader)
}

func (e *Encryptor) encrypt(dst, frame []byte, clear int) ([]byte, error) {
	e.mu.RLock()
	gcm, index := e.gcm, e.index
	e.mu.RUnlock()
	if gcm == nil {
		return nil, ErrNoKey
	}
	var iv [ivLength]byte
	_, _ = rand.Read(iv[:]) // never fails (crypto/rand)
	out := append(dst[:0], frame[:clear]...)
	out = gcm.Seal(out, iv[:], frame[clear:], frame[:clear])
	out = append(out, iv[:]...)
	return append(out, ivLength, index), nil
}
