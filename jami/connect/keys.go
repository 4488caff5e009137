package connect

import (
	"crypto/rsa"
	"encoding/hex"
	"fmt"

	"github.com/voipbot/voipbot/jami/dht"
)

// KeyPrefix is what a device's request key is made of ("peer:" and an id
// of the device's public key, in lower-case hex).
const KeyPrefix = "peer:"

// Keys are the DHT keys where connection requests for a device are put,
// and where it listens. jami-daemon 13.7.0 (dhtnet's legacy mode) uses the
// SHA-1 key id; current dhtnet (legacy mode disabled) the SHA-256 long id.
// The bot listens on both, answers on the form a request came on, and puts
// its own requests on both.
type Keys struct {
	Legacy dht.InfoHash // SHA-1("peer:" + hex(SHA-1(SPKI)))
	Long   dht.InfoHash // SHA-1("peer:" + hex(SHA-256(SPKI)))
}

// KeysOf computes a device's request keys from its public key.
func KeysOf(pub *rsa.PublicKey) (Keys, error) {
	id, err := dht.PublicKeyID(pub)
	if err != nil {
		return Keys{}, fmt.Errorf("the device's key id: %w", err)
	}
	long, err := dht.PublicKeyLongID(pub)
	if err != nil {
		return Keys{}, fmt.Errorf("the device's long id: %w", err)
	}
	return KeysFor(id, long), nil
}

// KeysFor computes the request keys from the device's two ids.
func KeysFor(id dht.InfoHash, long [32]byte) Keys {
	return Keys{
		Legacy: dht.HashString(KeyPrefix + id.String()),
		Long:   dht.HashString(KeyPrefix + hex.EncodeToString(long[:])),
	}
}
