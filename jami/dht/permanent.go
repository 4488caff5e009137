package dht

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// A permanent put keeps a value alive: it is refreshed at the nodes storing
// it before it expires, and put again (to whatever nodes are closest then)
// when a refresh fails — a node that restarts, or a network that changed.
// OpenDHT refreshes 1 minute before expiry (Dht::refreshValue); values
// shorter-lived than that are re-put at half their life.

type permanentValue struct {
	hash  InfoHash
	value *Value
	next  time.Time
}

type permanents struct {
	mu     sync.Mutex
	values map[permanentKey]*permanentValue
}

type permanentKey struct {
	hash InfoHash
	id   uint64
}

func refreshAfter(t ValueType) time.Duration {
	life := expiryOf(t)
	if life > 2*time.Minute {
		return life - time.Minute
	}
	return life / 2
}

// PutPermanent puts v at hash and keeps it there until Cancel (or Close).
func (n *Node) PutPermanent(ctx context.Context, hash InfoHash, v *Value) (PutResult, error) {
	res, err := n.Put(ctx, hash, v)
	if err != nil {
		return res, err
	}
	n.perm.mu.Lock()
	if n.perm.values == nil {
		n.perm.values = map[permanentKey]*permanentValue{}
	}
	n.perm.values[permanentKey{hash, v.ID}] = &permanentValue{hash: hash, value: v, next: time.Now().Add(refreshAfter(v.Type))}
	n.perm.mu.Unlock()
	return res, nil
}

// CancelPermanent stops keeping a value alive (it expires on its own).
func (n *Node) CancelPermanent(hash InfoHash, id uint64) {
	n.perm.mu.Lock()
	delete(n.perm.values, permanentKey{hash, id})
	n.perm.mu.Unlock()
}

// Permanent lists the values this node keeps alive (to persist them).
func (n *Node) Permanent() map[InfoHash][]*Value {
	n.perm.mu.Lock()
	defer n.perm.mu.Unlock()
	out := map[InfoHash][]*Value{}
	for _, p := range n.perm.values {
		out[p.hash] = append(out[p.hash], p.value)
	}
	return out
}

// Refresh asks the nodes closest to hash to extend the life of value id;
// it returns how many did.
func (n *Node) Refresh(ctx context.Context, hash InfoHash, id uint64) (int, error) {
	res, err := n.lookup(ctx, hash, false)
	if err != nil {
		return 0, fmt.Errorf("refreshing at %s: %w", hash, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	refreshed := 0
	var errs []error
	for _, c := range res.closest {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := n.request(ctx, c.Addr, func(tid uint32) [][]byte { return [][]byte{n.self.Refresh(tid, hash, id, c.token)} })
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			refreshed++
		}()
	}
	wg.Wait()
	if refreshed == 0 {
		return 0, fmt.Errorf("refreshing at %s: %w", hash, errors.Join(errs...))
	}
	return refreshed, nil
}

// keepAlive refreshes or re-puts the permanent values that are due.
func (n *Node) keepAlive(now time.Time) {
	n.perm.mu.Lock()
	var due []*permanentValue
	for _, p := range n.perm.values {
		if !now.Before(p.next) {
			p.next = now.Add(refreshAfter(p.value.Type))
			due = append(due, p)
		}
	}
	n.perm.mu.Unlock()
	for _, p := range due {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			ctx, cancel := context.WithTimeout(n.ctx, time.Minute)
			defer cancel()
			// A refresh is small; storing nodes that lost the value (a
			// restart) answer 404, and a new put reaches the closest
			// nodes of now.
			if _, err := n.Refresh(ctx, p.hash, p.value.ID); err == nil {
				return
			}
			if _, err := n.Put(ctx, p.hash, p.value); err != nil {
				n.log.Warn().Err(err).Stringer("key", p.hash).Msg("Re-announcing a permanent value failed; trying again later")
			}
		}()
	}
}
