package bridge

import (
	"fmt"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/voipbot/voipbot/bridge/leg"
)

// admission holds the call slots: one per network leg (of any kind), so
// that calls.max_calls and calls.max_calls_per_room bound what the bot
// carries, whichever networks the legs are on. The bot's own sources take
// no slot.
type admission struct {
	max, perRoom int

	mu    sync.Mutex
	slots map[leg.ID]id.RoomID
}

func newAdmission(max, perRoom int) *admission {
	return &admission{max: max, perRoom: perRoom, slots: map[leg.ID]id.RoomID{}}
}

// admit takes a slot for l in room, or says why not. The slot of replaces,
// a leg about to end, does not count.
func (a *admission) admit(l leg.ID, room id.RoomID, replaces leg.ID) (busy string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.slots[l]; ok {
		return ""
	}
	total, inRoom := 0, 0
	for other, r := range a.slots {
		if other == replaces {
			continue
		}
		total++
		if r == room {
			inRoom++
		}
	}
	switch {
	case a.max > 0 && total >= a.max:
		return fmt.Sprintf("%d calls in progress, the most it takes", total)
	case a.perRoom > 0 && room != "" && inRoom >= a.perRoom:
		return fmt.Sprintf("%d calls in progress in this room, the most it takes", inRoom)
	}
	a.slots[l] = room
	return ""
}

// release gives a leg's slot back; a leg without one is fine.
func (a *admission) release(l leg.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.slots, l)
}

// held is how many slots are taken.
func (a *admission) held() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.slots)
}
