package dht

import (
	"bytes"
	"sync"
	"time"
)

// Storage limits: a node stores for others, so it must not be made to store
// without bound.
const (
	maxValuesPerHash = 64
	maxStoredHashes  = 16384
	// maxStoredBytes caps what others can make us hold (OpenDHT's
	// max_store_size is of this order).
	maxStoredBytes = 64 << 20
	listenExpiry   = 30 * time.Second
)

// expiryOf is how long a value of a type lives without a refresh
// (default_types.cpp, securedht.h).
func expiryOf(t ValueType) time.Duration {
	switch t {
	case TypeDhtMessage, TypeImMessage:
		return 5 * time.Minute
	case TypeIPService:
		return 15 * time.Minute
	case TypeTrustRequest, TypeCertificate:
		return 7 * 24 * time.Hour
	case TypeICECandidate:
		return time.Minute
	default:
		return 10 * time.Minute
	}
}

type storedValue struct {
	v       *Value
	size    int
	created time.Time
	expires time.Time
}

type listener struct {
	node    NodeInfo
	sid     uint32
	expires time.Time
}

type storedHash struct {
	values    []*storedValue
	listeners []*listener
}

// storage holds the values other nodes put here, and who listens to them.
type storage struct {
	mu     sync.Mutex
	hashes map[InfoHash]*storedHash
	bytes  int // the packed size of everything stored
}

func newStorage() *storage { return &storage{hashes: map[InfoHash]*storedHash{}} }

// storeResult says what a put did.
type storeResult int

const (
	storeNew storeResult = iota
	storeReplaced
	storeSame
	storeRefused
)

// policyCheck applies SecureDht's store and edit policies: a signed value
// needs a valid signature; a certificate is stored only at its key's id; a
// stored signed value is replaced only by its owner with a seq that does not
// decrease; an unsigned one not at all (only refreshed by the same bytes).
func policyCheck(hash InfoHash, v, old *Value) bool {
	if !v.Encrypted() {
		if v.Signed() && v.Verify() != nil {
			return false
		}
		if v.Type == TypeCertificate && !certificateAt(hash, v) {
			return false
		}
	}
	if old == nil {
		return true
	}
	if old.Signed() {
		return v.Signed() && bytes.Equal(v.OwnerDER, old.OwnerDER) && v.Seq >= old.Seq
	}
	return false
}

// put stores v at hash. It returns what happened and the listeners to tell.
func (s *storage) put(hash InfoHash, v *Value, created, now time.Time) (storeResult, []*listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.hashes[hash]
	if sh == nil {
		if len(s.hashes) >= maxStoredHashes {
			return storeRefused, nil
		}
		sh = &storedHash{}
		s.hashes[hash] = sh
	}
	if created.After(now) || created.IsZero() {
		created = now
	}
	expires := created.Add(expiryOf(v.Type))
	for _, sv := range sh.values {
		if sv.v.ID != v.ID {
			continue
		}
		packed := v.Pack()
		if bytes.Equal(sv.v.Pack(), packed) {
			sv.expires = expires
			return storeSame, nil
		}
		if !policyCheck(hash, v, sv.v) || s.bytes-sv.size+len(packed) > maxStoredBytes {
			return storeRefused, nil
		}
		s.bytes += len(packed) - sv.size
		sv.v, sv.size, sv.created, sv.expires = v, len(packed), created, expires
		return storeReplaced, s.liveListeners(sh, now)
	}
	size := len(v.Pack())
	if !policyCheck(hash, v, nil) || len(sh.values) >= maxValuesPerHash || s.bytes+size > maxStoredBytes {
		return storeRefused, nil
	}
	s.bytes += size
	sh.values = append(sh.values, &storedValue{v: v, size: size, created: created, expires: expires})
	return storeNew, s.liveListeners(sh, now)
}

func (s *storage) liveListeners(sh *storedHash, now time.Time) []*listener {
	var out []*listener
	for _, l := range sh.listeners {
		if l.expires.After(now) {
			out = append(out, l)
		}
	}
	return out
}

// get returns the live values at hash.
func (s *storage) get(hash InfoHash, now time.Time) []*Value {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.hashes[hash]
	if sh == nil {
		return nil
	}
	var out []*Value
	for _, sv := range sh.values {
		if sv.expires.After(now) {
			out = append(out, sv.v)
		}
	}
	return out
}

// refresh extends a value's life; false if it is not here.
func (s *storage) refresh(hash InfoHash, vid uint64, now time.Time) (bool, []*listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.hashes[hash]
	if sh == nil {
		return false, nil
	}
	for _, sv := range sh.values {
		if sv.v.ID == vid && sv.expires.After(now) {
			sv.expires = now.Add(expiryOf(sv.v.Type))
			return true, s.liveListeners(sh, now)
		}
	}
	return false, nil
}

// listen adds or renews a listener and returns the values it should get
// now.
func (s *storage) listen(hash InfoHash, node NodeInfo, sid uint32, now time.Time) []*Value {
	s.mu.Lock()
	sh := s.hashes[hash]
	if sh == nil {
		if len(s.hashes) >= maxStoredHashes {
			s.mu.Unlock()
			return nil
		}
		sh = &storedHash{}
		s.hashes[hash] = sh
	}
	found := false
	for _, l := range sh.listeners {
		if l.node.Addr == node.Addr && l.sid == sid {
			l.expires, l.node, found = now.Add(listenExpiry), node, true
		}
	}
	if !found && len(sh.listeners) < maxValuesPerHash {
		sh.listeners = append(sh.listeners, &listener{node: node, sid: sid, expires: now.Add(listenExpiry)})
	}
	s.mu.Unlock()
	if found {
		return nil
	}
	return s.get(hash, now)
}

// expire drops expired values and listeners; it returns, per hash, the
// expired value ids and the listeners to tell.
func (s *storage) expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, sh := range s.hashes {
		values := sh.values[:0]
		for _, sv := range sh.values {
			if sv.expires.After(now) {
				values = append(values, sv)
			} else {
				s.bytes -= sv.size
			}
		}
		sh.values = values
		listeners := sh.listeners[:0]
		for _, l := range sh.listeners {
			if l.expires.After(now) {
				listeners = append(listeners, l)
			}
		}
		sh.listeners = listeners
		if len(sh.values) == 0 && len(sh.listeners) == 0 {
			delete(s.hashes, h)
		}
	}
}

// stats counts stored values and hashes.
func (s *storage) stats() (hashes, values int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sh := range s.hashes {
		values += len(sh.values)
	}
	return len(s.hashes), values
}

// clear forgets everything stored (tests: a node that restarted).
func (s *storage) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hashes = map[InfoHash]*storedHash{}
	s.bytes = 0
}
