//go:build linux

// Package netns makes a network namespace joined to this host's namespace by
// a veth pair, for tests and benchmarks whose servers must not use loopback
// (Janus never gathers loopback candidates) and must not use any address of
// the machine's real network either. It needs root and iproute2's ip.
package netns

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
)

// Link is a namespace and the two ends of its veth pair, each with an
// address of a private /30.
type Link struct {
	Name      string // the namespace
	HostIface string // the veth end in this namespace
	NSIface   string // the veth end inside Name
	HostIP    string
	NSIP      string
}

var seq atomic.Uint32

// Create makes a namespace with a veth pair: HostIP on this side, NSIP
// inside, and loopback up inside. Names carry the process ID so that
// parallel test processes do not collide; Delete removes it all.
func Create() (*Link, error) {
	n := seq.Add(1)
	pid := os.Getpid()
	// 10.201.0.0/16 carved into /30s by pid and sequence: private, and
	// unlikely to overlap a real network of the machine.
	block := (pid*4 + int(n)) % 16384
	base := fmt.Sprintf("10.%d.%d.", 200+block/(64*256)%50, block/64%256)
	host := (block % 64) * 4
	l := &Link{
		Name:      fmt.Sprintf("vb%d-%d", pid, n),
		HostIface: fmt.Sprintf("vbh%d", pid%100000*10+int(n)%10),
		NSIface:   fmt.Sprintf("vbn%d", pid%100000*10+int(n)%10),
		HostIP:    base + fmt.Sprint(host+1),
		NSIP:      base + fmt.Sprint(host+2),
	}
	steps := [][]string{
		{"netns", "add", l.Name},
		{"link", "add", l.HostIface, "type", "veth", "peer", "name", l.NSIface},
		{"link", "set", l.NSIface, "netns", l.Name},
		{"addr", "add", l.HostIP + "/30", "dev", l.HostIface},
		{"link", "set", l.HostIface, "up"},
		{"netns", "exec", l.Name, "ip", "addr", "add", l.NSIP + "/30", "dev", l.NSIface},
		{"netns", "exec", l.Name, "ip", "link", "set", l.NSIface, "up"},
		{"netns", "exec", l.Name, "ip", "link", "set", "lo", "up"},
	}
	for _, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			_ = l.Delete()
			return nil, fmt.Errorf("ip %s: %w: %s (network namespaces need root and iproute2)",
				strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return l, nil
}

// Command runs a program inside the namespace.
func (l *Link) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.Name, name}, args...)...)
}

// Delete removes the namespace and the veth pair (deleting one end of a
// veth pair removes the other).
func (l *Link) Delete() error {
	_ = exec.Command("ip", "link", "del", l.HostIface).Run()
	if out, err := exec.Command("ip", "netns", "del", l.Name).CombinedOutput(); err != nil &&
		!strings.Contains(string(out), "No such file") {
		return fmt.Errorf("deleting namespace %s: %w: %s", l.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
