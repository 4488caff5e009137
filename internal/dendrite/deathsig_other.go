//go:build !linux

package dendrite

import "syscall"

// setDeathSignal does nothing: only Linux has PR_SET_PDEATHSIG.
func setDeathSignal(*syscall.SysProcAttr) {}
