package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// Stat is what /proc/<pid>/stat says of a process.
type Stat struct {
	PPID int
	// State is R, S, D, Z (a zombie), X (dead), T, t, I, …
	State byte
	// StartTime is when the process started, in clock ticks after boot:
	// with the pid, it names a process across pid reuse.
	StartTime uint64
	// User and System are its CPU time so far, all threads: in user space
	// and in the kernel.
	User, System time.Duration
}

// Alive reports whether the state is neither zombie nor dead.
func (s Stat) Alive() bool { return s.State != 'Z' && s.State != 'X' }

// ReadStat reads /proc/<pid>/stat (Linux).
func ReadStat(pid int) (Stat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// the fields after its last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:]) // state is field 3, ppid 4, utime 14, stime 15, starttime 22
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ppid, err1 := strconv.Atoi(f[1])
	utime, err2 := strconv.ParseUint(f[11], 10, 64)
	stime, err3 := strconv.ParseUint(f[12], 10, 64)
	start, err4 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return Stat{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return Stat{
		PPID: ppid, State: f[0][0], StartTime: start,
		User: time.Duration(utime) * clockTick, System: time.Duration(stime) * clockTick,
	}, nil
}
