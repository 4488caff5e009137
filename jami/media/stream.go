package media

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
)

// Stream is one m= section of the call: its negotiated format and, once
// connected, its packets. The fields are set by the negotiation and do not
// change afterwards: a re-INVITE may change the direction and the peer's
// key, and one that restarts ICE also Mux (read it under the session's
// lock only).
type Stream struct {
	Index int
	Kind  webrtc.RTPCodecType
	// Label is jamid's name of the section: audio_0, video_0, video_1…
	Label string
	// Codec is the format negotiated; its PayloadType is the one we
	// receive it with (the number in our SDP).
	Codec Codec
	// SendPayloadType is the codec's number in the peer's SDP, which we
	// send with. With an answer that kept the offer's numbers (RFC 3264,
	// and jamid's do) it is Codec.PayloadType.
	SendPayloadType uint8
	// DTMF: telephone-event's numbers (ours, theirs) and clock rate, 0
	// when the section has none. jamid uses 8000 Hz even beside opus.
	DTMFPayloadType, SendDTMFPayloadType uint8
	DTMFClockRate                        uint32
	// Mux is true when RTP and RTCP share one component (a=rtcp-mux).
	Mux bool

	log      zerolog.Logger
	rejected bool
	mid      string
	comps    []*component // RTP, and RTCP unless muxed
	want     Direction    // what we ask for
	dir      atomic.Int32 // ours, as negotiated
	local    sdesKey
	remote   sdesKey
	remoteIn *remoteSection // the peer's view, for Connect

	sendRTP, sendRTCP, recvRTP, recvRTCP cipher
	srtcp                                bool // Options.SRTCP

	// What arrives, sorted into RTP and RTCP by a pump per component of
	// the current ICE session. They outlive an ICE restart (new
	// components, new pumps), so a reader does not notice one.
	inRTP, inRTCP chan *inPacket
	gone          chan struct{}           // closed when the session closes
	tx            atomic.Pointer[txConns] // nil while (re)connecting
	connected     atomic.Bool             // once connected, even if reconnecting now
	dropped       atomic.Uint64           // packets that failed authentication
}

// cipher is the SRTP context of one direction and protocol, and its
// scratch buffer: each is used by one caller at a time.
type cipher struct {
	mu  sync.Mutex
	ctx *srtp.Context
	buf []byte
}

// Errors of stream I/O.
var (
	ErrNotConnected = errors.New("the stream is not connected")
	ErrRejected     = errors.New("the stream was rejected in the negotiation")
)

// Rejected reports whether the section was refused (port 0), by either
// side.
func (st *Stream) Rejected() bool { return st.rejected }

// Direction is ours, as negotiated: SendOnly while the peer holds us
// (a=sendonly from them gives recvonly here, and so on).
func (st *Stream) Direction() Direction { return Direction(st.dir.Load()) }

// Parameters is the negotiated codec as pion describes it, with the
// payload type we receive.
func (st *Stream) Parameters() webrtc.RTPCodecParameters { return st.Codec.Parameters(st.Kind) }

// txConns are a connected stream's conns for RTP and RTCP (the same one
// with rtcp-mux).
type txConns struct{ rtp, rtcp net.Conn }

// inPacket is one datagram as a pump read it.
type inPacket struct {
	b [1600]byte
	n int
}

var inPackets = sync.Pool{New: func() any { return new(inPacket) }}

// errReconnecting: nothing is sent while a restarted ICE session connects.
var errReconnecting = errors.New("reconnecting")

// conn is the conn carrying RTP or RTCP.
func (st *Stream) conn(rtcp bool) (net.Conn, error) {
	if st.rejected {
		return nil, ErrRejected
	}
	tx := st.tx.Load()
	if tx == nil {
		if st.connected.Load() {
			return nil, errReconnecting
		}
		return nil, ErrNotConnected
	}
	if rtcp {
		return tx.rtcp, nil
	}
	return tx.rtp, nil
}

// connectedTo starts reading the stream's new components: a pump each
// (one sorting both protocols with rtcp-mux), and sends go to them.
func (st *Stream) connectedTo(comps []*component, wg *sync.WaitGroup) {
	tx := &txConns{rtp: comps[0].conn, rtcp: comps[0].conn}
	if !st.Mux && len(comps) > 1 {
		tx.rtcp = comps[1].conn
	}
	for _, c := range comps {
		wg.Add(1)
		go st.pump(c.conn, c.id == 2, wg)
	}
	st.tx.Store(tx)
	st.connected.Store(true)
}

// startSRTP makes the contexts: ours protects what we send, theirs
// unprotects what we get, with replay protection.
func (st *Stream) startSRTP() error {
	for _, c := range []struct {
		ci   *cipher
		key  sdesKey
		opts []srtp.ContextOption
	}{
		{&st.sendRTP, st.local, nil},
		{&st.sendRTCP, st.local, nil},
		{&st.recvRTP, st.remote, []srtp.ContextOption{srtp.SRTPReplayProtection(256)}},
		{&st.recvRTCP, st.remote, []srtp.ContextOption{srtp.SRTCPReplayProtection(256)}},
	} {
		ctx, err := c.key.context(c.opts...)
		if err != nil {
			return fmt.Errorf("stream %s: %w", st.Label, err)
		}
		c.ci.mu.Lock()
		c.ci.ctx = ctx
		if c.ci.buf == nil {
			c.ci.buf = make([]byte, 1600)
		}
		c.ci.mu.Unlock()
	}
	return nil
}

// rekeyRemote takes the peer's new key (a re-INVITE's a=crypto).
func (st *Stream) rekeyRemote(k sdesKey) error {
	if k == st.remote {
		return nil
	}
	st.remote = k
	if st.recvRTP.ctx == nil {
		return nil // not started yet
	}
	for _, c := range []struct {
		ci  *cipher
		opt srtp.ContextOption
	}{{&st.recvRTP, srtp.SRTPReplayProtection(256)}, {&st.recvRTCP, srtp.SRTCPReplayProtection(256)}} {
		ctx, err := k.context(c.opt)
		if err != nil {
			return fmt.Errorf("stream %s: %w", st.Label, err)
		}
		c.ci.mu.Lock()
		c.ci.ctx = ctx
		c.ci.mu.Unlock()
	}
	return nil
}

// isRTCP sorts a muxed packet (RFC 5761 4): RTCP packet types 192-223
// sit where RTP has its marker and payload type.
func isRTCP(b []byte) bool { return len(b) >= 2 && b[1] >= 192 && b[1] <= 223 }

// pump reads one component until its agent closes (the session's end,
// or an ICE restart). What the RTCP component (rtcpComp) carries is
// RTCP; on the RTP one, RTCP is told apart by its packet type (rtcp-mux).
func (st *Stream) pump(conn net.Conn, rtcpComp bool, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		p := inPackets.Get().(*inPacket)
		n, err := conn.Read(p.b[:])
		if err != nil {
			inPackets.Put(p)
			return
		}
		p.n = n
		ch := st.inRTP
		if rtcpComp || isRTCP(p.b[:n]) {
			ch = st.inRTCP
		}
		select {
		case ch <- p:
		default: // nobody reads that half: drop, as a socket would
			inPackets.Put(p)
		}
	}
}

// readRaw reads one packet of RTP (or RTCP) into b.
func (st *Stream) readRaw(b []byte, wantRTCP bool) (int, error) {
	if st.rejected {
		return 0, ErrRejected
	}
	if !st.connected.Load() {
		return 0, ErrNotConnected
	}
	ch := st.inRTP
	if wantRTCP {
		ch = st.inRTCP
	}
	select {
	case p := <-ch:
		defer inPackets.Put(p)
		if p.n > len(b) {
			return 0, io.ErrShortBuffer
		}
		return copy(b, p.b[:p.n]), nil
	case <-st.gone:
		return 0, io.EOF
	}
}

// ReadRTP reads one RTP packet, decrypted, into b (1500 bytes are
// enough). Packets that fail authentication or replay checks are
// dropped. It returns an error once the session is closed.
func (st *Stream) ReadRTP(b []byte) (int, error) {
	for {
		n, err := st.readRaw(b, false)
		if err != nil {
			return 0, err
		}
		if n < 12 || b[0]>>6 != 2 || isRTCP(b[:n]) {
			continue
		}
		st.recvRTP.mu.Lock()
		out, err := st.recvRTP.ctx.DecryptRTP(b, b[:n], nil) // in place
		st.recvRTP.mu.Unlock()
		if err != nil {
			st.drop(err, "RTP")
			continue
		}
		return len(out), nil
	}
}

// ReadRTCP reads one compound RTCP packet, decrypted, using b as buffer.
func (st *Stream) ReadRTCP(b []byte) ([]rtcp.Packet, error) {
	for {
		n, err := st.readRaw(b, true)
		if err != nil {
			return nil, err
		}
		if n < 8 || !isRTCP(b[:n]) {
			continue
		}
		// On a failed check, pion's DecryptRTCP has not touched b yet.
		st.recvRTCP.mu.Lock()
		out, err := st.recvRTCP.ctx.DecryptRTCP(b, b[:n], nil)
		st.recvRTCP.mu.Unlock()
		switch {
		case err == nil:
		case !st.srtcp:
			out = b[:n] // a Jami peer's plain RTCP (see Options.SRTCP)
		default:
			st.drop(err, "RTCP")
			continue
		}
		pkts, err := rtcp.Unmarshal(out)
		if err != nil {
			st.log.Debug().Err(err).Str("stream", st.Label).Msg("Dropping unparsable RTCP")
			continue
		}
		return pkts, nil
	}
}

func (st *Stream) drop(err error, what string) {
	if n := st.dropped.Add(1); n&(n-1) == 0 { // 1, 2, 4, 8…: a flood is not logged in full
		st.log.Debug().Err(err).Str("stream", st.Label).Uint64("dropped", n).Str("what", what).Msg("Dropping a packet that does not decrypt")
	}
}

// WriteRTP sends one packet. While our direction does not send (hold) it
// is dropped without error, so that a forwarder needs not know.
func (st *Stream) WriteRTP(h *rtp.Header, payload []byte) error {
	conn, err := st.conn(false)
	if errors.Is(err, errReconnecting) {
		return nil // dropped, as on hold: the forwarder needs not know
	}
	if err != nil {
		return err
	}
	if !st.Direction().Sends() {
		return nil
	}
	c := &st.sendRTP
	c.mu.Lock()
	defer c.mu.Unlock()
	p := rtp.Packet{Header: *h, Payload: payload}
	n, err := p.MarshalTo(c.buf)
	if err != nil {
		return fmt.Errorf("stream %s: marshalling RTP: %w", st.Label, err)
	}
	out, err := c.ctx.EncryptRTP(c.buf, c.buf[:n], &p.Header) // in place; the tag fits
	if err != nil {
		return fmt.Errorf("stream %s: encrypting RTP: %w", st.Label, err)
	}
	if _, err := conn.Write(out); err != nil {
		return fmt.Errorf("stream %s: sending RTP: %w", st.Label, err)
	}
	return nil
}

// WriteRTCP sends one compound RTCP packet (sent on hold too: reports
// keep the peer's statistics alive).
func (st *Stream) WriteRTCP(pkts []rtcp.Packet) error {
	conn, err := st.conn(true)
	if errors.Is(err, errReconnecting) {
		return nil
	}
	if err != nil {
		return err
	}
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		return fmt.Errorf("stream %s: marshalling RTCP: %w", st.Label, err)
	}
	out := raw
	if st.srtcp {
		c := &st.sendRTCP
		c.mu.Lock()
		defer c.mu.Unlock()
		if out, err = c.ctx.EncryptRTCP(c.buf, raw, nil); err != nil {
			return fmt.Errorf("stream %s: encrypting RTCP: %w", st.Label, err)
		}
	}
	if _, err := conn.Write(out); err != nil {
		return fmt.Errorf("stream %s: sending RTCP: %w", st.Label, err)
	}
	return nil
}
