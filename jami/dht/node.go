package dht

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Timing (OpenDHT: MAX_RESPONSE_TIME 1 s, a request is retried 3 times;
// token secrets rotate every 15–45 min; parts must arrive within 3 s).
const (
	requestTimeout = time.Second
	requestTries   = 3
	secretRotation = 20 * time.Minute
	partsTimeout   = 3 * time.Second
	maxDatagram    = 64 * 1024
)

// Config configures a node.
type Config struct {
	// ID is the node id; zero: random.
	ID InfoHash
	// Listen4 and Listen6 are the UDP addresses to bind ("" to skip a
	// family); at least one.
	Listen4, Listen6 string
	Network          uint32
	// Client: the node only asks (a command-line run); it says so, so that
	// other nodes keep it out of their routing tables.
	Client bool
	// MaxRequestsPerSec and MaxPeerRequestsPerSec limit the requests the
	// node answers, in all and per source IP address (OpenDHT's
	// max_req_per_sec and max_peer_req_per_sec); 0 takes the default, a
	// negative value means no limit (dhtnode -U). Replies are not limited.
	MaxRequestsPerSec     int
	MaxPeerRequestsPerSec int
}

// Default request limits.
const (
	DefaultMaxRequestsPerSec     = 8192
	DefaultMaxPeerRequestsPerSec = 1024
)

// Node is a DHT node: it answers other nodes and makes requests of them.
type Node struct {
	cfg    Config
	self   Sender
	log    zerolog.Logger
	conn4  *net.UDPConn
	conn6  *net.UDPConn
	table4 *table
	table6 *table
	store  *storage

	mu      sync.Mutex
	tid     uint32
	pending map[uint32]*request
	secrets [2][8]byte
	// partial holds replies and requests whose values come in parts.
	partial map[partialKey]*partialMsg
	// listens are our subscriptions, by socket id.
	listens map[uint32]*subscription
	sid     uint32
	perm    permanents
	limits  rateLimits
	// pings bounds the pings to new nodes (seenRequester).
	pings *pingSlots

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type request struct {
	to    netip.AddrPort
	reply chan *Message
}

type partialKey struct {
	from netip.AddrPort
	tid  uint32
}

type partialMsg struct {
	msg     *Message
	bufs    map[int][]byte
	started time.Time
}

// New binds the node's sockets; Run serves them.
func New(cfg Config, log zerolog.Logger) (*Node, error) {
	if cfg.ID.IsZero() {
		cfg.ID = RandomHash()
	}
	if cfg.MaxRequestsPerSec == 0 {
		cfg.MaxRequestsPerSec = DefaultMaxRequestsPerSec
	}
	if cfg.MaxPeerRequestsPerSec == 0 {
		cfg.MaxPeerRequestsPerSec = DefaultMaxPeerRequestsPerSec
	}
	n := &Node{
		cfg:     cfg,
		self:    Sender{ID: cfg.ID, Network: cfg.Network, Client: cfg.Client},
		log:     log.With().Str("dht_id", cfg.ID.String()[:8]).Logger(),
		table4:  newTable(cfg.ID),
		table6:  newTable(cfg.ID),
		store:   newStorage(),
		pending: map[uint32]*request{},
		partial: map[partialKey]*partialMsg{},
		listens: map[uint32]*subscription{},
		limits:  rateLimits{global: cfg.MaxRequestsPerSec, perPeer: cfg.MaxPeerRequestsPerSec, peers: map[netip.Addr]int{}},
		pings:   newPingSlots(maxNewNodePings, maxNewNodePingsPerPeer),
	}
	_, _ = rand.Read(n.secrets[0][:])
	_, _ = rand.Read(n.secrets[1][:])
	var b [4]byte
	_, _ = rand.Read(b[:])
	n.tid = binary.BigEndian.Uint32(b[:])
	var err error
	if cfg.Listen4 != "" {
		if n.conn4, err = listenUDP("udp4", cfg.Listen4); err != nil {
			return nil, err
		}
	}
	if cfg.Listen6 != "" {
		if n.conn6, err = listenUDP("udp6", cfg.Listen6); err != nil {
			n.closeConns()
			return nil, err
		}
	}
	if n.conn4 == nil && n.conn6 == nil {
		return nil, errors.New("a DHT node needs an IPv4 or IPv6 address to listen on")
	}
	return n, nil
}

func listenUDP(network, addr string) (*net.UDPConn, error) {
	a, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		return nil, fmt.Errorf("DHT address %q: %w", addr, err)
	}
	c, err := net.ListenUDP(network, a)
	if err != nil {
		return nil, fmt.Errorf("binding the DHT node to %s: %w", addr, err)
	}
	return c, nil
}

// ID is the node's id.
func (n *Node) ID() InfoHash { return n.cfg.ID }

// Addr4 and Addr6 are the bound addresses (invalid if not bound).
func (n *Node) Addr4() netip.AddrPort { return addrOf(n.conn4) }

// Addr6 is the bound IPv6 address.
func (n *Node) Addr6() netip.AddrPort { return addrOf(n.conn6) }

func addrOf(c *net.UDPConn) netip.AddrPort {
	if c == nil {
		return netip.AddrPort{}
	}
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Start serves the sockets until Close.
func (n *Node) Start(ctx context.Context) {
	n.ctx, n.cancel = context.WithCancel(ctx)
	for _, c := range []*net.UDPConn{n.conn4, n.conn6} {
		if c != nil {
			n.wg.Add(1)
			go n.readLoop(c)
		}
	}
	n.wg.Add(1)
	go n.maintain()
}

// Close stops the node and waits for its goroutines.
func (n *Node) Close() error {
	if n.cancel != nil {
		n.cancel()
	}
	n.closeConns()
	n.wg.Wait()
	return nil
}

func (n *Node) closeConns() {
	for _, c := range []*net.UDPConn{n.conn4, n.conn6} {
		if c != nil {
			_ = c.Close()
		}
	}
}

func (n *Node) readLoop(c *net.UDPConn) {
	defer n.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		k, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if n.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if martian(from) {
			continue
		}
		m, err := ParseMessage(buf[:k])
		if err != nil {
			n.log.Trace().Err(err).Stringer("from", from).Msg("Dropping a datagram that is not an OpenDHT message")
			continue
		}
		if m.Network != n.cfg.Network {
			continue
		}
		n.handle(m, from)
	}
}

// maintain rotates token secrets and expires storage and partial messages.
func (n *Node) maintain() {
	defer n.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastRotation := time.Now()
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-tick.C:
			n.store.expire(now)
			n.mu.Lock()
			for k, p := range n.partial {
				if now.Sub(p.started) > partsTimeout {
					delete(n.partial, k)
				}
			}
			if now.Sub(lastRotation) > secretRotation {
				n.secrets[1] = n.secrets[0]
				_, _ = rand.Read(n.secrets[0][:])
				lastRotation = now
			}
			n.mu.Unlock()
			n.renewListens(now)
			n.keepAlive(now)
		}
	}
}

func (n *Node) send(to netip.AddrPort, b []byte) {
	c := n.conn4
	if to.Addr().Is6() && !to.Addr().Is4In6() {
		c = n.conn6
	}
	if c == nil {
		return
	}
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		n.log.Trace().Err(err).Stringer("to", to).Msg("Sending a DHT datagram failed")
	}
}

func (n *Node) sendAll(to netip.AddrPort, bs [][]byte) {
	for _, b := range bs {
		n.send(to, b)
	}
}

func (n *Node) tableFor(a netip.AddrPort) *table {
	if a.Addr().Is4() {
		return n.table4
	}
	return n.table6
}

// token is what a node must echo to put or listen here: SHA-256 of a secret
// and its address.
func (n *Node) token(from netip.AddrPort, secret int) []byte {
	h := sha256.New()
	n.mu.Lock()
	h.Write(n.secrets[secret][:])
	n.mu.Unlock()
	h.Write(from.Addr().AsSlice())
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], from.Port())
	h.Write(port[:])
	return h.Sum(nil)
}

func (n *Node) tokenValid(from netip.AddrPort, tok []byte) bool {
	for i := range 2 {
		if string(n.token(from, i)) == string(tok) {
			return true
		}
	}
	return false
}

// handle dispatches one message.
func (n *Node) handle(m *Message, from netip.AddrPort) {
	now := time.Now()
	switch m.Kind {
	case KindReply, KindError:
		n.handleReply(m, from, now)
		return
	case KindValueData:
		n.handleParts(m, from, now)
		return
	case KindValueUpdate:
		return // version 0 listeners: we listen with version 1
	}
	// A request: from a node (not ourselves), within the rate limits.
	if m.ID.IsZero() || m.ID == n.cfg.ID || !n.limits.allow(from.Addr(), now) {
		return
	}
	// A client node (one that only asks) does not enter the table.
	if !m.IsClient {
		n.seenRequester(NodeInfo{ID: m.ID, Addr: from}, now)
	}
	if len(m.ValueSizes) > 0 {
		// A put or update whose values follow in parts.
		n.startPartial(m, from, now)
		return
	}
	n.handleRequest(m, from, now)
}

// seenRequester records a node that sent us a request. A new node is pinged,
// so that it becomes good and is told to others, within the caps on such
// pings (pingSlots).
//
// A new node that finds no free slot is left out of the table rather than
// recorded unpinged: recorded, it would no longer be new, so no later
// request of its own would get it pinged, and our lookups would start from
// it (they use nodes not yet good) — under a flood, from junk. Left out,
// its next request, once slots are free again, gets it pinged; and a reply
// of its to one of our requests adds it as good, whatever the caps.
func (n *Node) seenRequester(info NodeInfo, now time.Time) {
	t := n.tableFor(info.Addr)
	if t.touch(info, now) {
		return
	}
	src := info.Addr.Addr()
	if !n.pings.acquire(src) {
		if k := n.pings.drop(now); k > 0 {
			n.log.Warn().Uint64("dropped", k).Uint64("dropped_total", n.pings.dropped.Load()).
				Int("in_flight", n.pings.count()).Stringer("last_from", info.Addr).
				Msg("Not pinging new DHT nodes: too many pings in flight (a flood of requests from unknown nodes?)")
		}
		return
	}
	if !t.seen(info, false, now) { // its bucket is full of good nodes
		n.pings.release(src)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.pings.release(src)
		_, _ = n.Ping(n.ctx, info.Addr)
	}()
}

func (n *Node) handleRequest(m *Message, from netip.AddrPort, now time.Time) {
	switch m.Kind {
	case KindPing:
		n.send(from, n.self.Pong(m.TID, from.Addr()))
	case KindFind:
		n4, n6 := n.closestRecords(m.Target, m.Want, from, now)
		n.sendAll(from, n.self.NodesValues(m.TID, from.Addr(), n4, n6, nil, n.token(from, 0)))
	case KindGet:
		n4, n6 := n.closestRecords(m.Hash, m.Want, from, now)
		values := n.store.get(m.Hash, now)
		n.sendAll(from, n.self.NodesValues(m.TID, from.Addr(), n4, n6, values, n.token(from, 0)))
	case KindPut:
		n.handlePut(m, from, now)
	case KindRefresh:
		if !n.tokenValid(from, m.Token) {
			n.send(from, n.self.Error(m.TID, ErrUnauthorized, "Refresh with wrong token", true))
			return
		}
		ok, listeners := n.store.refresh(m.Hash, m.ValueID, now)
		if !ok {
			n.send(from, n.self.Error(m.TID, ErrNotFound, "Not found", true))
			return
		}
		n.tellRefreshed(listeners, m.ValueID)
		n.send(from, n.self.ValueAnnounced(m.TID, m.ValueID, from.Addr()))
	case KindListen:
		if !n.tokenValid(from, m.Token) {
			n.send(from, n.self.Error(m.TID, ErrUnauthorized, "Listen with wrong token", true))
			return
		}
		values := n.store.listen(m.Hash, NodeInfo{ID: m.ID, Addr: from}, m.SocketID, now)
		n.send(from, n.self.Pong(m.TID, from.Addr()))
		if len(values) > 0 {
			n.sendAll(from, n.self.Update(n.nextTID(), m.Hash, m.SocketID, values, 0, n.token(from, 0)))
		}
	case KindUpdate:
		n.send(from, n.self.Pong(m.TID, from.Addr()))
		n.handleUpdate(m)
	}
}

func (n *Node) handlePut(m *Message, from netip.AddrPort, now time.Time) {
	if !n.tokenValid(from, m.Token) {
		n.send(from, n.self.Error(m.TID, ErrUnauthorized, "Put with wrong token", true))
		return
	}
	created := now
	if m.Created > 0 {
		created = time.Unix(m.Created, 0)
	}
	for _, v := range m.Values {
		if v == nil {
			continue
		}
		res, listeners := n.store.put(m.Hash, v, created, now)
		if res == storeNew || res == storeReplaced {
			n.tellNew(listeners, m.Hash, []*Value{v})
		}
		// OpenDHT acknowledges even what it did not store ("lies").
		n.send(from, n.self.ValueAnnounced(m.TID, v.ID, from.Addr()))
	}
}

func (n *Node) tellNew(listeners []*listener, hash InfoHash, values []*Value) {
	for _, l := range listeners {
		n.sendAll(l.node.Addr, n.self.Update(n.nextTID(), hash, l.sid, values, 0, n.token(l.node.Addr, 0)))
	}
}

func (n *Node) tellRefreshed(listeners []*listener, vid uint64) {
	for _, l := range listeners {
		n.send(l.node.Addr, n.self.UpdateIDs(n.nextTID(), l.sid, n.token(l.node.Addr, 0), "re", []uint64{vid}))
	}
}

// closestRecords packs the nodes closest to target of the families wanted
// (the asker's own family when it says nothing).
func (n *Node) closestRecords(target InfoHash, want Want, from netip.AddrPort, now time.Time) (n4, n6 []byte) {
	if want == 0 {
		want = Want4
		if from.Addr().Is6() {
			want = Want6
		}
	}
	if want&Want4 != 0 {
		n4 = packNodes(n.table4.closest(target, bucketSize, now, true), false)
	}
	if want&Want6 != 0 {
		n6 = packNodes(n.table6.closest(target, bucketSize, now, true), true)
	}
	return n4, n6
}

func (n *Node) nextTID() uint32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tid++
	return n.tid
}

// startPartial keeps a message whose values come in parts.
func (n *Node) startPartial(m *Message, from netip.AddrPort, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.partial) > 256 {
		return
	}
	n.partial[partialKey{from, m.TID}] = &partialMsg{msg: m, bufs: map[int][]byte{}, started: now}
}

// handleParts adds value parts; once every value is whole, the message is
// handled as if it had come in one piece.
func (n *Node) handleParts(m *Message, from netip.AddrPort, now time.Time) {
	key := partialKey{from, m.TID}
	n.mu.Lock()
	p := n.partial[key]
	if p == nil {
		n.mu.Unlock()
		return
	}
	for idx, part := range m.Parts {
		i := int(idx)
		size, ok := p.msg.ValueSizes[i]
		if !ok || uint64(len(p.bufs[i])) != part.Offset || uint64(len(p.bufs[i]))+uint64(len(part.Data)) > size {
			continue // out of order or too much: dropped, as OpenDHT does
		}
		p.bufs[i] = append(p.bufs[i], part.Data...)
	}
	for i, size := range p.msg.ValueSizes {
		if uint64(len(p.bufs[i])) != size {
			n.mu.Unlock()
			return
		}
	}
	delete(n.partial, key)
	n.mu.Unlock()
	for i, buf := range p.bufs {
		if v, err := UnpackValue(buf); err == nil && i < len(p.msg.Values) {
			p.msg.Values[i] = v
		}
	}
	p.msg.ValueSizes = nil
	if p.msg.Kind == KindReply {
		n.deliverReply(p.msg, from)
		return
	}
	n.handleRequest(p.msg, from, now)
}

func (n *Node) handleReply(m *Message, from netip.AddrPort, now time.Time) {
	n.mu.Lock()
	req := n.pending[m.TID]
	n.mu.Unlock()
	if req == nil || req.to != from {
		return
	}
	if !m.ID.IsZero() {
		n.tableFor(from).seen(NodeInfo{ID: m.ID, Addr: from}, true, now)
	}
	if len(m.ValueSizes) > 0 {
		n.startPartial(m, from, now)
		return
	}
	n.deliverReply(m, from)
}

func (n *Node) deliverReply(m *Message, from netip.AddrPort) {
	n.mu.Lock()
	req := n.pending[m.TID]
	if req != nil && req.to == from {
		delete(n.pending, m.TID)
	}
	n.mu.Unlock()
	if req != nil && req.to == from {
		select {
		case req.reply <- m:
		default:
		}
	}
}

// ErrTimeout is a request no reply came to.
var ErrTimeout = errors.New("no reply")

// request sends a request (built for a transaction id) and waits for its
// reply, retrying; an error reply is returned as an error.
func (n *Node) request(ctx context.Context, to netip.AddrPort, build func(tid uint32) [][]byte) (*Message, error) {
	tid := n.nextTID()
	req := &request{to: to, reply: make(chan *Message, 1)}
	n.mu.Lock()
	n.pending[tid] = req
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.pending, tid)
		n.mu.Unlock()
	}()
	msg := build(tid)
	for range requestTries {
		n.sendAll(to, msg)
		t := time.NewTimer(requestTimeout)
		select {
		case m := <-req.reply:
			t.Stop()
			if m.Kind == KindError {
				return m, &ReplyError{Code: m.ErrorCode, Text: m.ErrorText}
			}
			return m, nil
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return nil, fmt.Errorf("%w from %s", ErrTimeout, to)
}

// ReplyError is an error a node answered with.
type ReplyError struct {
	Code uint16
	Text string
}

func (e *ReplyError) Error() string { return fmt.Sprintf("DHT error %d: %s", e.Code, e.Text) }

// Ping asks a node for its id.
func (n *Node) Ping(ctx context.Context, to netip.AddrPort) (InfoHash, error) {
	m, err := n.request(ctx, to, func(tid uint32) [][]byte { return [][]byte{n.self.Ping(tid)} })
	if err != nil {
		return InfoHash{}, err
	}
	return m.ID, nil
}

// Stats is what the node knows.
type Stats struct {
	Nodes4, Good4, Nodes6, Good6 int
	StoredKeys, StoredValues     int
	// PingsInFlight is how many pings to new nodes are awaiting a reply;
	// PingsDropped counts those not sent, since the start, as too many
	// were in flight (in all, or from the same address): under a flood of
	// requests from unknown nodes it grows fast.
	PingsInFlight int
	PingsDropped  uint64
}

// Stats counts the routing tables and the storage.
func (n *Node) Stats() Stats {
	now := time.Now()
	var s Stats
	s.Nodes4, s.Good4 = n.table4.size(now)
	s.Nodes6, s.Good6 = n.table6.size(now)
	s.StoredKeys, s.StoredValues = n.store.stats()
	s.PingsInFlight, s.PingsDropped = n.pings.count(), n.pings.dropped.Load()
	return s
}

// GoodNode is a node that answered lately.
type GoodNode struct {
	NodeInfo
	LastReply time.Time
}

// GoodNodes lists the nodes that answered lately (to remember them for the
// next start).
func (n *Node) GoodNodes() []GoodNode {
	now := time.Now()
	var out []GoodNode
	for _, t := range []*table{n.table4, n.table6} {
		for _, k := range t.good(now) {
			out = append(out, GoodNode{NodeInfo: k.NodeInfo, LastReply: k.lastReply})
		}
	}
	return out
}

// ClearStorage forgets what other nodes stored here (as a restart would).
func (n *Node) ClearStorage() { n.store.clear() }
