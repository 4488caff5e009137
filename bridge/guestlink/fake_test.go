package guestlink_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/voipbot/voipbot/bridge/guestlink"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.UnixMilli(1_800_000_000_000)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeStore keeps links in memory, with the semantics of *store.Store
// (the same scenarios run against both: see manager_test.go). err, when
// set, fails every call; lookups counts LinkByTokenHash calls.
type fakeStore struct {
	mu      sync.Mutex
	links   []guestlink.Record
	err     error
	lookups int
	// refuse makes CreateLink report this many ids taken before it
	// accepts one.
	refuse int
}

func (f *fakeStore) CreateLink(_ context.Context, l guestlink.Record) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	if f.refuse > 0 {
		f.refuse--
		return false, nil
	}
	for _, o := range f.links {
		if o.ID == l.ID || o.TokenHash == l.TokenHash {
			return false, nil
		}
	}
	f.links = append(f.links, l)
	return true, nil
}

func (f *fakeStore) LinkByTokenHash(_ context.Context, hash string) (*guestlink.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.err != nil {
		return nil, f.err
	}
	for _, l := range f.links {
		if l.TokenHash == hash {
			return &l, nil
		}
	}
	return nil, nil
}

func (f *fakeStore) LiveLinks(_ context.Context, room string, now time.Time) ([]guestlink.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []guestlink.Record
	for _, l := range f.links {
		if l.Room == room && l.ExpiresAt.After(now) && l.RevokedAt.IsZero() {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b guestlink.Record) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

func (f *fakeStore) find(id string) *guestlink.Record {
	for i := range f.links {
		if f.links[i].ID == id {
			return &f.links[i]
		}
	}
	return nil
}

func (f *fakeStore) RevokeLink(_ context.Context, room, id string, at time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	l := f.find(id)
	if l == nil || l.Room != room {
		return false, nil
	}
	if l.RevokedAt.IsZero() {
		l.RevokedAt = at
	}
	return true, nil
}

func (f *fakeStore) CountLinkJoin(_ context.Context, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	l := f.find(id)
	if l == nil {
		return false, nil
	}
	l.Joins++
	return true, nil
}

func (f *fakeStore) PruneLinks(_ context.Context, before time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	n := len(f.links)
	f.links = slices.DeleteFunc(f.links, func(l guestlink.Record) bool {
		return l.ExpiresAt.Before(before) || !l.RevokedAt.IsZero() && l.RevokedAt.Before(before)
	})
	return n - len(f.links), nil
}

// setErr makes every later call fail with err.
func (f *fakeStore) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// records returns a copy of what is stored.
func (f *fakeStore) records() []guestlink.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.links)
}
