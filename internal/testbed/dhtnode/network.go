//go:build linux

// Package dhtnode runs real OpenDHT 2.4.12 peers on this machine for tests:
// Debian's dhtnode, driven through its interactive command line, and python
// scripts using Debian's python3-opendht. They are the reference the
// project's own OpenDHT node (jami/dht) is tested against.
//
// # Where the peers run
//
// dhtnode binds 0.0.0.0 (and ::) and has no option to bind anything else, so
// every peer runs inside a network namespace of its own test (a Network),
// made by internal/testbed/netns: loopback up, plus a veth pair to this namespace.
// Nothing a test starts can reach or be reached from the machine's real
// networks, and parallel tests cannot collide on ports.
//
// Go test code reaches the peers in one of two ways:
//
//   - Across the veth pair (the usual way, nothing special in Go): a peer is
//     at Node.Addr(), NodeIP:port (the namespace's end of the pair); Go
//     sockets in the test process bind HostIP (this namespace's end) or
//     0.0.0.0. The peers bootstrap from each other on NodeIP, so the node
//     lists they hand out carry NodeIP addresses, which Go can reach.
//   - Inside the namespace: Network.Do runs a function on an OS thread that
//     has joined the namespace. A socket opened there stays in the
//     namespace after Do returns, so Go can use 127.0.0.1 like the peers.
//     Only sockets opened inside the function are in the namespace:
//     goroutines it starts run on other threads, outside.
//
// # Driving dhtnode
//
// dhtnode reads its commands with GNU readline, which echoes what it reads
// when its input is a pipe, character by character and interleaved with the
// node's asynchronous output. So each dhtnode's input is a pseudo-terminal
// with ECHO off (readline then echoes nothing and only prints its ">> "
// prompt, which the parser removes), and its output is a pipe. Commands are
// sent one at a time: the next is written only after dhtnode printed the
// line that ends the previous one (a Get's "Get: completed", a Put's
// "Put: success", …); Node's methods block until then or until their
// context ends. Keys are always sent as 40-digit hashes (see KeyHash), so
// that dhtnode prints no "Using h(key)" line from its input thread. The
// output formats are in parse.go.
//
// Limits: dhtnode's values reach the parser only as it prints them, so a
// text value holding ">> " loses it, and a text value with line breaks is
// read up to the first of its lines that ends in "]". The REPL's own puts
// take printable ASCII words only (Put refuses anything else). dhtnode prints from two
// threads (command replies from its input thread, results from its DHT
// thread) through one stdio buffer; the only command whose reply can meet
// a result is l ("Listening, token: N"), so a listen's token line could in
// principle be mixed with a value arriving in the same microseconds. A
// node has one Listen at a time, because dhtnode does not say which listen
// a value is for.
//
// Everything needs root (network namespaces), iproute2, and Debian's dhtnode
// and python3-opendht packages (apt-get install dhtnode python3-opendht).
package dhtnode

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/voipbot/voipbot/internal/testbed/netns"
)

// FirstPort is the port the first node of a Network gets when its Options
// name none (OpenDHT's default port); the next nodes get the ports after it.
const FirstPort = 4222

// Network is a network namespace in which dhtnode and python processes run,
// joined to this namespace by a veth pair.
type Network struct {
	// Link is the namespace and its veth pair.
	Link *netns.Link
	// NodeIP is the namespace's end of the veth pair: the peers are
	// reachable at NodeIP:port from both namespaces.
	NodeIP netip.Addr
	// HostIP is this namespace's end of the veth pair: Go sockets that talk
	// to the peers from the test process bind it (or 0.0.0.0).
	HostIP netip.Addr
	// Dir holds the peers' output and logs; Close removes it.
	Dir string

	mu       sync.Mutex
	closed   bool
	nextPort int
	ports    map[int]bool
	nodes    []*Node
	pythons  map[*Python]bool
}

// NewNetwork creates a namespace with a veth pair (internal/testbed/netns) and a
// temporary folder for the peers' output. Close removes both.
func NewNetwork() (*Network, error) {
	dir, err := os.MkdirTemp("", "dhtnode-")
	if err != nil {
		return nil, fmt.Errorf("creating the dhtnode folder: %w", err)
	}
	link, err := netns.Create()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	nodeIP, err1 := netip.ParseAddr(link.NSIP)
	hostIP, err2 := netip.ParseAddr(link.HostIP)
	if err = errors.Join(err1, err2); err != nil {
		_ = link.Delete()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("the namespace's addresses: %w", err)
	}
	return &Network{
		Link: link, NodeIP: nodeIP, HostIP: hostIP, Dir: dir,
		nextPort: FirstPort, ports: map[int]bool{}, pythons: map[*Python]bool{},
	}, nil
}

// allocPort reserves port in the namespace, or the next free one from
// FirstPort when port is 0. The namespace is fresh, so only the network's
// own nodes hold ports in it.
func (n *Network) allocPort(port int) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return 0, errors.New("the network is closed")
	}
	if port == 0 {
		for n.ports[n.nextPort] {
			n.nextPort++
		}
		port = n.nextPort
		n.nextPort++
	} else if n.ports[port] {
		return 0, fmt.Errorf("port %d is taken by another node of this network", port)
	}
	n.ports[port] = true
	return port, nil
}

func (n *Network) addNode(node *Node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nodes = append(n.nodes, node)
}

// removeNode forgets a stopped node and frees its port.
func (n *Network) removeNode(node *Node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.ports, node.port)
	for i, m := range n.nodes {
		if m == node {
			n.nodes = append(n.nodes[:i], n.nodes[i+1:]...)
			break
		}
	}
}

// Nodes are the network's running nodes, in the order they were started.
func (n *Network) Nodes() []*Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Node(nil), n.nodes...)
}

// Start runs a dhtnode in this network (opts.Network is ignored).
func (n *Network) Start(ctx context.Context, opts Options) (*Node, error) {
	opts.Network = n
	return Start(ctx, opts)
}

// StartN runs count dhtnodes with opts (each on its own port): the first
// bootstraps from opts.Bootstrap if set, every other one from the first.
// It returns once each node knows at least one good node (when count > 1),
// so that puts and gets reach the others: about a second, the time the
// first node takes to ping a node that contacted it. On error it stops the
// nodes it started.
func (n *Network) StartN(ctx context.Context, count int, opts Options) ([]*Node, error) {
	if count < 1 {
		return nil, fmt.Errorf("StartN(%d): need at least one node", count)
	}
	opts.Network = n
	opts.Port = 0
	var nodes []*Node
	fail := func(err error) ([]*Node, error) {
		for _, node := range nodes {
			_ = node.Stop()
		}
		return nil, err
	}
	for i := range count {
		o := opts
		if i > 0 {
			o.Bootstrap = nodes[0].Addr().String()
		}
		node, err := Start(ctx, o)
		if err != nil {
			return fail(fmt.Errorf("node %d of %d: %w", i+1, count, err))
		}
		nodes = append(nodes, node)
	}
	if count > 1 {
		for i, node := range nodes {
			if err := node.WaitConnected(ctx, 1); err != nil {
				return fail(fmt.Errorf("node %d of %d: %w", i+1, count, err))
			}
		}
	}
	return nodes, nil
}

// Do runs fn on an OS thread that has joined the namespace, and returns
// fn's error. Sockets fn opens belong to the namespace for their whole life
// (there 127.0.0.1 reaches the peers); goroutines fn starts do not run in
// the namespace.
func (n *Network) Do(fn func() error) error {
	trap, ok := setnsTrap[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("Network.Do: setns is not wired up for %s", runtime.GOARCH)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread is unlocked only once it is back in the original
		// namespace; if it cannot get back, the goroutine ends locked and
		// the Go runtime retires the thread.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening this thread's network namespace: %w", err)
			return
		}
		defer self.Close()
		target, err := os.Open(filepath.Join("/run/netns", n.Link.Name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening namespace %s: %w", n.Link.Name, err)
			return
		}
		defer target.Close()
		if _, _, e := syscall.RawSyscall(trap, target.Fd(), syscall.CLONE_NEWNET, 0); e != 0 {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("joining namespace %s: %w", n.Link.Name, e)
			return
		}
		fnErr := fn()
		if _, _, e := syscall.RawSyscall(trap, self.Fd(), syscall.CLONE_NEWNET, 0); e != 0 {
			errc <- errors.Join(fnErr, fmt.Errorf("leaving namespace %s: %w", n.Link.Name, e))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// setnsTrap is setns(2)'s system call number: the syscall package has it
// for some architectures only (not amd64).
var setnsTrap = map[string]uintptr{
	"amd64": 308, "arm64": 268, "riscv64": 268, "loong64": 268,
	"386": 346, "arm": 375, "ppc64le": 350, "ppc64": 350, "s390x": 339,
}

// Close stops every node and python process of the network, then deletes
// the namespace and the output folder. Take LogTail of the nodes first when
// a test failed.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	nodes := append([]*Node(nil), n.nodes...)
	pythons := make([]*Python, 0, len(n.pythons))
	for p := range n.pythons {
		pythons = append(pythons, p)
	}
	n.mu.Unlock()

	var errs []error
	for _, node := range nodes {
		if err := node.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range pythons {
		p.Stop()
	}
	errs = append(errs, n.Link.Delete())
	if err := os.RemoveAll(n.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// pollBackoff is the wait between two polls of something the DHT sends no
// event for (a node becoming known, a value becoming reachable): 10 ms at
// first, doubling up to 250 ms.
func pollBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 10 * time.Millisecond
	}
	return min(2*d, 250*time.Millisecond)
}
