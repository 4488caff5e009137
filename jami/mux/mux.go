// Package mux is Jami's multiplexed socket (dhtnet's MultiplexedSocket):
// the channels a TLS connection between two Jami devices carries, as
// jami-daemon and current dhtnet speak it.
//
// The stream is a sequence of msgpack arrays [uint16 channel, bin data].
// Channel 0 is control: ChannelRequest arrays [name, channel, state]
// (state 0 request, 1 accept, 2 decline; the requester picks the number).
// Channel 0xFFFF is the protocol channel: {"v":1} is sent at start, a
// beacon {"p":true} is answered with {"p":false}, and a beacon left
// unanswered past its timeout closes the socket. Empty data on a channel
// closes it. Calls use the channel named "sip".
package mux

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The reserved channels, and the protocol version spoken (1: beacons).
const (
	ControlChannel  uint16 = 0
	ProtocolChannel uint16 = 0xFFFF
	Version                = 1
)

// Request states of a ChannelRequest.
const (
	stateRequest = 0
	stateAccept  = 1
	stateDecline = 2
)

// maxFrame is the largest payload of one frame (dhtnet sends no more; a
// longer frame from the peer ends the socket).
const maxFrame = 0xFFFF

// maxBuffered bounds what one channel holds unread: the socket has one
// reader for all channels, so a channel nobody reads must not hold the
// others up or grow without end.
const maxBuffered = 4 << 20

// DefaultBeaconTimeout is how long a beacon waits for its answer
// (dhtnet's SEND_BEACON_TIMEOUT).
const DefaultBeaconTimeout = 3 * time.Second

// ErrDeclined: the peer declined a channel request.
var ErrDeclined = errors.New("the peer declined the channel")

// ErrClosed: the socket or channel is closed.
var ErrClosed = errors.New("closed")

// Options configure a socket.
type Options struct {
	// Accept decides on the peer's channel requests, by name; nil declines
	// them all. It must not block.
	Accept func(name string) bool
	// OnChannel receives each channel the peer opened and Accept took. It
	// must not block.
	OnChannel func(*Channel)
	Log       zerolog.Logger
}

// Socket is one multiplexed connection.
type Socket struct {
	conn io.ReadWriteCloser
	opts Options
	log  zerolog.Logger

	wmu sync.Mutex // one frame at a time on the wire

	mu       sync.Mutex
	channels map[uint16]*Channel
	pending  map[uint16]chan bool // our requests, waiting for accept or decline
	next     uint16
	// beaconTimer shuts the socket down if a beacon goes unanswered.
	beaconTimer *time.Timer

	peerVersion atomic.Int32
	beacons     atomic.Int32 // beacons of ours not answered yet

	done      chan struct{}
	closeOnce sync.Once
	err       error
}

// New starts a socket on conn (the TLS connection): it sends its version
// and reads until conn fails or Close.
func New(conn io.ReadWriteCloser, opts Options) *Socket {
	s := &Socket{
		conn: conn, opts: opts, log: opts.Log,
		channels: map[uint16]*Channel{}, pending: map[uint16]chan bool{}, next: 1,
		done: make(chan struct{}),
	}
	s.peerVersion.Store(-1)
	go s.read()
	if err := s.writeProtocol(map[string]any{"v": Version}); err != nil {
		s.shutdown(fmt.Errorf("sending the protocol version: %w", err))
	}
	return s
}

// Done is closed once the socket has shut down; Err says why.
func (s *Socket) Done() <-chan struct{} { return s.done }

// Err is why the socket shut down (nil while it runs, or after Close).
func (s *Socket) Err() error {
	<-s.done
	return s.err
}

// PeerVersion is the version the peer announced, -1 before it did.
func (s *Socket) PeerVersion() int { return int(s.peerVersion.Load()) }

// Close shuts the socket down (its channels with it).
func (s *Socket) Close() error {
	s.shutdown(nil)
	return nil
}

func (s *Socket) shutdown(err error) {
	s.closeOnce.Do(func() {
		s.err = err
		_ = s.conn.Close()
		s.mu.Lock()
		chans := s.channels
		s.channels = map[uint16]*Channel{}
		for _, p := range s.pending {
			close(p)
		}
		s.pending = map[uint16]chan bool{}
		if s.beaconTimer != nil {
			s.beaconTimer.Stop()
		}
		s.mu.Unlock()
		for _, c := range chans {
			c.eof(ErrClosed)
		}
		close(s.done)
	})
}

// Open asks the peer for a channel named name and waits for its answer.
func (s *Socket) Open(ctx context.Context, name string) (*Channel, error) {
	s.mu.Lock()
	id, ok := s.freeChannel()
	if !ok {
		s.mu.Unlock()
		return nil, errors.New("no free channel")
	}
	answer := make(chan bool, 1)
	s.pending[id] = answer
	c := newChannel(s, id, name)
	s.channels[id] = c // data may come right after the accept
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.pending, id)
		if s.channels[id] == c {
			delete(s.channels, id)
		}
		s.mu.Unlock()
	}
	if err := s.writeControl(name, id, stateRequest); err != nil {
		forget()
		return nil, fmt.Errorf("requesting channel %q: %w", name, err)
	}
	select {
	case accepted, ok := <-answer:
		switch {
		case !ok:
			return nil, fmt.Errorf("requesting channel %q: %w", name, ErrClosed)
		case !accepted:
			forget()
			return nil, fmt.Errorf("channel %q: %w", name, ErrDeclined)
		}
		return c, nil
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("requesting channel %q: %w", name, ctx.Err())
	case <-s.done:
		return nil, fmt.Errorf("requesting channel %q: %w", name, ErrClosed)
	}
}

// freeChannel picks the next channel number in use by nobody. Called with
// mu held.
func (s *Socket) freeChannel() (uint16, bool) {
	for range 0xFFFF {
		id := s.next
		s.next++
		if id == ControlChannel || id == ProtocolChannel {
			continue
		}
		if _, used := s.channels[id]; !used {
			return id, true
		}
	}
	return 0, false
}

// SendBeacon checks that the peer is still there: a beacon it must answer
// within timeout, else the socket shuts down. Peers older than version 1
// get none.
func (s *Socket) SendBeacon(timeout time.Duration) {
	if s.PeerVersion() < 1 {
		return
	}
	s.beacons.Add(1)
	if err := s.writeProtocol(map[string]any{"p": true}); err != nil {
		s.shutdown(fmt.Errorf("sending a beacon: %w", err))
		return
	}
	t := time.AfterFunc(timeout, func() {
		if s.beacons.Load() > 0 {
			s.shutdown(fmt.Errorf("the peer did not answer a beacon within %s", timeout))
		}
	})
	s.mu.Lock()
	if s.beaconTimer != nil {
		s.beaconTimer.Stop() // the newest beacon's timeout counts, as in dhtnet
	}
	s.beaconTimer = t
	s.mu.Unlock()
}

// read takes frames off the wire until it fails.
func (s *Socket) read() {
	dec := msgpack.NewDecoder(bufio.NewReader(s.conn))
	for {
		channel, data, err := readFrame(dec)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = nil // the peer closed
			}
			s.shutdown(err)
			return
		}
		switch channel {
		case ControlChannel:
			s.control(data)
		case ProtocolChannel:
			s.protocol(data)
		default:
			s.deliver(channel, data)
		}
	}
}

// readFrame reads one [channel, data] array.
func readFrame(dec *msgpack.Decoder) (uint16, []byte, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return 0, nil, err
	}
	if n != 2 {
		return 0, nil, fmt.Errorf("a frame of %d elements, not [channel, data]", n)
	}
	channel, err := dec.DecodeUint16()
	if err != nil {
		return 0, nil, fmt.Errorf("reading a frame's channel: %w", err)
	}
	// No more than dhtnet sends: the bound on what a frame's content may
	// nest, and so on the decoders' recursion.
	size, err := dec.DecodeBytesLen()
	if err != nil {
		return 0, nil, fmt.Errorf("reading a frame's data: %w", err)
	}
	if size > maxFrame {
		return 0, nil, fmt.Errorf("a frame of %d bytes is over %d", size, maxFrame)
	}
	data := make([]byte, max(size, 0))
	if err := dec.ReadFull(data); err != nil {
		return 0, nil, fmt.Errorf("reading a frame's data: %w", err)
	}
	return channel, data, nil
}

// control handles the control channel's messages: channel requests and
// their answers (and protocol messages, which dhtnet also takes there).
func (s *Socket) control(pkt []byte) {
	dec := msgpack.NewDecoder(bytes.NewReader(pkt))
	for {
		code, err := dec.PeekCode()
		if err != nil {
			return // the end of the packet (or garbage: nothing more to read)
		}
		if isMap(code) {
			if !s.protocolMessage(dec) {
				return
			}
			continue
		}
		name, id, state, err := readRequest(dec)
		if err != nil {
			s.log.Warn().Err(err).Msg("Ignoring a malformed channel request")
			return
		}
		switch state {
		case stateRequest:
			s.onRequest(name, id)
		case stateAccept:
			s.onAnswer(id, true)
		default:
			s.onAnswer(id, false)
		}
	}
}

func isMap(code byte) bool {
	return (code >= 0x80 && code <= 0x8f) || code == 0xde || code == 0xdf
}

// readRequest reads a ChannelRequest [name, channel, state].
func readRequest(dec *msgpack.Decoder) (string, uint16, int, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return "", 0, 0, err
	}
	if n < 3 {
		return "", 0, 0, fmt.Errorf("a channel request of %d elements, not [name, channel, state]", n)
	}
	name, err := dec.DecodeString()
	if err != nil {
		return "", 0, 0, err
	}
	id, err := dec.DecodeUint16()
	if err != nil {
		return "", 0, 0, err
	}
	state, err := dec.DecodeInt()
	if err != nil {
		return "", 0, 0, err
	}
	for range n - 3 { // fields a newer peer may add
		if err = dec.Skip(); err != nil {
			return "", 0, 0, err
		}
	}
	return name, id, state, nil
}

// onRequest answers the peer's request for a channel.
func (s *Socket) onRequest(name string, id uint16) {
	accept := id != ControlChannel && id != ProtocolChannel && s.opts.Accept != nil && s.opts.Accept(name)
	var c *Channel
	if accept {
		s.mu.Lock()
		if _, used := s.channels[id]; used {
			accept = false
		} else {
			c = newChannel(s, id, name)
			s.channels[id] = c
		}
		s.mu.Unlock()
	}
	state := stateDecline
	if accept {
		state = stateAccept
	}
	s.log.Debug().Str("channel", name).Uint16("id", id).Bool("accepted", accept).Msg("Channel requested")
	if err := s.writeControl(name, id, state); err != nil {
		s.shutdown(fmt.Errorf("answering a channel request: %w", err))
		return
	}
	if accept && s.opts.OnChannel != nil {
		s.opts.OnChannel(c)
	}
}

// onAnswer applies the peer's answer to a request of ours.
func (s *Socket) onAnswer(id uint16, accepted bool) {
	s.mu.Lock()
	answer, ok := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if !ok {
		s.log.Debug().Uint16("id", id).Msg("An answer for no request of ours")
		return
	}
	answer <- accepted
}

// protocol handles the protocol channel's messages.
func (s *Socket) protocol(pkt []byte) {
	dec := msgpack.NewDecoder(bytes.NewReader(pkt))
	for s.protocolMessage(dec) {
	}
}

// protocolMessage handles one {"v": n} or {"p": bool}; false at the end
// of the packet or on something else. The map is read entry by entry, not
// made to the size the peer claims (5 bytes may claim 2^32 entries).
func (s *Socket) protocolMessage(dec *msgpack.Decoder) bool {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return false
	}
	var p, v any // as in a decoded map: the last of a key counts, nil is none
	for range n {
		key, err := dec.DecodeString()
		if err != nil {
			return false
		}
		code, err := dec.PeekCode()
		if err != nil {
			return false
		}
		switch {
		case key == "p" && (code == msgpcode.True || code == msgpcode.False):
			p, err = dec.DecodeBool()
		case key == "v" && isInt(code):
			v, err = dec.DecodeInt64()
		case key == "p" || key == "v":
			// Another type: a "p" that is not a bool is no beacon, a "v"
			// that is not an int no version; nil is none.
			var other any
			if code != msgpcode.Nil {
				other = code
			}
			if key == "p" {
				p = other
			} else {
				v = other
			}
			err = dec.Skip()
		default:
			err = dec.Skip()
		}
		if err != nil {
			return false
		}
	}
	switch {
	case p != nil:
		if beacon, _ := p.(bool); beacon {
			if err := s.writeProtocol(map[string]any{"p": false}); err != nil {
				s.shutdown(fmt.Errorf("answering a beacon: %w", err))
			}
		} else if s.beacons.Load() > 0 {
			s.beacons.Add(-1)
		}
	case v != nil:
		version, ok := v.(int64)
		if !ok {
			return false
		}
		s.peerVersion.Store(int32(version))
	default:
		s.log.Debug().Msg("Unknown protocol message")
	}
	return true
}

func isInt(code byte) bool {
	return msgpcode.IsFixedNum(code) || (code >= msgpcode.Uint8 && code <= msgpcode.Uint64) ||
		(code >= msgpcode.Int8 && code <= msgpcode.Int64)
}

// deliver hands a data frame to its channel; empty data closes it.
func (s *Socket) deliver(id uint16, data []byte) {
	s.mu.Lock()
	c := s.channels[id]
	if c != nil && len(data) == 0 {
		delete(s.channels, id)
	}
	s.mu.Unlock()
	switch {
	case c == nil && len(data) > 0:
		s.log.Debug().Uint16("id", id).Int("bytes", len(data)).Msg("Data for no channel")
	case c == nil:
	case len(data) == 0:
		c.eof(io.EOF)
	default:
		c.push(data)
	}
}

func (s *Socket) writeControl(name string, id uint16, state int) error {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := errors.Join(enc.EncodeArrayLen(3), enc.EncodeString(name), enc.EncodeUint16(id), enc.EncodeInt(int64(state))); err != nil {
		return err
	}
	return s.writeFrame(ControlChannel, buf.Bytes())
}

func (s *Socket) writeProtocol(m map[string]any) error {
	b, err := msgpack.Marshal(m)
	if err != nil {
		return err
	}
	return s.writeFrame(ProtocolChannel, b)
}

// writeFrame writes one [channel, data] frame.
func (s *Socket) writeFrame(id uint16, data []byte) error {
	if len(data) > maxFrame {
		return fmt.Errorf("a frame of %d bytes is over %d", len(data), maxFrame)
	}
	var head bytes.Buffer
	enc := msgpack.NewEncoder(&head)
	if err := errors.Join(enc.EncodeArrayLen(2), enc.EncodeUint16(id), enc.EncodeBytesLen(len(data))); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	if _, err := s.conn.Write(append(head.Bytes(), data...)); err != nil {
		return err
	}
	return nil
}
