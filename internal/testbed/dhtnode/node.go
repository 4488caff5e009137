//go:build linux

package dhtnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/voipbot/voipbot/internal/testbed/proc"
)

// Binary is the dhtnode Start runs (Debian's dhtnode package, OpenDHT 2.4.12).
const Binary = "/usr/bin/dhtnode"

const (
	// stopGrace is how long Stop waits for dhtnode to quit before it
	// kills it.
	stopGrace = 2 * time.Second
	// cancelTimeout bounds the clean-up of a Listen whose context ended.
	cancelTimeout = 30 * time.Second
	// maxCommand is the longest command line sent: the terminal's line
	// buffer holds 4095 characters while readline is not reading.
	maxCommand = 4000
	// logTailBytes is how much of each output file LogTail returns.
	logTailBytes = 4000
)

var (
	// ErrFailed is wrapped by the error of an operation dhtnode reported
	// as a failure ("Get: failure", "Put: failure", …). A lone node's gets
	// and puts fail (there is nobody to ask or store at) although it reads
	// and stores its own values.
	ErrFailed = errors.New("dhtnode reported failure")
	// ErrNoIdentity: PutSigned and PutEncrypted need a node started with
	// an identity (Options.Identity or Certificate and PrivateKey).
	ErrNoIdentity = errors.New("dhtnode has no identity (start it with Options.Identity)")
	// ErrListenBusy: dhtnode does not say which of its listens a value is
	// for, so a Node has one Listen at a time.
	ErrListenBusy = errors.New("this node already has a Listen (dhtnode does not say which listen a value is for: use another node)")
	// ErrStopped: the node has stopped (or dhtnode exited).
	ErrStopped = errors.New("dhtnode has stopped")
)

// Options are dhtnode's command line.
type Options struct {
	// Network is the namespace to run in. Nil: a Network of the node's own,
	// which Stop closes.
	Network *Network
	// Port is the UDP port (-p). 0: the next free one from FirstPort.
	Port int
	// Identity generates an identity (-i: an EC CA and an RSA-4096 key and
	// certificate) and makes the node a SecureDht that signs, encrypts,
	// decrypts and checks values.
	Identity bool
	// Certificate and PrivateKey are files (PEM or DER) of an identity to
	// use instead of a generated one (--certificate, --privkey).
	Certificate, PrivateKey string
	// SaveIdentity writes a generated identity to SaveIdentity.pem (key)
	// and .crt (certificate), and its CA to SaveIdentity_ca.pem and .crt
	// (--save-identity; needs Identity).
	SaveIdentity string
	// Bootstrap is a host:port to bootstrap from (-b).
	Bootstrap string
	// NetworkID is OpenDHT's network id (-n); 0 is the public network's,
	// which Jami uses.
	NetworkID uint32
	// NoRateLimit lifts the request rate limits and storage quotas (-U).
	NoRateLimit bool
	// Verbose writes OpenDHT's log to a file that LogTail includes (-v -l).
	Verbose bool
}

// Node is a running dhtnode.
type Node struct {
	net    *Network
	ownNet bool
	port   int
	name   string // file names: dhtnode-<port>
	proc   *proc.Process
	input  *os.File // the terminal's master side: dhtnode's commands
	files  []string // stdout transcript, stderr, log

	ready  chan struct{} // closed once the start banner is read
	exited chan struct{} // closed once dhtnode has exited, been waited for, and its output read

	// repl is held (one token) from writing a command until dhtnode has
	// printed the line that ends it.
	repl chan struct{}

	mu      sync.Mutex
	nodeID  string
	pkID    string
	cur     *op        // the command waiting for its end line
	listen  *listenSub // the Listen, if any
	block   valueBlock // the value lines still expected
	partial *strings.Builder
	eof     bool

	stopOnce sync.Once
	stopErr  error
}

type opKind int

const (
	opGet opKind = iota
	opPut
	opPutSigned
	opPutEncrypted
	opListen
	opStats
)

// op is a command waiting for the line that ends it.
type op struct {
	kind    opKind
	values  []Value // opGet
	valueID uint64  // opPut
	token   string  // opListen
	stats   Stats   // opStats
	section int     // opStats: 0, 4 or 6 (the stats block being read)
	known   bool    // opStats: the IPv6 block's "Known nodes" line was read
	err     error
	done    chan struct{}
}

// valueBlock is a "Get: found" or "Listen: found" header's value lines
// still to come.
type valueBlock struct {
	left    int
	listen  bool
	expired bool
}

// Start runs dhtnode with opts and returns once it has printed its start
// banner (its sockets are bound by then). Stop it with Stop.
func Start(ctx context.Context, opts Options) (*Node, error) {
	if _, err := os.Stat(Binary); err != nil {
		return nil, fmt.Errorf("dhtnode is not installed (apt-get install dhtnode): %w", err)
	}
	n := &Node{
		net:    opts.Network,
		ready:  make(chan struct{}),
		exited: make(chan struct{}),
		repl:   make(chan struct{}, 1),
	}
	if n.net == nil {
		var err error
		if n.net, err = NewNetwork(); err != nil {
			return nil, err
		}
		n.ownNet = true
	}
	closeOwn := func() {
		if n.ownNet {
			_ = n.net.Close()
		}
	}
	port, err := n.net.allocPort(opts.Port)
	if err != nil {
		closeOwn()
		return nil, err
	}
	n.port = port
	n.name = fmt.Sprintf("dhtnode-%d", port)
	outPath := filepath.Join(n.net.Dir, n.name+".out")
	errPath := filepath.Join(n.net.Dir, n.name+".err")
	logPath := filepath.Join(n.net.Dir, n.name+".log")
	n.files = []string{outPath, errPath, logPath}

	args := []string{"-p", strconv.Itoa(port)}
	if opts.Identity {
		args = append(args, "-i")
	}
	if opts.Certificate != "" {
		args = append(args, "--certificate="+opts.Certificate)
	}
	if opts.PrivateKey != "" {
		args = append(args, "--privkey="+opts.PrivateKey)
	}
	if opts.SaveIdentity != "" {
		args = append(args, "--save-identity="+opts.SaveIdentity)
	}
	if opts.Bootstrap != "" {
		args = append(args, "-b", opts.Bootstrap)
	}
	if opts.NetworkID != 0 {
		args = append(args, "-n", strconv.FormatUint(uint64(opts.NetworkID), 10))
	}
	if opts.NoRateLimit {
		args = append(args, "-U")
	}
	if opts.Verbose {
		args = append(args, "-v", "-l", logPath)
	}

	fail := func(err error) (*Node, error) {
		n.net.removeNode(n)
		closeOwn()
		return nil, err
	}
	errFile, err := os.Create(errPath)
	if err != nil {
		return fail(fmt.Errorf("creating the dhtnode error file: %w", err))
	}
	input, tty, err := openPTY()
	if err != nil {
		errFile.Close()
		return fail(err)
	}
	n.input = input
	cmd := n.net.Link.Command(Binary, args...)
	cmd.Dir = n.net.Dir
	cmd.Stdin = tty
	cmd.Stderr = errFile
	// A hermetic environment: no user readline configuration (INPUTRC),
	// and a terminal type for which readline sends no escape sequences.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + n.net.Dir,
		"TERM=dumb", "INPUTRC=/dev/null", "LANG=C"}
	// dhtnode goes when the test process goes, even on SIGKILL or a test
	// timeout (proc sets PR_SET_PDEATHSIG). Its standard output, the
	// transcript, is parsed a line at a time; Stop quits it with x and the
	// end of its input.
	n.proc, err = proc.Start(cmd, proc.Options{
		Name: "dhtnode", LogPath: outPath, OnLine: n.handleLine, Grace: stopGrace,
		Quit: func() error {
			_, err := n.input.WriteString("x\n")
			return errors.Join(err, n.input.Close())
		},
	})
	tty.Close()
	errFile.Close()
	if err != nil {
		input.Close()
		return fail(err)
	}
	n.net.addNode(n)
	go func() {
		<-n.proc.Exited()
		n.endOfOutput()
		close(n.exited)
	}()

	select {
	case <-n.ready:
		return n, nil
	case <-n.exited:
		err = fmt.Errorf("dhtnode exited during start (%w):\n%s", exitError(n.proc.ExitErr()), n.LogTail())
	case <-ctx.Done():
		err = fmt.Errorf("dhtnode did not start: %w\n%s", ctx.Err(), n.LogTail())
	}
	_ = n.Stop()
	return nil, err
}

// Addr is the node's UDP address: NodeIP:port, reachable from this
// namespace (across the veth pair) and inside the network's namespace.
func (n *Node) Addr() netip.AddrPort { return netip.AddrPortFrom(n.net.NodeIP, uint16(n.port)) }

// Port is the node's UDP port (IPv4 and IPv6).
func (n *Node) Port() int { return n.port }

// Network is the network the node runs in.
func (n *Node) Network() *Network { return n.net }

// NodeID is the node's DHT id (40 hex digits), random at every start.
func (n *Node) NodeID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nodeID
}

// PublicKeyID is the id of the node's public key (40 hex digits: SHA-1 of
// its DER SubjectPublicKeyInfo), or "" without an identity. Its
// certificate is announced at that key, and PutEncrypted's recipient is
// named by it.
func (n *Node) PublicKeyID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pkID
}

// PID is dhtnode's process id.
func (n *Node) PID() int {
	if n.proc == nil {
		return 0
	}
	return n.proc.PID()
}

// Exited is closed once dhtnode has exited.
func (n *Node) Exited() <-chan struct{} { return n.exited }

// checkWord refuses what dhtnode's command line cannot carry: it reads
// each argument up to white space, and readline acts on control
// characters and (as meta keys) on bytes above 0x7f.
func checkWord(what, s string) error {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return fmt.Errorf("%s %q: dhtnode's command line takes printable ASCII without spaces only", what, s)
		}
	}
	return nil
}

// acquire takes the REPL: it waits until no command is outstanding.
func (n *Node) acquire(ctx context.Context) error {
	select {
	case n.repl <- struct{}{}:
	case <-n.exited:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	n.mu.Lock()
	eof := n.eof
	n.mu.Unlock()
	if eof {
		<-n.repl
		return ErrStopped
	}
	return nil
}

// write sends one command line; the caller holds the REPL.
func (n *Node) write(line string) error {
	if len(line) > maxCommand {
		return fmt.Errorf("command of %d bytes: dhtnode's terminal takes up to %d", len(line), maxCommand)
	}
	if _, err := n.input.WriteString(line + "\n"); err != nil {
		return fmt.Errorf("writing to dhtnode: %w", err)
	}
	return nil
}

// do sends a command that dhtnode ends with a line, and waits for that line.
// If ctx ends first, do returns ctx's error, and the command keeps the REPL
// until its line comes, so that no later command takes its output.
func (n *Node) do(ctx context.Context, kind opKind, line string) (*op, error) {
	if err := n.acquire(ctx); err != nil {
		return nil, err
	}
	o := &op{kind: kind, done: make(chan struct{})}
	n.mu.Lock()
	n.cur = o
	n.mu.Unlock()
	if err := n.write(line); err != nil {
		n.mu.Lock()
		n.cur = nil
		n.mu.Unlock()
		<-n.repl
		return nil, err
	}
	select {
	case <-o.done:
		return o, o.err
	case <-n.exited:
		return nil, ErrStopped
	case <-ctx.Done():
		return nil, fmt.Errorf("%q: %w", line, ctx.Err())
	}
}

// sendOnly sends a command that prints nothing.
func (n *Node) sendOnly(ctx context.Context, line string) error {
	if err := n.acquire(ctx); err != nil {
		return err
	}
	defer func() { <-n.repl }()
	return n.write(line)
}

// Get reads the values at key (g; see KeyHash) as dhtnode prints them,
// once the get has completed. When dhtnode reports the get as failed, Get
// returns the values found with an error wrapping ErrFailed.
func (n *Node) Get(ctx context.Context, key string) ([]Value, error) {
	o, err := n.do(ctx, opGet, "g "+KeyHash(key))
	if o == nil {
		return nil, err
	}
	return o.values, err
}

// Put stores value at key (p: type 0, user type text/plain, unsigned) and
// returns the value id once dhtnode reports the put done. value must be
// printable ASCII without spaces (dhtnode reads one word).
func (n *Node) Put(ctx context.Context, key, value string) (uint64, error) {
	return n.put(ctx, "p", key, value)
}

// PutPermanent is Put that dhtnode keeps refreshing (pp).
func (n *Node) PutPermanent(ctx context.Context, key, value string) (uint64, error) {
	return n.put(ctx, "pp", key, value)
}

func (n *Node) put(ctx context.Context, cmd, key, value string) (uint64, error) {
	if err := checkWord("value", value); err != nil {
		return 0, err
	}
	o, err := n.do(ctx, opPut, cmd+" "+KeyHash(key)+" "+value)
	if o == nil {
		return 0, err
	}
	return o.valueID, err
}

// PutSigned stores value at key signed with the node's identity (s).
// dhtnode does not print the value id.
func (n *Node) PutSigned(ctx context.Context, key, value string) error {
	if err := checkWord("value", value); err != nil {
		return err
	}
	_, err := n.do(ctx, opPutSigned, "s "+KeyHash(key)+" "+value)
	return err
}

// PutEncrypted stores value at key, signed with the node's identity and
// encrypted for the owner of the public key whose id is toPublicKeyID (40
// hex digits; e). dhtnode first looks up that key's certificate in the
// DHT (at toPublicKeyID) and reports a failure if it finds none.
func (n *Node) PutEncrypted(ctx context.Context, key, toPublicKeyID, value string) error {
	if err := checkWord("value", value); err != nil {
		return err
	}
	if len(toPublicKeyID) != 40 || KeyHash(toPublicKeyID) != strings.ToLower(toPublicKeyID) {
		return fmt.Errorf("recipient %q: want a public key id of 40 hex digits", toPublicKeyID)
	}
	_, err := n.do(ctx, opPutEncrypted, "e "+KeyHash(key)+" "+strings.ToLower(toPublicKeyID)+" "+value)
	return err
}

// Bootstrap asks dhtnode to ping a node at addr (b host:port) and use it
// as a bootstrap node. dhtnode prints nothing: see WaitConnected.
func (n *Node) Bootstrap(ctx context.Context, addr string) error {
	if err := checkWord("address", addr); err != nil {
		return err
	}
	return n.sendOnly(ctx, "b "+addr)
}

// Stats runs ll and returns what it printed.
func (n *Node) Stats(ctx context.Context) (Stats, error) {
	o, err := n.do(ctx, opStats, "ll")
	if o == nil {
		return Stats{}, err
	}
	return o.stats, err
}

// WaitConnected polls Stats until the node knows at least good good IPv4
// nodes (nodes that answered it), or ctx ends.
func (n *Node) WaitConnected(ctx context.Context, good int) error {
	var delay time.Duration
	for {
		s, err := n.Stats(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %d good node(s): %w", good, err)
		}
		if s.IPv4.Good >= good {
			return nil
		}
		delay = pollBackoff(delay)
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d good node(s), last stats %+v: %w", good, s, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// Listen listens at key (l) and delivers every value dhtnode reports for it
// (first the values it already knows), with Expired set on values reported
// as expired. The listen lasts until ctx ends: then the channel is closed
// and the listen cancelled (cl). The channel is also closed when the node
// stops. Delivery does not block dhtnode: values queue until read.
//
// dhtnode does not say which listen a value is for, so a node has one
// Listen at a time (ErrListenBusy); a new one waits until dhtnode has
// dropped the previous one.
func (n *Node) Listen(ctx context.Context, key string) (<-chan Value, error) {
	hash := KeyHash(key)
	n.mu.Lock()
	prev := n.listen
	n.mu.Unlock()
	if prev != nil {
		select {
		case <-prev.ctx.Done():
		default:
			return nil, ErrListenBusy
		}
		select { // the previous one is being cancelled
		case <-prev.gone:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	sub := &listenSub{ctx: ctx, hash: hash, wake: make(chan struct{}, 1), out: make(chan Value), gone: make(chan struct{})}
	n.mu.Lock()
	if n.listen != nil {
		n.mu.Unlock()
		return nil, ErrListenBusy
	}
	n.listen = sub
	n.mu.Unlock()
	go sub.forward()

	if err := n.acquire(ctx); err != nil {
		n.dropListen(sub)
		return nil, err
	}
	o := &op{kind: opListen, done: make(chan struct{})}
	n.mu.Lock()
	n.cur = o
	n.mu.Unlock()
	if err := n.write("l " + hash); err != nil {
		n.mu.Lock()
		n.cur = nil
		n.mu.Unlock()
		<-n.repl
		n.dropListen(sub)
		return nil, err
	}
	go n.manageListen(sub, o)
	select {
	case <-o.done:
		if o.err != nil {
			return nil, o.err
		}
		return sub.out, nil
	case <-n.exited:
		return nil, ErrStopped
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// manageListen cancels a listen in dhtnode once its context has ended:
// when the l command has ended, it sends cl with the token, then a get as a
// barrier (dhtnode runs the two in order, so once the get is done no more
// values of this listen are printed), and only then lets another Listen
// start.
func (n *Node) manageListen(sub *listenSub, o *op) {
	defer n.dropListen(sub)
	select {
	case <-o.done:
	case <-n.exited:
		return
	}
	if o.err != nil {
		return
	}
	select {
	case <-sub.ctx.Done():
	case <-n.exited:
		return
	}
	sub.finish()
	ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
	defer cancel()
	if err := n.sendOnly(ctx, "cl "+sub.hash+" "+o.token); err != nil {
		return
	}
	_, _ = n.do(ctx, opGet, "g "+sub.hash)
}

// dropListen forgets sub: dhtnode no longer reports values for it.
func (n *Node) dropListen(sub *listenSub) {
	sub.finish()
	n.mu.Lock()
	if n.listen == sub {
		n.listen = nil
	}
	n.mu.Unlock()
	sub.goneOnce.Do(func() { close(sub.gone) })
}

// listenSub queues a Listen's values and forwards them to its channel.
type listenSub struct {
	ctx      context.Context
	hash     string
	wake     chan struct{}
	out      chan Value
	gone     chan struct{} // closed once dhtnode no longer reports for it
	goneOnce sync.Once

	mu     sync.Mutex
	queue  []Value
	closed bool
}

func (s *listenSub) push(v Value) {
	s.mu.Lock()
	if !s.closed {
		s.queue = append(s.queue, v)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// finish takes no more values; forward closes the channel once the queue
// is empty.
func (s *listenSub) finish() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *listenSub) forward() {
	defer close(s.out)
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-s.wake:
				continue
			case <-s.ctx.Done():
				return
			}
		}
		v := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()
		select {
		case s.out <- v:
		case <-s.ctx.Done():
			return
		}
	}
}

// endOfOutput fails what waits on dhtnode once its output has ended (it
// exited).
func (n *Node) endOfOutput() {
	n.mu.Lock()
	n.eof = true
	cur, sub := n.cur, n.listen
	n.cur = nil
	n.mu.Unlock()
	if cur != nil {
		cur.err = ErrStopped
		close(cur.done)
		<-n.repl
	}
	if sub != nil {
		sub.finish()
	}
}

// handleLine parses one line of dhtnode's output (see parse.go).
func (n *Node) handleLine(line string) {
	line = strings.ReplaceAll(line, prompt, "")
	n.mu.Lock()
	defer n.mu.Unlock()

	// A value whose text holds line breaks: its lines until one ends
	// with the value's closing bracket.
	if n.partial != nil {
		n.partial.WriteString("\n" + line)
		if strings.HasSuffix(line, "]") {
			s := n.partial.String()
			n.partial = nil
			n.valueLocked(s)
		}
		return
	}
	if n.block.left > 0 && strings.HasPrefix(line, "\t"+valuePrefix) {
		s := line[1:]
		if !strings.HasSuffix(s, "]") {
			n.partial = &strings.Builder{}
			n.partial.WriteString(s)
			return
		}
		n.valueLocked(s)
		return
	}

	select {
	case <-n.ready:
	default:
		n.bannerLocked(line)
		return
	}

	if m := reListen.FindStringSubmatch(line); m != nil {
		n.block = valueBlock{left: atoi(m[1]), listen: true, expired: m[2] != ""}
		return
	}
	if m := reGetFound.FindStringSubmatch(line); m != nil {
		n.block = valueBlock{left: atoi(m[1])}
		return
	}
	cur := n.cur
	if cur == nil {
		return
	}
	switch {
	case strings.HasPrefix(line, needsID):
		cur.err = ErrNoIdentity
		n.endLocked()
		return
	case strings.HasPrefix(line, unknownCmd):
		cur.err = fmt.Errorf("dhtnode: %s", line)
		n.endLocked()
		return
	}
	switch cur.kind {
	case opGet:
		if m := reGetDone.FindStringSubmatch(line); m != nil {
			cur.err = failed(m[1] == "failure", "get")
			n.endLocked()
		}
	case opPut:
		if m := rePut.FindStringSubmatch(line); m != nil {
			cur.valueID, _ = strconv.ParseUint(m[2], 16, 64)
			cur.err = failed(m[1] == "failure", "put")
			n.endLocked()
		}
	case opPutSigned:
		if m := rePutSig.FindStringSubmatch(line); m != nil {
			cur.err = failed(m[1] == "failure", "signed put")
			n.endLocked()
		}
	case opPutEncrypted:
		if m := rePutEnc.FindStringSubmatch(line); m != nil {
			cur.err = failed(m[1] == "failure", "encrypted put")
			n.endLocked()
		}
	case opListen:
		if m := reToken.FindStringSubmatch(line); m != nil {
			cur.token = m[1]
			n.endLocked()
		}
	case opStats:
		n.statsLocked(cur, line)
	}
}

// exitError is cmd.Wait's error, or one saying the exit was clean.
func exitError(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

func failed(failure bool, what string) error {
	if failure {
		return fmt.Errorf("%s: %w", what, ErrFailed)
	}
	return nil
}

// bannerLocked reads the start banner.
func (n *Node) bannerLocked(line string) {
	if m := reBanner.FindStringSubmatch(line); m != nil {
		n.nodeID = m[1]
		return
	}
	if m := rePKID.FindStringSubmatch(line); m != nil {
		n.pkID = m[1]
		return
	}
	if line == bannerEnd {
		close(n.ready)
	}
}

// valueLocked hands a value line to the get or the listen it belongs to.
func (n *Node) valueLocked(s string) {
	block := n.block
	n.block.left--
	v, ok := parseValue(s)
	if !ok {
		return
	}
	if block.listen {
		v.Expired = block.expired
		if n.listen != nil {
			n.listen.push(v)
		}
		return
	}
	if n.cur != nil && n.cur.kind == opGet {
		n.cur.values = append(n.cur.values, v)
	}
}

// statsLocked reads a line of ll's output; the empty line after the IPv6
// block ends it.
func (n *Node) statsLocked(o *op, line string) {
	fam := &o.stats.IPv4
	if o.section == 6 {
		fam = &o.stats.IPv6
	}
	switch line {
	case "IPv4 stats:":
		o.section = 4
	case "IPv6 stats:":
		o.section = 6
	case "":
		if o.section == 6 && o.known {
			n.endLocked()
		}
	default:
		if m := reOngoing.FindStringSubmatch(line); m != nil {
			o.stats.OngoingOps = atoi(m[1])
		} else if m := reStorage.FindStringSubmatch(line); m != nil {
			o.stats.StoredValues, o.stats.StoredKB = atoi(m[1]), atoi(m[2])
		} else if m := reKnown.FindStringSubmatch(line); m != nil && o.section != 0 {
			fam.Good, fam.Dubious, fam.Incoming = atoi(m[1]), atoi(m[2]), atoi(m[3])
			o.known = o.section == 6
		} else if m := reSearches.FindStringSubmatch(line); m != nil && o.section != 0 {
			fam.Searches, fam.CachedNodes = atoi(m[1]), atoi(m[2])
		}
	}
}

// endLocked ends the current command and frees the REPL.
func (n *Node) endLocked() {
	cur := n.cur
	n.cur = nil
	close(cur.done)
	<-n.repl
}

// Stop quits dhtnode (x, then end of input) and waits for it to exit,
// killing it if it still runs after 2 s; a node with a Network of its own
// closes that too. It reports an error if dhtnode had exited abnormally by
// itself (a crash). Stop is safe to call more than once.
//
// dhtnode usually quits within milliseconds, but its shutdown waits for
// its queued operations, which it runs only while it is connected or
// disconnected, not while connecting: a node that knows only nodes that
// never answered it (a test peer that went away) takes about 10 s to give
// up on them. Nothing is lost by killing it then: it keeps no state.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		if n.proc == nil {
			return
		}
		err := n.proc.Stop()
		<-n.exited
		_ = n.input.Close()
		if err != nil && !errors.Is(err, proc.ErrKilled) {
			n.stopErr = fmt.Errorf("dhtnode exited abnormally: %w\n%s", err, n.LogTail())
		}
		n.net.removeNode(n)
	})
	if n.ownNet {
		return errors.Join(n.stopErr, n.net.Close())
	}
	return n.stopErr
}

// LogTail is the end of dhtnode's output, error output and (Verbose) log,
// for failure messages.
func (n *Node) LogTail() string {
	var b strings.Builder
	for _, p := range n.files {
		data, err := os.ReadFile(p)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if len(data) > logTailBytes {
			data = data[len(data)-logTailBytes:]
		}
		fmt.Fprintf(&b, "--- %s ---\n%s\n", filepath.Base(p), data)
	}
	return b.String()
}
