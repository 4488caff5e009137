package matrix

import (
	"context"
	"sync"
	"time"

	"maunium.net/go/mautrix"
)

// featuresTTL is how long /versions' answer is trusted: a homeserver
// gains features only on upgrade, and the Element Call leg asks at every
// join and membership refresh.
const featuresTTL = 10 * time.Minute

// features caches the homeserver's unstable features (/versions). A
// failed request is not cached: the next ask tries again.
type features struct {
	mu  sync.Mutex
	at  time.Time
	set map[string]bool
}

func (f *features) has(ctx context.Context, cli *mautrix.Client, name string) bool {
	f.mu.Lock()
	fresh := f.set != nil && time.Since(f.at) < featuresTTL
	set := f.set
	f.mu.Unlock()
	if !fresh {
		resp, err := cli.Versions(ctx)
		if err != nil {
			return set[name] // what was known, if anything
		}
		set = resp.UnstableFeatures
		if set == nil {
			set = map[string]bool{}
		}
		f.mu.Lock()
		f.set, f.at = set, time.Now()
		f.mu.Unlock()
	}
	return set[name]
}
