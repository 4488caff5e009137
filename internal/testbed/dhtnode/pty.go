//go:build linux

package dhtnode

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// openPTY opens a pseudo-terminal pair with ECHO off on the terminal side.
// dhtnode's readline does not echo what it reads from a terminal whose ECHO
// is off (it takes the setting from the terminal it finds), whereas from a
// pipe it echoes every character, interleaved with the node's output.
//
// The terminal does not become anyone's controlling terminal (O_NOCTTY, and
// dhtnode does not call setsid), so closing master sends no SIGHUP: dhtnode
// reads end-of-file and quits.
func openPTY() (master, tty *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	fail := func(what string, err error) (*os.File, *os.File, error) {
		master.Close()
		if tty != nil {
			tty.Close()
		}
		return nil, nil, fmt.Errorf("pseudo-terminal: %s: %w", what, err)
	}
	// Each pointer is converted in the system call's own argument list, as
	// unsafe.Pointer's rule for syscall.Syscall requires.
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		return fail("unlocking", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		return fail("getting its number", e)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.FormatUint(uint64(n), 10), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fail("opening the terminal side", err)
	}
	var t syscall.Termios
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, tty.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t))); e != 0 {
		return fail("reading its settings", e)
	}
	t.Lflag &^= syscall.ECHO | syscall.ECHONL
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, tty.Fd(), syscall.TCSETS, uintptr(unsafe.Pointer(&t))); e != 0 {
		return fail("turning echo off", e)
	}
	return master, tty, nil
}
