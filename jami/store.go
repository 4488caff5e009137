package jami

import (
	"context"
	"time"
)

// Store is what the Service keeps in the database: the node's identity,
// the values it keeps announced, the peers that answered lately, and the
// bot's Jami contacts.
// *store.Store satisfies it, and neither package imports the other.
//
// That works because the record types below are aliases of unnamed
// struct types, and package store declares its DHTNode, DHTValue and
// DHTPeer as aliases of the same struct types: identical types in Go, so
// the store's methods have exactly these signatures. The field lists must
// therefore stay the same in both places; if they drift, the bridge, which
// hands its *store.Store to Start, no longer compiles. (An adapter in the
// bridge translating named types would do too, at the cost of a copy of
// every record and a file of conversions; a shared types package would
// make store depend on Jami's.)
type Store interface {
	// DHTNode returns the stored identity, or nil before the first start.
	DHTNode(ctx context.Context) (*NodeRecord, error)
	PutDHTNode(ctx context.Context, n *NodeRecord) error
	// DHTValues lists the values to keep announcing.
	DHTValues(ctx context.Context) ([]StoredValue, error)
	PutDHTValue(ctx context.Context, v StoredValue) error
	// DHTPeers lists the remembered peers, most recently seen first.
	DHTPeers(ctx context.Context) ([]Peer, error)
	ReplaceDHTPeers(ctx context.Context, peers []Peer) error
	// JamiContacts lists the bot's Jami contacts, in no particular order.
	JamiContacts(ctx context.Context) ([]Contact, error)
	// PutJamiContact adds a contact or replaces the one of its Account.
	PutJamiContact(ctx context.Context, c Contact) error
}

// NodeRecord is the bot's DHT node identity: its node id, its Jami account
// (archive), and its device's key and certificate chain (PEM). It is the
// same type as store.DHTNode (see Store).
type NodeRecord = struct {
	NodeID         []byte
	AccountArchive []byte
	KeyPEM         string
	CertPEM        string
}

// StoredValue is a value the bot keeps on the DHT, packed as on the wire.
// It is the same type as store.DHTValue (see Store).
type StoredValue = struct {
	Hash    []byte
	ValueID uint64
	Packed  []byte
}

// Peer is a node that answered lately. It is the same type as
// store.DHTPeer (see Store).
type Peer = struct {
	Address  string
	NodeID   []byte
	LastSeen time.Time
}

// Contact is a Jami account the bot has as a contact: one that invited the
// bot and was accepted, or one the bot invited. It is the same type as
// store.JamiContact (see Store).
type Contact = struct {
	// Account is the contact's Jami ID, 40 lower-case hex digits.
	Account string
	// ConversationID is the 1:1 swarm conversation the contact's Jami made
	// for the bot ("" for none): what the bot's confirmation names.
	ConversationID string
	// Added is when the contact was first added.
	Added time.Time
	// Confirmed says both sides have the other as a contact: the contact
	// invited the bot and the bot accepted, or the bot invited it and it
	// accepted. An unconfirmed contact is an invitation of the bot's that
	// is not answered yet (sent again at each start).
	Confirmed bool
}
