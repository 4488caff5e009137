//go:build linux

package dhtnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/voipbot/voipbot/internal/testbed/proc"
)

// PythonBinary is Debian's python3, which has python3-opendht (a python3
// earlier in PATH, pyenv's say, would not).
const PythonBinary = "/usr/bin/python3"

// PythonPrelude starts an OpenDHT runner `r` in a script: bound to the
// network's address (DHT_IP) on a random port, bootstrapped from DHT_BOOTSTRAP
// if set. Scripts can start with it:
//
//	script := dhtnode.PythonPrelude + `
//	for v in r.get(dht.InfoHash.get("key")): print(v.data.decode())
//	`
const PythonPrelude = `import os, sys, time
import opendht as dht
r = dht.DhtRunner()
r.run(port=0, ipv4=os.environ["DHT_IP"])
if os.environ.get("DHT_BOOTSTRAP"):
    _host, _port = os.environ["DHT_BOOTSTRAP"].rsplit(":", 1)
    r.bootstrap(_host, _port)
`

// Python is a python3 script running in a Network's namespace.
type Python struct {
	net    *Network
	proc   *proc.Process
	stderr bytes.Buffer // written by exec's copier; read after done

	done chan struct{} // closed once it has exited and been forgotten by the network
}

// StartPython runs script with Debian's python3 in the network's
// namespace, with the environment env ("KEY=value") on top of a minimal one
// (PATH, HOME, LANG, PYTHONUNBUFFERED=1), plus DHT_IP (NodeIP, for
// DhtRunner.run(ipv4=…)) and DHT_BOOTSTRAP (the first running node's
// address, if any; see PythonPrelude). The script is killed when ctx ends;
// Wait for its output.
func (n *Network) StartPython(ctx context.Context, script string, env ...string) (*Python, error) {
	if _, err := os.Stat(PythonBinary); err != nil {
		return nil, fmt.Errorf("%s is missing (apt-get install python3-opendht): %w", PythonBinary, err)
	}
	bootstrap := ""
	if nodes := n.Nodes(); len(nodes) > 0 {
		bootstrap = nodes[0].Addr().String()
	}
	p := &Python{net: n, done: make(chan struct{})}
	cmd := n.Link.Command(PythonBinary, "-c", script)
	cmd.Dir = n.Dir
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + n.Dir, "LANG=C.UTF-8",
		"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1",
		"DHT_IP=" + n.NodeIP.String(), "DHT_BOOTSTRAP=" + bootstrap}, env...)
	cmd.Stderr = &p.stderr
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, errors.New("the network is closed")
	}
	n.pythons[p] = true
	n.mu.Unlock()
	var err error
	// Its standard output is captured, every line of it.
	if p.proc, err = proc.Start(cmd, proc.Options{Name: "python", KeepLines: -1}); err != nil {
		n.forgetPython(p)
		return nil, err
	}
	stop := context.AfterFunc(ctx, p.proc.Kill)
	go func() {
		<-p.proc.Exited()
		stop()
		n.forgetPython(p)
		close(p.done)
	}()
	return p, nil
}

func (n *Network) forgetPython(p *Python) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.pythons, p)
}

// RunPython runs script (see StartPython) and returns its standard output
// once it exits. The error includes its standard error (a traceback).
func (n *Network) RunPython(ctx context.Context, script string, env ...string) (string, error) {
	p, err := n.StartPython(ctx, script, env...)
	if err != nil {
		return "", err
	}
	return p.Wait()
}

// WaitOutput waits until the script has printed a line containing substr
// and returns that line. It fails when the script exits without printing
// one, or ctx ends.
func (p *Python) WaitOutput(ctx context.Context, substr string) (string, error) {
	line, err := p.proc.WaitOutput(ctx, substr)
	if err != nil {
		return "", fmt.Errorf("waiting for python to print %q: %w%s", substr, err, p.stderrIfExited())
	}
	return line, nil
}

// stderrIfExited is the script's standard error, once it has exited.
func (p *Python) stderrIfExited() string {
	select {
	case <-p.proc.Exited():
		if p.stderr.Len() > 0 {
			return "\n--- stderr ---\n" + p.stderr.String()
		}
	default:
	}
	return ""
}

// Output is what the script has printed so far: its standard output, and
// once it has exited its standard error.
func (p *Python) Output() string {
	return strings.Join(p.proc.Lines(), "\n") + p.stderrIfExited()
}

// Wait waits for the script to exit and returns its standard output; the
// error, if it failed, includes its standard error.
func (p *Python) Wait() (string, error) {
	<-p.done
	lines := p.proc.Lines()
	out := strings.Join(lines, "\n")
	if len(lines) > 0 {
		out += "\n"
	}
	if err := p.proc.ExitErr(); err != nil {
		return out, fmt.Errorf("python: %w\n%s", err, p.Output())
	}
	return out, nil
}

// PID is the python process id.
func (p *Python) PID() int { return p.proc.PID() }

// Stop kills the script and waits for it to exit.
func (p *Python) Stop() {
	p.proc.Kill()
	<-p.done
}
