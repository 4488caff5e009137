package loadgen

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat CPU times (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

// cpuTimes is a process's CPU time so far, all threads: in user space and
// in the kernel (system calls, and the network stack's work they do);
// zero for pid 0.
type cpuTimes struct{ user, system time.Duration }

func (c cpuTimes) total() time.Duration { return c.user + c.system }

func cpuTime(pid int) (cpuTimes, error) {
	if pid == 0 {
		return cpuTimes{}, nil
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTimes{}, fmt.Errorf("reading the server's CPU time: %w", err)
	}
	// The command name (field 2) may hold spaces: count fields after it.
	rest := string(data)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return cpuTimes{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return cpuTimes{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return cpuTimes{user: time.Duration(utime) * clockTick, system: time.Duration(stime) * clockTick}, nil
}
