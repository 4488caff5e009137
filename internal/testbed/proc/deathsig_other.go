//go:build !linux

package proc

import "syscall"

// setDeathSignal does nothing: only Linux has PR_SET_PDEATHSIG.
func setDeathSignal(*syscall.SysProcAttr) {}
