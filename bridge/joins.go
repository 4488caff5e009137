package bridge

import (
	"context"
	"sync"

	"maunium.net/go/mautrix/id"
)

// joinWaiters lets a bridge wait for a user to join a room (the direct room
// the bot just made to call them): the member events from sync wake it.
type joinWaiters struct {
	mu      sync.Mutex
	waiting map[joinKey][]chan struct{}
}

type joinKey struct {
	room id.RoomID
	user id.UserID
}

func newJoinWaiters() *joinWaiters { return &joinWaiters{waiting: map[joinKey][]chan struct{}{}} }

// joined wakes whoever waits for user in room.
func (j *joinWaiters) joined(room id.RoomID, user id.UserID) {
	j.mu.Lock()
	defer j.mu.Unlock()
	k := joinKey{room, user}
	for _, ch := range j.waiting[k] {
		close(ch)
	}
	delete(j.waiting, k)
}

// wait returns once check says user is in room, or a join event says so,
// or ctx ends. check runs after the waiter is registered, so a join in
// between is not missed.
func (j *joinWaiters) wait(ctx context.Context, room id.RoomID, user id.UserID, check func(context.Context) (bool, error)) error {
	ch := make(chan struct{})
	k := joinKey{room, user}
	j.mu.Lock()
	j.waiting[k] = append(j.waiting[k], ch)
	j.mu.Unlock()
	defer j.forget(k, ch)
	if ok, err := check(ctx); err != nil {
		return err
	} else if ok {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (j *joinWaiters) forget(k joinKey, ch chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	list := j.waiting[k]
	for i, c := range list {
		if c == ch {
			j.waiting[k] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(j.waiting[k]) == 0 {
		delete(j.waiting, k)
	}
}
