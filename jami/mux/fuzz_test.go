package mux

import (
	"bytes"
	"context"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmihailenco/msgpack/v5"
)

// fuzzConn is the TLS connection under a socket: reads wait for the gate,
// then yield the input in chunks; after it, EOF (or, if hold, nothing
// until Close). Writes are counted and dropped.
type fuzzConn struct {
	gate   chan struct{}
	closed chan struct{}
	once   sync.Once
	hold   bool

	mu      sync.Mutex
	data    []byte
	chunk   int
	drained chan struct{} // closed once the input is all read
	writes  int
	wrote   chan struct{} // a token per write
}

func newFuzzConn(data []byte, chunk int, hold bool) *fuzzConn {
	return &fuzzConn{
		gate: make(chan struct{}), closed: make(chan struct{}), hold: hold,
		data: data, chunk: chunk, drained: make(chan struct{}), wrote: make(chan struct{}, 1024),
	}
}

func (c *fuzzConn) Read(p []byte) (int, error) {
	select {
	case <-c.gate:
	case <-c.closed:
		return 0, io.ErrClosedPipe
	}
	c.mu.Lock()
	if len(c.data) == 0 {
		select {
		case <-c.drained:
		default:
			close(c.drained)
		}
		c.mu.Unlock()
		if c.hold {
			<-c.closed
			return 0, io.ErrClosedPipe
		}
		return 0, io.EOF
	}
	n := copy(p, c.data[:min(len(c.data), c.chunk)])
	c.data = c.data[n:]
	c.mu.Unlock()
	return n, nil
}

func (c *fuzzConn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	select {
	case c.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *fuzzConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// frame is one [channel, data] frame as dhtnet's msgpack-c packs it
// (compact integers, data as bin).
func frame(channel uint16, data []byte) []byte {
	var b bytes.Buffer
	enc := msgpack.NewEncoder(&b)
	enc.UseCompactInts(true)
	_ = enc.EncodeArrayLen(2)
	_ = enc.EncodeUint16(channel)
	_ = enc.EncodeBytes(data)
	return b.Bytes()
}

// channelRequest is a ChannelRequest [name, channel, state].
func channelRequest(name string, id uint16, state int) []byte {
	var b bytes.Buffer
	enc := msgpack.NewEncoder(&b)
	enc.UseCompactInts(true)
	_ = enc.EncodeArrayLen(3)
	_ = enc.EncodeString(name)
	_ = enc.EncodeUint16(id)
	_ = enc.EncodeInt(int64(state))
	return b.Bytes()
}

func protocolMsg(m map[string]any) []byte {
	b, _ := msgpack.Marshal(m)
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

const invite = "INVITE sip:bot@ring.dht SIP/2.0\r\nVia: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"

// muxSeeds are streams as jami-daemon sends them. The socket under test
// has asked for channel 1 ("sip") before the input starts, and takes
// requests for "sip".
func muxSeeds() [][]byte {
	version := frame(ProtocolChannel, protocolMsg(map[string]any{"v": 1}))
	return [][]byte{
		version,
		// The peer opens "sip" on 7, sends an INVITE, closes it.
		cat(version, frame(ControlChannel, channelRequest("sip", 7, stateRequest)),
			frame(7, []byte(invite)), frame(7, nil)),
		// The peer accepts our channel 1 and sends on it.
		cat(version, frame(ControlChannel, channelRequest("sip", 1, stateAccept)), frame(1, []byte("SIP/2.0 200 OK\r\n\r\n"))),
		// The peer declines our channel 1.
		cat(version, frame(ControlChannel, channelRequest("sip", 1, stateDecline))),
		// Beacons both ways, and one on the control channel (dhtnet takes
		// protocol messages there too).
		cat(version, frame(ProtocolChannel, protocolMsg(map[string]any{"p": true})),
			frame(ProtocolChannel, protocolMsg(map[string]any{"p": false})),
			frame(ControlChannel, protocolMsg(map[string]any{"p": true}))),
		// Requests we decline: another name, the reserved channels, a
		// channel in use; two in one packet; one with a field more.
		cat(frame(ControlChannel, channelRequest("git://repo", 3, stateRequest)),
			frame(ControlChannel, channelRequest("sip", ProtocolChannel, stateRequest)),
			frame(ControlChannel, channelRequest("sip", ControlChannel, stateRequest)),
			frame(ControlChannel, cat(channelRequest("sip", 9, stateRequest), channelRequest("sip", 9, stateRequest))),
			frame(ControlChannel, append([]byte{0x94}, append(channelRequest("sip", 10, stateRequest)[1:], 0xc3)...))),
		// A version in the old form, an unknown message, garbage.
		cat(frame(ProtocolChannel, protocolMsg(map[string]any{"v": "1"})),
			frame(ProtocolChannel, protocolMsg(map[string]any{"x": 1})),
			frame(ControlChannel, []byte{0xc1, 0xc1}), frame(42, []byte("for no channel")), []byte{0x93, 0x00, 0xc4, 0x00}),
		// A protocol message claiming 2^31 entries in 5 bytes.
		cat(version, frame(ProtocolChannel, []byte{0xdf, 0x7f, 0xff, 0xff, 0xff})),
		cat(version, frame(ControlChannel, []byte{0xdf, 0x7f, 0xff, 0xff, 0xff})),
	}
}

// FuzzSocketInput feeds a socket arbitrary input from its peer, after it
// asked for a channel of its own and announced a beacon; channels either
// side opens are read and echoed by a goroutine each. The first byte picks
// the read size and whether the connection ends with EOF or stays open
// until the socket is closed. The socket must not panic, must be done
// within a bounded time of the input's end, and must leave no goroutine
// behind.
func FuzzSocketInput(f *testing.F) {
	for _, s := range muxSeeds() {
		f.Add(append([]byte{0xff}, s...)) // all at once, then EOF
		f.Add(append([]byte{0x03}, s...)) // 4 bytes a read, then EOF
		f.Add(append([]byte{0xc0}, s...)) // all at once, held open
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		chunk, hold := 1<<20, false
		if len(data) > 0 {
			mode := data[0]
			data = data[1:]
			hold = mode&0x40 != 0
			if mode&0x80 == 0 {
				chunk = int(mode&0x3f) + 1
			}
		}
		before := runtime.NumGoroutine()
		conn := newFuzzConn(data, chunk, hold)
		// The channels' goroutines are left to the settle check below: the
		// socket may hand over a channel while it shuts down.
		serve := func(c *Channel) {
			go func() {
				if c.ID()%3 == 0 {
					_ = c.Close()
					return
				}
				buf := make([]byte, 512)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
		s := New(conn, Options{
			Accept:    func(name string) bool { return name == "sip" },
			OnChannel: serve,
			Log:       zerolog.Nop(),
		})
		s.peerVersion.Store(Version) // so that the beacon goes out
		s.SendBeacon(time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() {
			if c, err := s.Open(ctx, "sip"); err == nil {
				serve(c)
			}
		})
		// The version, the beacon and our request are out: the peer may
		// speak.
		deadline := time.After(10 * time.Second)
		for n := 0; n < 3; {
			select {
			case <-conn.wrote:
				n++
			case <-s.Done():
				n = 3
			case <-deadline:
				fail(t, "the socket did not write its version, beacon and request")
			}
		}
		close(conn.gate)
		if hold {
			select {
			case <-conn.drained:
			case <-s.Done():
			case <-deadline:
				fail(t, "the socket did not read its input")
			}
			_ = s.Close()
		}
		select {
		case <-s.Done():
		case <-deadline:
			fail(t, "the socket is not done after its input ended")
		}
		cancel()
		wg.Wait()
		settle := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(settle) {
				fail(t, "goroutines left behind")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

func fail(t *testing.T, msg string) {
	t.Helper()
	_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
	t.Fatal(msg)
}
