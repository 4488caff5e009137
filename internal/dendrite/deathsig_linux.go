package dendrite

import "syscall"

// setDeathSignal has the server killed when the thread that started it
// ends (PR_SET_PDEATHSIG).
func setDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
