package matrix

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// olmCrypto wires mautrix's OlmMachine (pure-Go goolm backend) to the bot.
// It does what mautrix's cryptohelper does for a client that decrypts in its
// own queues; cryptohelper itself is not used because it imports a cgo
// SQLite driver into every cgo build (and the media plane's Opus needs cgo).
type olmCrypto struct {
	mach *crypto.OlmMachine
	cli  *mautrix.Client
}

var _ mautrix.CryptoHelper = (*olmCrypto)(nil)

// newOlmCrypto loads (or creates) the device's Olm account from the crypto
// store in db and makes sure the server has its keys.
func newOlmCrypto(ctx context.Context, cli *mautrix.Client, db *dbutil.Database, pickleKey []byte, stateStore crypto.StateStore, log zerolog.Logger) (*olmCrypto, error) {
	cryptoStore := crypto.NewSQLCryptoStore(db, dbutil.ZeroLogger(log.With().Str("db_section", "crypto").Logger()), "", cli.DeviceID, pickleKey)
	if err := cryptoStore.DB.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("upgrading crypto store: %w", err)
	}
	stored, err := cryptoStore.FindDeviceID(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading crypto store: %w", err)
	}
	if stored != "" && stored != cli.DeviceID {
		return nil, fmt.Errorf("the crypto store belongs to device %s, not %s", stored, cli.DeviceID)
	}
	mach := crypto.NewOlmMachine(cli, &log, cryptoStore, stateStore)
	// A decrypted event whose content mautrix's structs cannot read (call
	// events from lenient clients) is still delivered: its handler parses
	// the raw content and says what is wrong.
	mach.IgnorePostDecryptionParseErrors = true
	if err = mach.Load(ctx); err != nil {
		return nil, fmt.Errorf("loading Olm account: %w", err)
	}
	oc := &olmCrypto{mach: mach, cli: cli}
	if err = oc.checkKeysOnServer(ctx); err != nil {
		return nil, err
	}
	return oc, nil
}

// checkKeysOnServer uploads the device's keys the first time, and refuses a
// device whose keys on the server are not this account's.
func (oc *olmCrypto) checkKeysOnServer(ctx context.Context) error {
	resp, err := oc.cli.QueryKeys(ctx, &mautrix.ReqQueryKeys{
		DeviceKeys: map[id.UserID]mautrix.DeviceIDList{oc.cli.UserID: {oc.cli.DeviceID}},
	})
	if err != nil {
		return fmt.Errorf("querying the device's own keys: %w", err)
	}
	shared := oc.mach.GetAccount().Shared
	device, ok := resp.DeviceKeys[oc.cli.UserID][oc.cli.DeviceID]
	switch {
	case (!ok || len(device.Keys) == 0) && shared:
		return errors.New("the device's keys have disappeared from the server (was it logged out?)")
	case !ok || len(device.Keys) == 0:
		if err = oc.mach.ShareKeys(ctx, -1); err != nil {
			return fmt.Errorf("uploading device keys: %w", err)
		}
		return nil
	case !shared:
		return errors.New("the server has keys for this device, but the crypto store never uploaded any")
	case device.Keys.GetEd25519(oc.cli.DeviceID) != oc.mach.OwnIdentity().SigningKey:
		return errors.New("the device's signing key on the server is not the one in the crypto store")
	}
	return nil
}

// register has the syncer feed the machine: to-device messages, key counts
// and device lists of every sync, and membership changes of encrypted rooms.
func (oc *olmCrypto) register(s *syncer) {
	s.OnSync(oc.mach.ProcessSyncResponse)
	s.OnEventType(event.StateMember, oc.mach.HandleMemberEvent)
	s.OnEventType(event.StateHistoryVisibility, oc.mach.HandleHistoryVisibility)
}

// Init is part of mautrix.CryptoHelper; newOlmCrypto already did it.
func (oc *olmCrypto) Init(context.Context) error { return nil }

// Encrypt encrypts a room event, sharing a new Megolm session with the
// room's members first if needed.
func (oc *olmCrypto) Encrypt(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) (*event.EncryptedEventContent, error) {
	encrypted, err := oc.mach.EncryptMegolmEvent(ctx, roomID, evtType, content)
	if !needsNewRoomKey(err) {
		return encrypted, err
	}
	users, err := oc.cli.StateStore.GetRoomJoinedOrInvitedMembers(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("listing members of %s: %w", roomID, err)
	}
	if err = oc.mach.ShareGroupSession(ctx, roomID, users); err != nil {
		return nil, fmt.Errorf("sharing room key in %s: %w", roomID, err)
	}
	return oc.mach.EncryptMegolmEvent(ctx, roomID, evtType, content)
}

// needsNewRoomKey reports an encryption failure that sharing a new Megolm
// session fixes.
func needsNewRoomKey(err error) bool {
	return errors.Is(err, crypto.ErrSessionExpired) || errors.Is(err, crypto.ErrNoGroupSession) || errors.Is(err, crypto.ErrSessionNotShared)
}

// Decrypt decrypts a Megolm room event.
func (oc *olmCrypto) Decrypt(ctx context.Context, evt *event.Event) (*event.Event, error) {
	return oc.mach.DecryptMegolmEvent(ctx, evt)
}

// WaitForSession waits until a room key arrives or the timeout passes.
func (oc *olmCrypto) WaitForSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, timeout time.Duration) bool {
	return oc.mach.WaitForSession(ctx, roomID, senderKey, sessionID, timeout)
}

// RequestSession asks the sender's devices (all of them if device is empty)
// and the bot's own for a room key.
func (oc *olmCrypto) RequestSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, user id.UserID, device id.DeviceID) {
	if device == "" {
		device = "*"
	}
	err := oc.mach.SendRoomKeyRequest(ctx, roomID, senderKey, sessionID, "", map[id.UserID][]id.DeviceID{
		user:          {device},
		oc.cli.UserID: {"*"},
	})
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Stringer("session_id", sessionID).Msg("Failed to request room key")
	}
}
