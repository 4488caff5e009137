package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// DHTNode is the bot's DHT node identity: its node id, its Jami account
// (archive), and its device's key and certificate chain (PEM).
//
// DHTNode, DHTValue and DHTPeer are aliases of unnamed struct types, the
// same as jami.NodeRecord, jami.StoredValue and jami.Peer, so that *Store
// satisfies jami.Store without either package importing the other: keep
// their fields as they are in package jami.
type DHTNode = struct {
	NodeID         []byte
	AccountArchive []byte
	KeyPEM         string
	CertPEM        string
}

// DHTNode returns the stored node identity, or nil before the first start.
func (s *Store) DHTNode(ctx context.Context) (*DHTNode, error) {
	var n DHTNode
	err := s.db.QueryRow(ctx, "SELECT node_id, account_archive, key_pem, cert_pem FROM dht_node WHERE singleton=1").Scan(&n.NodeID, &n.AccountArchive, &n.KeyPEM, &n.CertPEM)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reading the DHT node identity: %w", err)
	}
	return &n, nil
}

// PutDHTNode stores the node identity.
func (s *Store) PutDHTNode(ctx context.Context, n *DHTNode) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO dht_node (singleton, node_id, account_archive, key_pem, cert_pem) VALUES (1, $1, $2, $3, $4)
		ON CONFLICT (singleton) DO UPDATE SET node_id=excluded.node_id, account_archive=excluded.account_archive,
			key_pem=excluded.key_pem, cert_pem=excluded.cert_pem`,
		n.NodeID, n.AccountArchive, n.KeyPEM, n.CertPEM)
	if err != nil {
		return fmt.Errorf("storing the DHT node identity: %w", err)
	}
	return nil
}

// DHTValue is a value the bot keeps on the DHT, packed as on the wire.
type DHTValue = struct {
	Hash    []byte
	ValueID uint64
	Packed  []byte
}

// PutDHTValue remembers a value to keep announcing.
func (s *Store) PutDHTValue(ctx context.Context, v DHTValue) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO dht_value (hash, value_id, packed) VALUES ($1, $2, $3)
		ON CONFLICT (hash, value_id) DO UPDATE SET packed=excluded.packed`,
		v.Hash, int64(v.ValueID), v.Packed)
	if err != nil {
		return fmt.Errorf("storing a DHT value: %w", err)
	}
	return nil
}

// DeleteDHTValue forgets a value.
func (s *Store) DeleteDHTValue(ctx context.Context, hash []byte, id uint64) error {
	if _, err := s.db.Exec(ctx, "DELETE FROM dht_value WHERE hash=$1 AND value_id=$2", hash, int64(id)); err != nil {
		return fmt.Errorf("deleting a DHT value: %w", err)
	}
	return nil
}

// DHTValues lists the values to keep announcing.
func (s *Store) DHTValues(ctx context.Context) ([]DHTValue, error) {
	rows, err := s.db.Query(ctx, "SELECT hash, value_id, packed FROM dht_value ORDER BY hash, value_id")
	if err != nil {
		return nil, fmt.Errorf("reading DHT values: %w", err)
	}
	defer rows.Close()
	var out []DHTValue
	for rows.Next() {
		var v DHTValue
		var id int64
		if err = rows.Scan(&v.Hash, &id, &v.Packed); err != nil {
			return nil, fmt.Errorf("reading DHT values: %w", err)
		}
		v.ValueID = uint64(id)
		out = append(out, v)
	}
	return out, rows.Err()
}

// DHTPeer is a node that answered lately.
type DHTPeer = struct {
	Address  string
	NodeID   []byte
	LastSeen time.Time
}

// ReplaceDHTPeers stores the current good nodes in place of the old list.
func (s *Store) ReplaceDHTPeers(ctx context.Context, peers []DHTPeer) error {
	return s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := s.db.Exec(ctx, "DELETE FROM dht_peer"); err != nil {
			return fmt.Errorf("storing DHT peers: %w", err)
		}
		for _, p := range peers {
			if _, err := s.db.Exec(ctx, "INSERT INTO dht_peer (address, node_id, last_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
				p.Address, p.NodeID, p.LastSeen.UnixMilli()); err != nil {
				return fmt.Errorf("storing DHT peers: %w", err)
			}
		}
		return nil
	})
}

// DHTPeers lists the stored good nodes, most recently seen first.
func (s *Store) DHTPeers(ctx context.Context) ([]DHTPeer, error) {
	rows, err := s.db.Query(ctx, "SELECT address, node_id, last_seen FROM dht_peer ORDER BY last_seen DESC")
	if err != nil {
		return nil, fmt.Errorf("reading DHT peers: %w", err)
	}
	defer rows.Close()
	var out []DHTPeer
	for rows.Next() {
		var p DHTPeer
		var seen int64
		if err = rows.Scan(&p.Address, &p.NodeID, &seen); err != nil {
			return nil, fmt.Errorf("reading DHT peers: %w", err)
		}
		p.LastSeen = time.UnixMilli(seen)
		out = append(out, p)
	}
	return out, rows.Err()
}
