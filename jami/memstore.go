package jami

import (
	"context"
	"slices"
	"sync"
)

// NewMemStore is a Store that keeps everything in memory only.
func NewMemStore() Store { return &memStore{} }

// memStore is a Store in memory, as the database keeps it: copies in,
// copies out. A bot that must keep nothing (a test, a one-off tool) runs
// its Service on one.
type memStore struct {
	mu     sync.Mutex
	node   *NodeRecord
	values []StoredValue
	peers  []Peer
	// contacts by account.
	contacts map[string]Contact
}

func (m *memStore) DHTNode(context.Context) (*NodeRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.node == nil {
		return nil, nil
	}
	n := *m.node
	return &n, nil
}

func (m *memStore) PutDHTNode(_ context.Context, n *NodeRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := *n
	m.node = &c
	return nil
}

func (m *memStore) DHTValues(context.Context) ([]StoredValue, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.values), nil
}

func (m *memStore) PutDHTValue(_ context.Context, v StoredValue) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.values = slices.DeleteFunc(m.values, func(o StoredValue) bool { return string(o.Hash) == string(v.Hash) && o.ValueID == v.ValueID })
	m.values = append(m.values, v)
	return nil
}

func (m *memStore) DHTPeers(context.Context) ([]Peer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.peers), nil
}

func (m *memStore) ReplaceDHTPeers(_ context.Context, peers []Peer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peers = slices.Clone(peers)
	return nil
}

func (m *memStore) JamiContacts(context.Context) ([]Contact, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Contact, 0, len(m.contacts))
	for _, c := range m.contacts {
		out = append(out, c)
	}
	return out, nil
}

func (m *memStore) PutJamiContact(_ context.Context, c Contact) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.contacts == nil {
		m.contacts = map[string]Contact{}
	}
	m.contacts[c.Account] = c
	return nil
}
