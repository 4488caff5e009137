package loadgen

import (
	"fmt"
	"time"

	"github.com/voipbot/voipbot/internal/testbed/proc"
)

// cpuTimes is a process's CPU time so far, all threads: in user space and
// in the kernel (system calls, and the network stack's work they do);
// zero for pid 0.
type cpuTimes struct{ user, system time.Duration }

func (c cpuTimes) total() time.Duration { return c.user + c.system }

func cpuTime(pid int) (cpuTimes, error) {
	if pid == 0 {
		return cpuTimes{}, nil
	}
	st, err := proc.ReadStat(pid)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("reading the server's CPU time: %w", err)
	}
	return cpuTimes{user: st.User, system: st.System}, nil
}
