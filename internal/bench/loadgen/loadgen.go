// Package loadgen is the media benchmarks' load generator: N pion clients,
// each sending an Opus-sized audio stream (by default 160-byte payloads at
// 50 packets/s) to a server through a pluggable signalling front (voipbot's
// bench server, Janus's HTTP API, or a direct peer for the baseline), and
// measuring what comes back: loss, latency, and the server process's CPU
// time per packet it forwarded.
package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"golang.org/x/sync/errgroup"
)

// Front signals one client's call: it sends the offer (candidates
// included) and returns the answer and how to hang up.
type Front interface {
	Name() string
	// Call places a call; pair groups two clients into one call for fronts
	// that bridge ("" for echo fronts).
	Call(ctx context.Context, offer, pair string) (answer string, hangup func(context.Context) error, err error)
}

// Config is one load run.
type Config struct {
	// Front is the server's signalling; nil means Direct: the clients of
	// each pair call each other with no server (the latency baseline).
	Front Front
	// Pairs makes clients come in pairs: each client's packets go to the
	// other of its pair (a bridged call); otherwise each client's come back
	// to itself (echo).
	Pairs       bool
	Streams     int
	PPS         int
	PayloadSize int
	Warmup      time.Duration
	Measure     time.Duration
	// ServerPID, when set, is the process whose CPU time is measured.
	ServerPID int
	// Idle sets up the calls and measures without sending media (memory
	// of idle calls).
	Idle bool
	// Hold keeps the calls up after the measurement until this is closed
	// (to read the server's memory and goroutines), if not nil.
	Hold <-chan struct{}
	// Measured is called at the end of the measurement, before Hold.
	Measured func()
	// ClientNetwork confines the clients' ICE; nil means loopback.
	ClientNetwork func(*webrtc.SettingEngine)
}

// Result is what one run measured.
type Result struct {
	Front   string
	Streams int
	Pairs   bool
	// Sent and Received count the packets of the measurement window;
	// Received those that arrived (by sequence number, any time until the
	// end of the run).
	Sent, Received uint64
	Lost           uint64
	// Latency is one way for pairs, round trip for echo.
	LatencyP50, LatencyP99, LatencyMax time.Duration
	// ServerCPU is the server's CPU time over the window, as a fraction of
	// one core; CPUPerPacket divides it by the packets it forwarded.
	ServerCPU    float64
	CPUPerPacket time.Duration
	// ServerSystemShare is the part of ServerCPU spent in the kernel.
	ServerSystemShare float64
	Window            time.Duration
	Setup             time.Duration
}

// LossRatio is the fraction of the window's packets that did not arrive.
func (r *Result) LossRatio() float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.Lost) / float64(r.Sent)
}

func (c *Config) defaults() error {
	if c.PPS == 0 {
		c.PPS = 50
	}
	if c.PayloadSize == 0 {
		c.PayloadSize = 160
	}
	if c.PayloadSize < headerSize {
		return fmt.Errorf("payload size %d is under the %d bytes the load generator stamps", c.PayloadSize, headerSize)
	}
	if c.Streams <= 0 || (c.Pairs && c.Streams%2 != 0) {
		return fmt.Errorf("streams must be positive (and even with pairs): %d", c.Streams)
	}
	if c.Front == nil && !c.Pairs {
		return errors.New("the direct front needs pairs")
	}
	return nil
}

// headerSize is the stamp at the start of each payload: send time (ns),
// client index, sequence number.
const headerSize = 16

// client is one load-generating peer.
type client struct {
	idx    int
	pc     *webrtc.PeerConnection
	track  *webrtc.TrackLocalStaticRTP
	hangup func(context.Context) error
	pkt    rtp.Packet
	seq    uint32

	mu        sync.Mutex
	received  bitset // sequence numbers that arrived during the run
	latencies []time.Duration
	readers   sync.WaitGroup
	connected chan struct{}
	once      sync.Once
}

// Run performs one load run.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	api, err := clientAPI(cfg.ClientNetwork)
	if err != nil {
		return nil, err
	}
	clients := make([]*client, cfg.Streams)
	var measuring atomic.Bool
	start := time.Now()
	defer func() {
		closeAll(clients)
	}()
	for i := range clients {
		if clients[i], err = newClient(api, i, cfg, &measuring); err != nil {
			return nil, err
		}
	}
	if err = signal(ctx, cfg, clients); err != nil {
		return nil, err
	}
	for _, c := range clients {
		select {
		case <-c.connected:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for client %d to connect: %w", c.idx, ctx.Err())
		}
	}
	res := &Result{Streams: cfg.Streams, Pairs: cfg.Pairs, Setup: time.Since(start)}
	if cfg.Front != nil {
		res.Front = cfg.Front.Name()
	} else {
		res.Front = "direct"
	}

	sendCtx, stopSending := context.WithCancel(ctx)
	sent := make(chan uint32, 1)
	var seqAtStart uint32
	if !cfg.Idle {
		go func() { sent <- sendLoop(sendCtx, clients, cfg) }()
		if err = sleep(ctx, cfg.Warmup); err != nil {
			stopSending()
			return nil, err
		}
	}
	// The window: sequence numbers are per client and advance in lockstep.
	seqAtStart = clients[0].loadSeq()
	cpu0, err := cpuTime(cfg.ServerPID)
	if err != nil {
		stopSending()
		return nil, err
	}
	t0 := time.Now()
	measuring.Store(true)
	err = sleep(ctx, cfg.Measure)
	measuring.Store(false)
	res.Window = time.Since(t0)
	cpu1, cpuErr := cpuTime(cfg.ServerPID)
	seqAtEnd := clients[0].loadSeq()
	stopSending()
	if !cfg.Idle {
		<-sent
	}
	if err != nil {
		return nil, err
	}
	if cpuErr != nil {
		return nil, cpuErr
	}
	// Packets of the window still in flight get a moment to arrive.
	_ = sleep(ctx, 500*time.Millisecond)
	if cfg.Measured != nil {
		cfg.Measured()
	}
	if cfg.Hold != nil {
		select {
		case <-cfg.Hold:
		case <-ctx.Done():
		}
	}

	var all []time.Duration
	for _, c := range clients {
		src := c
		if cfg.Pairs {
			src = clients[c.idx^1] // the packets c receives are its partner's
		}
		c.mu.Lock()
		for s := seqAtStart; s < seqAtEnd; s++ {
			if s >= src.sentUpTo() {
				break
			}
			res.Sent++
			if c.received.has(s) {
				res.Received++
			}
		}
		all = append(all, c.latencies...)
		c.mu.Unlock()
	}
	res.Lost = res.Sent - res.Received
	if len(all) > 0 {
		slices.Sort(all)
		res.LatencyP50 = all[len(all)/2]
		res.LatencyP99 = all[len(all)*99/100]
		res.LatencyMax = all[len(all)-1]
	}
	if cfg.ServerPID != 0 {
		used := cpu1.total() - cpu0.total()
		res.ServerCPU = used.Seconds() / res.Window.Seconds()
		if res.Received > 0 {
			res.CPUPerPacket = used / time.Duration(res.Received)
		}
		if used > 0 {
			res.ServerSystemShare = float64(cpu1.system-cpu0.system) / float64(used)
		}
	}
	return res, nil
}

// loadSeq is the next sequence number the client will send: all before it
// were sent.
func (c *client) loadSeq() uint32  { return atomic.LoadUint32(&c.seq) }
func (c *client) sentUpTo() uint32 { return c.loadSeq() }

// bitset records which sequence numbers arrived.
type bitset []uint64

func (b *bitset) set(i uint32) {
	for int(i/64) >= len(*b) {
		*b = append(*b, 0)
	}
	(*b)[i/64] |= 1 << (i % 64)
}

func (b bitset) has(i uint32) bool {
	return int(i/64) < len(b) && b[i/64]&(1<<(i%64)) != 0
}

// clientAPI is a lean pion API: Opus only, no interceptors (the clients are
// not what is measured, and share the machine with the server).
func clientAPI(network func(*webrtc.SettingEngine)) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: opus, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if network != nil {
		network(&se)
	} else {
		se.SetIncludeLoopbackCandidate(true)
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)), nil
}

var opus = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}

func newClient(api *webrtc.API, idx int, cfg Config, measuring *atomic.Bool) (*client, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	c := &client{idx: idx, pc: pc, connected: make(chan struct{})}
	if c.track, err = webrtc.NewTrackLocalStaticRTP(opus, "audio", fmt.Sprintf("load-%d", idx)); err != nil {
		_ = pc.Close()
		return nil, err
	}
	sender, err := pc.AddTrack(c.track)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	c.readers.Add(1)
	go func() {
		defer c.readers.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			c.once.Do(func() { close(c.connected) })
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.readers.Add(1)
		go c.receive(t, measuring)
	})
	c.pkt = rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: uint32(idx + 1)}, Payload: make([]byte, cfg.PayloadSize)}
	return c, nil
}

// receive reads the client's inbound audio: each packet's stamp says when
// it was sent and its number.
func (c *client) receive(t *webrtc.TrackRemote, measuring *atomic.Bool) {
	defer c.readers.Done()
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		hl, err := h.Unmarshal(buf[:n])
		if err != nil || n-hl < headerSize {
			continue
		}
		p := buf[hl:n]
		sentAt := time.Unix(0, int64(binary.BigEndian.Uint64(p)))
		seq := binary.BigEndian.Uint32(p[12:])
		c.mu.Lock()
		c.received.set(seq)
		if measuring.Load() {
			c.latencies = append(c.latencies, now.Sub(sentAt))
		}
		c.mu.Unlock()
	}
}

// signal runs offer/answer for every client, eight at a time.
func signal(ctx context.Context, cfg Config, clients []*client) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	if cfg.Front == nil {
		for i := 0; i < len(clients); i += 2 {
			a, b := clients[i], clients[i+1]
			g.Go(func() error { return direct(gctx, a, b) })
		}
		return g.Wait()
	}
	for _, c := range clients {
		pair := ""
		if cfg.Pairs {
			pair = fmt.Sprintf("pair-%d", c.idx/2)
		}
		g.Go(func() error {
			offer, err := c.offer(gctx)
			if err != nil {
				return err
			}
			answer, hangup, err := cfg.Front.Call(gctx, offer, pair)
			if err != nil {
				return fmt.Errorf("client %d: %w", c.idx, err)
			}
			c.hangup = hangup
			return c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
		})
	}
	return g.Wait()
}

// offer makes an offer with its candidates (loopback gathers at once).
func (c *client) offer(ctx context.Context) (string, error) {
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err = c.pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return c.pc.LocalDescription().SDP, nil
}

// direct connects two clients to each other, with no server.
func direct(ctx context.Context, a, b *client) error {
	offer, err := a.offer(ctx)
	if err != nil {
		return err
	}
	if err = b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return err
	}
	answer, err := b.pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(b.pc)
	if err = b.pc.SetLocalDescription(answer); err != nil {
		return err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return ctx.Err()
	}
	return a.pc.SetRemoteDescription(*b.pc.LocalDescription())
}

// sendLoop sends every client's packets at cfg.PPS, spreading the clients
// evenly over each packet interval, and returns the last sequence number.
func sendLoop(ctx context.Context, clients []*client, cfg Config) uint32 {
	interval := time.Second / time.Duration(cfg.PPS)
	const slots = 20
	slot := interval / slots
	ticker := time.NewTicker(slot)
	defer ticker.Stop()
	ts := uint32(0)
	tsStep := uint32(48000 / cfg.PPS)
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return clients[0].loadSeq()
		case <-ticker.C:
		}
		k := tick % slots
		if k == 0 {
			ts += tsStep
		}
		for i := k; i < len(clients); i += slots {
			c := clients[i]
			seq := atomic.LoadUint32(&c.seq)
			p := c.pkt.Payload
			binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
			binary.BigEndian.PutUint32(p[8:], uint32(c.idx))
			binary.BigEndian.PutUint32(p[12:], seq)
			c.pkt.SequenceNumber = uint16(seq)
			c.pkt.Timestamp = ts
			_ = c.track.WriteRTP(&c.pkt)
			atomic.StoreUint32(&c.seq, seq+1)
		}
	}
}

func closeAll(clients []*client) {
	var wg sync.WaitGroup
	for _, c := range clients {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.hangup != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = c.hangup(ctx)
				cancel()
			}
			_ = c.pc.Close()
			c.readers.Wait()
		}()
	}
	wg.Wait()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
