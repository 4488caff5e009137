package dendrite

import (
	"syscall"
	"unsafe"
)

// setDeathSignal has the server killed when the thread that started it
// ends (PR_SET_PDEATHSIG).
func setDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }

// awaitExit blocks until the child pid has exited, without reaping it
// (waitid with WNOWAIT), and reports true: while it is a zombie its pid,
// and so its process group's id, cannot be taken by another process.
func awaitExit(pid int) bool {
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, 1 /* P_PID */, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			return errno == 0
		}
	}
}
