//go:build !linux

package dendrite

import "syscall"

// setDeathSignal does nothing: only Linux has PR_SET_PDEATHSIG.
func setDeathSignal(*syscall.SysProcAttr) {}

// awaitExit is not available: the caller reaps the process without
// killing what is left of its group first.
func awaitExit(int) bool { return false }
