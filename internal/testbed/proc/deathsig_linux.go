package proc

import "syscall"

// setDeathSignal has the process killed when the thread that started it
// (and so, here, the test process) goes, unless a death signal is set.
func setDeathSignal(attr *syscall.SysProcAttr) {
	if attr.Pdeathsig == 0 {
		attr.Pdeathsig = syscall.SIGKILL
	}
}
