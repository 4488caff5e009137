package matrix

import (
	"context"
	"sync"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/store"
)

// syncStore tells mautrix where to resume. mautrix saves the next token
// before it processes a response; that save is ignored here, because the
// syncer commits the token in the same transaction as the events the
// response delivered. The filter ID is kept in memory only: uploading the
// filter once per start keeps it in step with this binary's filter.
type syncStore struct {
	store    *store.Store
	mu       sync.Mutex
	filterID string
}

var _ mautrix.SyncStore = (*syncStore)(nil)

func (s *syncStore) SaveFilterID(_ context.Context, _ id.UserID, filterID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.filterID = filterID
	return nil
}

func (s *syncStore) LoadFilterID(_ context.Context, _ id.UserID) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.filterID, nil
}

func (s *syncStore) SaveNextBatch(context.Context, id.UserID, string) error { return nil }

func (s *syncStore) LoadNextBatch(ctx context.Context, userID id.UserID) (string, error) {
	return s.store.NextBatch(ctx, userID)
}
