package mux

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// Channel is one channel of a socket: a stream in each direction.
type Channel struct {
	s    *Socket
	id   uint16
	name string

	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	err    error // set once the peer closed (io.EOF) or the socket did
	closed bool  // we closed it
}

func newChannel(s *Socket, id uint16, name string) *Channel {
	c := &Channel{s: s, id: id, name: name}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// Name is the channel's name ("sip" for calls).
func (c *Channel) Name() string { return c.name }

// ID is the channel's number on the socket.
func (c *Channel) ID() uint16 { return c.id }

// Read reads what the peer sent; io.EOF once it closed the channel.
func (c *Channel) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.buf) == 0 && c.err == nil && !c.closed {
		c.cond.Wait()
	}
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	if c.closed {
		return 0, ErrClosed
	}
	return 0, c.err
}

// Write sends p, in frames of at most 64 KiB.
func (c *Channel) Write(p []byte) (int, error) {
	c.mu.Lock()
	closed, err := c.closed, c.err
	c.mu.Unlock()
	if closed || errors.Is(err, ErrClosed) {
		return 0, ErrClosed
	}
	written := 0
	for len(p) > 0 {
		n := min(len(p), maxFrame)
		if err := c.s.writeFrame(c.id, p[:n]); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// Close closes the channel (an empty frame tells the peer).
func (c *Channel) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	c.s.mu.Lock()
	if c.s.channels[c.id] == c {
		delete(c.s.channels, c.id)
	}
	c.s.mu.Unlock()
	if err := c.s.writeFrame(c.id, nil); err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("closing channel %q: %w", c.name, err)
	}
	return nil
}

// push adds data from the peer; a channel that holds too much unread is
// closed rather than growing without end.
func (c *Channel) push(data []byte) {
	c.mu.Lock()
	if len(c.buf)+len(data) > maxBuffered {
		c.mu.Unlock()
		c.s.log.Warn().Str("channel", c.name).Msg("A channel's unread data is over its bound; closing it")
		_ = c.Close()
		return
	}
	c.buf = append(c.buf, data...)
	c.cond.Broadcast()
	c.mu.Unlock()
}

// eof ends the stream from the peer.
func (c *Channel) eof(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

var _ io.ReadWriteCloser = (*Channel)(nil)
