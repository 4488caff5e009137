package connect

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/jami/dht"
	"github.com/voipbot/voipbot/jami/mux"
)

// Timeouts of a connection, as dhtnet has them.
const (
	// RequestTimeout is how long a caller waits for the answer to its
	// request (DHT_MSG_TIMEOUT).
	RequestTimeout = 30 * time.Second
	// setupTimeout bounds ICE and TLS once both sides know each other.
	setupTimeout = 30 * time.Second
	// beaconInterval is how often an idle socket is checked with a beacon.
	beaconInterval = 30 * time.Second
	// treatedFor is how long a request id is remembered (a listener sees a
	// value again on each refresh).
	treatedFor = 10 * time.Minute
	// maxSetups bounds the connections being set up for peers at once.
	maxSetups = 8
)

// ErrRefused: the policy refused the peer.
var ErrRefused = errors.New("refused by policy")

// Config configures a Manager.
type Config struct {
	// DHT carries the requests (signed by and encrypted for devices).
	DHT *dht.Secure
	// Self is the bot's device.
	Self Identity
	ICE  ICEConfig
	// Allow decides whether a device may connect to us (its chain is
	// checked already); nil allows every valid device.
	Allow func(Device) error
	// AcceptChannel decides on a channel a peer opens, by name; nil
	// declines all.
	AcceptChannel func(Device, string) bool
	// OnChannel receives each channel a peer opened and AcceptChannel took.
	// It must not block.
	OnChannel func(*Peer, *mux.Channel)
	Log       zerolog.Logger
}

// Manager is the bot's ConnectionManager: it listens for connection
// requests on its device's keys and answers them, connects to peer devices
// on request, and keeps one multiplexed socket per device, reused by every
// channel (call) to it.
type Manager struct {
	cfg  Config
	ice  *iceTCP
	keys Keys
	log  zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	setups chan struct{}

	mu      sync.Mutex
	peers   map[dht.InfoHash]*Peer
	dialing map[dht.InfoHash]*dial
	pending map[uint64]chan *Request
	treated map[uint64]time.Time
}

// Peer is a connected device: one socket, any number of channels.
type Peer struct {
	Device Device
	Socket *mux.Socket
	// Incoming says the peer connected to us.
	Incoming bool
}

// dial is a connection being made, shared by those who want it meanwhile.
type dial struct {
	done chan struct{}
	peer *Peer
	err  error
}

// New makes a manager; Start starts it.
func New(cfg Config) (*Manager, error) {
	if cfg.DHT == nil || cfg.Self.Key == nil || len(cfg.Self.Chain) < 2 {
		return nil, errors.New("a connection manager needs the DHT and the device's key and chain")
	}
	if cfg.ICE.TCP == nil {
		return nil, errors.New("a connection manager needs a TCP listener for its passive candidates")
	}
	keys, err := KeysOf(&cfg.Self.Key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &Manager{
		cfg: cfg, ice: newICETCP(cfg.ICE), keys: keys,
		log:     cfg.Log.With().Str("component", "jami-connect").Logger(),
		setups:  make(chan struct{}, maxSetups),
		peers:   map[dht.InfoHash]*Peer{},
		dialing: map[dht.InfoHash]*dial{},
		pending: map[uint64]chan *Request{},
		treated: map[uint64]time.Time{},
	}, nil
}

// Start listens for requests on both forms of the device's key. It runs
// until Close.
func (m *Manager) Start(ctx context.Context) error {
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, k := range []struct {
		hash   dht.InfoHash
		legacy bool
	}{{m.keys.Legacy, true}, {m.keys.Long, false}} {
		if err := m.cfg.DHT.Listen(m.ctx, k.hash, func(v *dht.Value) { m.onValue(v, k.legacy) }); err != nil {
			m.cancel()
			return fmt.Errorf("listening for connection requests: %w", err)
		}
	}
	return nil
}

// Close ends every connection and stops listening.
func (m *Manager) Close() error {
	if m.cancel != nil {
		m.cancel()
	}
	m.mu.Lock()
	peers := make([]*Peer, 0, len(m.peers))
	for _, p := range m.peers {
		peers = append(peers, p)
	}
	m.mu.Unlock()
	for _, p := range peers {
		_ = p.Socket.Close()
	}
	m.wg.Wait()
	return m.ice.Close()
}

// onValue takes a value on one of our keys: a request or the answer to
// ours. It must not block (the DHT node calls it).
func (m *Manager) onValue(v *dht.Value, legacy bool) {
	if v.UserType != UserType || v.Owner == nil {
		return
	}
	req, err := ParseRequest(v.Data)
	if err != nil {
		m.log.Debug().Err(err).Msg("Ignoring a malformed connection request")
		return
	}
	m.mu.Lock()
	if req.IsAnswer {
		ch := m.pending[req.ID]
		delete(m.pending, req.ID)
		m.mu.Unlock()
		if ch != nil {
			ch <- req
		}
		return
	}
	now := time.Now()
	if _, seen := m.treated[req.ID]; seen {
		m.mu.Unlock()
		return
	}
	for id, at := range m.treated {
		if now.Sub(at) > treatedFor {
			delete(m.treated, id)
		}
	}
	m.treated[req.ID] = now
	m.mu.Unlock()
	select {
	case m.setups <- struct{}{}:
	default:
		m.log.Warn().Uint64("request", req.ID).Msg("Too many connections being set up: dropping a request")
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer func() { <-m.setups }()
		if err := m.answer(v, req, legacy); err != nil {
			m.log.Info().Err(err).Uint64("request", req.ID).Msg("Refused a connection request")
		}
	}()
}

// answer serves a peer's request: it checks the peer device on the DHT and
// against the policy, answers with our ICE description on the peer's key of
// the form the request came on (legacy: SHA-1), and (ICE controlling, TLS
// client) sets up the socket.
func (m *Manager) answer(v *dht.Value, req *Request, legacy bool) error {
	ctx, cancel := context.WithTimeout(m.ctx, RequestTimeout+setupTimeout)
	defer cancel()
	from, err := dht.PublicKeyID(v.Owner)
	if err != nil {
		return err
	}
	log := m.log.With().Stringer("device", from).Logger()
	chain, key, err := m.cfg.DHT.FindCertificate(ctx, from)
	if err != nil {
		return fmt.Errorf("the requesting device's certificate: %w", err)
	}
	if !key.Equal(v.Owner) {
		return errors.New("the request's signer is not the device whose certificate is on the DHT")
	}
	dev, err := ParseDevice(chain)
	if err != nil {
		return err
	}
	log = log.With().Stringer("account", dev.Account).Logger()
	if m.cfg.Allow != nil {
		if err := m.cfg.Allow(dev); err != nil {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
	}
	remote, errs := ParseICE(req.ICE)
	if remote.Ufrag == "" {
		return errors.Join(errs...)
	}
	agent, local, err := m.ice.agent(ctx)
	if err != nil {
		return err
	}
	ans := &Request{ID: req.ID, ICE: local.String(), IsAnswer: true, ConnType: req.ConnType}
	data, err := ans.Marshal()
	if err != nil {
		_ = agent.Close()
		return err
	}
	at := dev.Keys().Long
	if legacy {
		at = dev.Keys().Legacy
	}
	if _, err := m.cfg.DHT.PutEncrypted(ctx, at, v.Owner, &dht.Value{Type: ValueType, UserType: UserType, Data: data}); err != nil {
		_ = agent.Close()
		return fmt.Errorf("answering the connection request: %w", err)
	}
	log.Debug().Uint64("request", req.ID).Msg("Answered a connection request")
	sctx, scancel := context.WithTimeout(ctx, setupTimeout)
	defer scancel()
	p, err := m.setup(sctx, agent, remote, dev, true)
	if err != nil {
		return err
	}
	m.keep(p)
	log.Info().Msg("A Jami device connected")
	return nil
}

// Connect gives the socket to a device: the one there is, or a new one.
func (m *Manager) Connect(ctx context.Context, dev Device, connType string) (*Peer, error) {
	m.mu.Lock()
	if p := m.peers[dev.ID]; p != nil {
		select {
		case <-p.Socket.Done():
			delete(m.peers, dev.ID)
		default:
			m.mu.Unlock()
			return p, nil
		}
	}
	d := m.dialing[dev.ID]
	if d == nil {
		d = &dial{done: make(chan struct{})}
		m.dialing[dev.ID] = d
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			dctx, cancel := context.WithTimeout(m.ctx, RequestTimeout+setupTimeout)
			defer cancel()
			d.peer, d.err = m.connect(dctx, dev, connType)
			if d.err == nil {
				m.keep(d.peer)
			}
			m.mu.Lock()
			delete(m.dialing, dev.ID)
			m.mu.Unlock()
			close(d.done)
		}()
	}
	m.mu.Unlock()
	select {
	case <-d.done:
		return d.peer, d.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// OpenChannel opens a channel to a device, on its socket (made if need be).
func (m *Manager) OpenChannel(ctx context.Context, dev Device, name, connType string) (*Peer, *mux.Channel, error) {
	for attempt := 0; ; attempt++ {
		p, err := m.Connect(ctx, dev, connType)
		if err != nil {
			return nil, nil, err
		}
		ch, err := p.Socket.Open(ctx, name)
		if err == nil {
			return p, ch, nil
		}
		if !errors.Is(err, mux.ErrClosed) || attempt > 0 {
			return nil, nil, fmt.Errorf("opening channel %q: %w", name, err)
		}
		m.drop(p) // a socket that died meanwhile: one more try on a new one
	}
}

// connect is the caller's side (ICE controlled, TLS server): a request
// with one id on both forms of the device's key, its answer, ICE and TLS.
func (m *Manager) connect(ctx context.Context, dev Device, connType string) (*Peer, error) {
	agent, local, err := m.ice.agent(ctx)
	if err != nil {
		return nil, err
	}
	req := &Request{ID: dht.RandomValueID(), ICE: local.String(), ConnType: connType}
	data, err := req.Marshal()
	if err != nil {
		_ = agent.Close()
		return nil, err
	}
	answers := make(chan *Request, 1)
	m.mu.Lock()
	m.pending[req.ID] = answers
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.pending, req.ID)
		m.mu.Unlock()
	}()
	keys := dev.Keys()
	put := 0
	var putErr error
	for _, k := range []dht.InfoHash{keys.Legacy, keys.Long} {
		if _, err := m.cfg.DHT.PutEncrypted(ctx, k, dev.Key, &dht.Value{Type: ValueType, UserType: UserType, Data: data}); err != nil {
			putErr = err
			continue
		}
		put++
	}
	if put == 0 {
		_ = agent.Close()
		return nil, fmt.Errorf("putting the connection request: %w", putErr)
	}
	wait := time.NewTimer(RequestTimeout)
	defer wait.Stop()
	var ans *Request
	select {
	case ans = <-answers:
	case <-wait.C:
		_ = agent.Close()
		return nil, fmt.Errorf("device %s did not answer the connection request in %s", dev.ID, RequestTimeout)
	case <-ctx.Done():
		_ = agent.Close()
		return nil, ctx.Err()
	}
	remote, errs := ParseICE(ans.ICE)
	if remote.Ufrag == "" {
		_ = agent.Close()
		return nil, fmt.Errorf("the device's answer: %w", errors.Join(errs...))
	}
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	return m.setup(sctx, agent, remote, dev, false)
}

// setup runs ICE and TLS and starts the socket. incoming: the peer asked
// (we are callee: ICE controlling, TLS client).
func (m *Manager) setup(ctx context.Context, agent *ice.Agent, remote ICE, dev Device, incoming bool) (*Peer, error) {
	stream, err := connectICE(ctx, agent, remote, incoming)
	if err != nil {
		_ = agent.Close()
		return nil, err
	}
	cfg := tlsConfig(m.cfg.Self, dev.Chain, !incoming)
	var tc *tls.Conn
	if incoming {
		tc = tls.Client(stream, cfg)
	} else {
		tc = tls.Server(stream, cfg)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = stream.Close()
		_ = agent.Close()
		return nil, fmt.Errorf("TLS with device %s: %w", dev.ID, err)
	}
	p := &Peer{Device: dev, Incoming: incoming}
	p.Socket = mux.New(&agentConn{Conn: tc, agent: agent}, mux.Options{
		Accept: func(name string) bool {
			return m.cfg.AcceptChannel != nil && m.cfg.AcceptChannel(dev, name)
		},
		OnChannel: func(ch *mux.Channel) {
			if m.cfg.OnChannel != nil {
				m.cfg.OnChannel(p, ch)
			}
		},
		Log: m.log.With().Stringer("device", dev.ID).Logger(),
	})
	return p, nil
}

// keep makes p the socket of its device and watches it: a beacon now and
// then, and forgetting it when it closes.
func (m *Manager) keep(p *Peer) {
	m.mu.Lock()
	old := m.peers[p.Device.ID]
	m.peers[p.Device.ID] = p
	m.mu.Unlock()
	if old != nil && old != p {
		// A device that connects again (a restart, a new socket for a
		// call) gets the new socket; calls on the old one end with it as
		// the device closes it.
		m.log.Debug().Stringer("device", p.Device.ID).Msg("A device has a new socket")
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(beaconInterval)
		defer t.Stop()
		for {
			select {
			case <-p.Socket.Done():
				m.drop(p)
				return
			case <-m.ctx.Done():
				_ = p.Socket.Close()
				return
			case <-t.C:
				p.Socket.SendBeacon(mux.DefaultBeaconTimeout)
			}
		}
	}()
}

// drop forgets p if it is still its device's socket.
func (m *Manager) drop(p *Peer) {
	m.mu.Lock()
	if m.peers[p.Device.ID] == p {
		delete(m.peers, p.Device.ID)
	}
	m.mu.Unlock()
	_ = p.Socket.Close()
}

// agentConn closes the ICE agent with the TLS connection over it.
type agentConn struct {
	net.Conn
	agent *ice.Agent
}

func (c *agentConn) Close() error {
	err := c.Conn.Close()
	_ = c.agent.Close()
	return err
}
