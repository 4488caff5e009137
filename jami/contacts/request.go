// Package contacts is the wire side of Jami contacts: the trust requests
// (contact invitations) and their confirmations two Jami accounts exchange
// over the DHT, as jami-daemon 13.7.0 (and, unchanged in what matters, its
// current master) writes and reads them. The policy — whom to accept, what
// to remember — is the jami Service's.
//
// # The exchange (account_manager.cpp sendTrustRequest, startSync,
// sendTrustRequestConfirm; contact_list.cpp onTrustRequest)
//
// Each device listens at its inbox, SHA-1("inbox:" + hex(SHA-1(device
// SPKI))) (InboxKey). To invite an account, a device looks up the account's
// devices (the device announcements at the account id) and puts, at each
// device's inbox, an OpenDHT EncryptedValue of type 4 (TrustRequest):
// signed by the sending device, encrypted for the receiving one, whose
// content is the msgpack map {service: "cx.ring", conversationId, payload,
// confirm: false} (Request). The receiver finds the sender's account from
// the sender device's certificate chain on the DHT.
//
// Accepting is sending the same kind of value back with confirm: true and
// the conversation id of the request, to every device of the inviting
// account. The inviter then marks the contact confirmed (and a jamid emits
// contactAdded with confirmed=true).
//
// The conversation id names the swarm (a git repository) jamid 13.7.0 makes
// for a 1:1 contact; an empty one is the pre-swarm "old path" that jamid
// still accepts. This package carries the id; it does not speak the swarm.
//
// The value is not refreshed by its sender: it lives on the storing nodes as
// long as an encrypted value does (whose type they cannot see: 10 minutes),
// and jamid sends a request again when it sees an unconfirmed contact come
// online.
package contacts

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/voipbot/voipbot/jami/dht"
)

// Service is the service name every Jami trust request carries
// (AccountManager::DHT_TYPE_NS); requests naming another are not Jami's.
const Service = "cx.ring"

// InboxPrefix is what a device's inbox key is made of, with the device's
// key id in lower-case hex.
const InboxPrefix = "inbox:"

// ValueType is the DHT value type of trust requests (OpenDHT's
// TrustRequest, 7 days).
const ValueType = dht.TypeTrustRequest

// InboxKey is where trust requests for a device are put and where the
// device listens: SHA-1("inbox:" + hex(device key id)). Both 13.7.0 and
// current master use the SHA-1 key id here (not the SHA-256 long id).
func InboxKey(device dht.InfoHash) dht.InfoHash {
	return dht.HashString(InboxPrefix + device.String())
}

// Request is a trust request or, with Confirm, the acceptance of one.
type Request struct {
	// Service is "cx.ring" for Jami.
	Service string
	// ConversationID is the 1:1 swarm the sender made for the contact
	// ("" for none). A confirmation carries the request's.
	ConversationID string
	// Payload is the sender's profile, usually a vCard; may be empty.
	Payload []byte
	// Confirm says this accepts a request the receiver sent.
	Confirm bool
	// InvitedMs is when the sender first issued the invitation (ms since
	// 1970), which current master sends so that redeliveries are not taken
	// for new invitations; 13.7.0 neither sends nor reads it (0: absent).
	InvitedMs int64
}

// Marshal packs the request as msgpack-c's MSGPACK_DEFINE_MAP does, keys in
// declaration order: service, conversationId, payload (bin), confirm, and
// invitedMs when set. 13.7.0 ignores the key it does not know.
func (r *Request) Marshal() []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	n := 4
	if r.InvitedMs != 0 {
		n++
	}
	// Writes to a bytes.Buffer do not fail.
	_ = enc.EncodeMapLen(n)
	_ = enc.EncodeString("service")
	_ = enc.EncodeString(r.Service)
	_ = enc.EncodeString("conversationId")
	_ = enc.EncodeString(r.ConversationID)
	_ = enc.EncodeString("payload")
	_ = enc.EncodeBytesLen(len(r.Payload))
	buf.Write(r.Payload)
	_ = enc.EncodeString("confirm")
	_ = enc.EncodeBool(r.Confirm)
	if r.InvitedMs != 0 {
		_ = enc.EncodeString("invitedMs")
		_ = enc.EncodeInt(r.InvitedMs)
	}
	return buf.Bytes()
}

// Value is the request as a DHT value to encrypt (dht.Secure.PutEncrypted).
func (r *Request) Value() *dht.Value {
	return &dht.Value{Type: ValueType, Data: r.Marshal()}
}

// ErrMalformed wraps the errors of a request that does not read as one.
var ErrMalformed = errors.New("malformed trust request")

// Parse reads a request's msgpack map as msgpack-c converts one: keys must
// be strings, unknown keys are skipped, missing ones keep their zero value;
// the payload may be bin or str.
func Parse(data []byte) (*Request, error) {
	r, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return r, nil
}

func parse(data []byte) (*Request, error) {
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	code, err := dec.PeekCode()
	if err != nil {
		return nil, err
	}
	if !isMap(code) {
		return nil, fmt.Errorf("not a map (msgpack code 0x%02x)", code)
	}
	n, err := dec.DecodeMapLen()
	if err != nil {
		return nil, err
	}
	r := &Request{}
	for i := 0; i < n; i++ {
		if code, err = dec.PeekCode(); err != nil {
			return nil, err
		}
		if !isStr(code) {
			return nil, fmt.Errorf("key %d is not a string (msgpack code 0x%02x)", i, code)
		}
		key, err := dec.DecodeString()
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		switch key {
		case "service":
			r.Service, err = decodeStr(dec)
		case "conversationId":
			r.ConversationID, err = decodeStr(dec)
		case "payload":
			r.Payload, err = decodeBlob(dec)
		case "confirm":
			r.Confirm, err = dec.DecodeBool()
		case "invitedMs":
			r.InvitedMs, err = dec.DecodeInt64()
		default:
			err = dec.Skip()
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	return r, nil
}

func isMap(c byte) bool { return (c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf }
func isStr(c byte) bool { return (c >= 0xa0 && c <= 0xbf) || (c >= 0xd9 && c <= 0xdb) }
func isBin(c byte) bool { return c >= 0xc4 && c <= 0xc6 }

func decodeStr(dec *msgpack.Decoder) (string, error) {
	code, err := dec.PeekCode()
	if err != nil {
		return "", err
	}
	if !isStr(code) {
		return "", fmt.Errorf("not a string (msgpack code 0x%02x)", code)
	}
	return dec.DecodeString()
}

// decodeBlob reads a std::vector<uint8_t>: msgpack-c takes bin or str.
func decodeBlob(dec *msgpack.Decoder) ([]byte, error) {
	code, err := dec.PeekCode()
	if err != nil {
		return nil, err
	}
	if !isBin(code) && !isStr(code) {
		return nil, fmt.Errorf("not bin or str (msgpack code 0x%02x)", code)
	}
	return dec.DecodeBytes()
}
