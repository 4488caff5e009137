//go:build linux

package dhtnode

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
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
	cmd    *exec.Cmd
	stderr bytes.Buffer // written by exec's copier; read after done

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed (and replaced) at every new line

	done    chan struct{}
	waitErr error // read after done
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
	p := &Python{net: n, changed: make(chan struct{}), done: make(chan struct{})}
	p.cmd = n.Link.Command(PythonBinary, "-c", script)
	p.cmd.Dir = n.Dir
	p.cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + n.Dir, "LANG=C.UTF-8",
		"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1",
		"DHT_IP=" + n.NodeIP.String(), "DHT_BOOTSTRAP=" + bootstrap}, env...)
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("python's output pipe: %w", err)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, errors.New("the network is closed")
	}
	n.pythons[p] = true
	n.mu.Unlock()
	if err = p.cmd.Start(); err != nil {
		n.forgetPython(p)
		return nil, fmt.Errorf("starting %s: %w", PythonBinary, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = p.cmd.Process.Kill() })
	go func() {
		lines := bufio.NewScanner(stdout)
		lines.Buffer(make([]byte, 64*1024), 16*1024*1024)
		for lines.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, lines.Text())
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		p.waitErr = p.cmd.Wait()
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
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if strings.Contains(p.lines[seen], substr) {
				line := p.lines[seen]
				p.mu.Unlock()
				return line, nil
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.done:
			p.mu.Lock()
			more := seen < len(p.lines)
			p.mu.Unlock()
			if !more {
				return "", fmt.Errorf("python exited (%w) without printing %q:\n%s", exitError(p.waitErr), substr, p.Output())
			}
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for python to print %q: %w\n%s", substr, ctx.Err(), p.Output())
		}
	}
}

// Output is what the script has printed so far: its standard output, and
// once it has exited its standard error.
func (p *Python) Output() string {
	p.mu.Lock()
	out := strings.Join(p.lines, "\n")
	p.mu.Unlock()
	select {
	case <-p.done:
		if p.stderr.Len() > 0 {
			out += "\n--- stderr ---\n" + p.stderr.String()
		}
	default:
	}
	return out
}

// Wait waits for the script to exit and returns its standard output; the
// error, if it failed, includes its standard error.
func (p *Python) Wait() (string, error) {
	<-p.done
	p.mu.Lock()
	out := strings.Join(p.lines, "\n")
	if len(p.lines) > 0 {
		out += "\n"
	}
	p.mu.Unlock()
	if p.waitErr != nil {
		return out, fmt.Errorf("python: %w\n%s", p.waitErr, p.Output())
	}
	return out, nil
}

// PID is the python process id.
func (p *Python) PID() int { return p.cmd.Process.Pid }

// Stop kills the script and waits for it to exit.
func (p *Python) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(stopGrace):
	}
}
