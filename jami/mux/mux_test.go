package mux

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// tcpPair is two ends of a loopback TCP connection (buffered, unlike
// net.Pipe, as the TLS connection under a real socket is).
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	a, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	b := <-accepted
	require.NotNil(t, b)
	return a, b
}

func pair(t *testing.T, accept func(string) bool) (*Socket, *Socket, chan *Channel) {
	t.Helper()
	a, b := tcpPair(t)
	incoming := make(chan *Channel, 4)
	sa := New(a, Options{})
	sb := New(b, Options{Accept: accept, OnChannel: func(c *Channel) { incoming <- c }})
	t.Cleanup(func() {
		_ = sa.Close()
		_ = sb.Close()
		<-sa.Done()
		<-sb.Done()
	})
	return sa, sb, incoming
}

func TestChannelBothWays(t *testing.T) {
	sa, _, incoming := pair(t, func(name string) bool { return name == "sip" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := sa.Open(ctx, "sip")
	require.NoError(t, err)
	peer := <-incoming
	assert.Equal(t, "sip", peer.Name())
	assert.Equal(t, c.ID(), peer.ID())

	_, err = c.Write([]byte("INVITE sip:x SIP/2.0\r\n\r\n"))
	require.NoError(t, err)
	buf := make([]byte, 64)
	n, err := peer.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "INVITE sip:x SIP/2.0\r\n\r\n", string(buf[:n]))

	// A write over one frame arrives whole, in order.
	big := bytes.Repeat([]byte("0123456789"), 20000)
	go func() { _, _ = peer.Write(big) }()
	got := make([]byte, len(big))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, big, got)

	// Closing sends an empty frame: the other side reads EOF.
	require.NoError(t, c.Close())
	_, err = peer.Read(buf)
	assert.ErrorIs(t, err, io.EOF)
	_, err = c.Write([]byte("x"))
	assert.ErrorIs(t, err, ErrClosed)
}

func TestChannelDeclined(t *testing.T) {
	sa, _, _ := pair(t, func(name string) bool { return name == "sip" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := sa.Open(ctx, "git://repo")
	assert.ErrorIs(t, err, ErrDeclined)
	// The socket goes on.
	_, err = sa.Open(ctx, "sip")
	assert.NoError(t, err)
}

func TestVersionAndBeacon(t *testing.T) {
	sa, sb, _ := pair(t, nil)
	require.Eventually(t, func() bool { return sa.PeerVersion() == Version && sb.PeerVersion() == Version },
		5*time.Second, time.Millisecond, "each side learns the other's version")
	sa.SendBeacon(2 * time.Second)
	require.Eventually(t, func() bool { return sa.beacons.Load() == 0 }, 5*time.Second, time.Millisecond, "the beacon is answered")
	select {
	case <-sa.Done():
		t.Fatal("an answered beacon closed the socket")
	default:
	}
}

// A peer that never answers beacons: the socket shuts down.
func TestUnansweredBeacon(t *testing.T) {
	a, b := tcpPair(t)
	defer b.Close()
	sa := New(a, Options{})
	defer sa.Close()
	// The silent peer announces version 1 and then reads without answering.
	var frame bytes.Buffer
	enc := msgpack.NewEncoder(&frame)
	v, _ := msgpack.Marshal(map[string]any{"v": 1})
	require.NoError(t, enc.EncodeArrayLen(2))
	require.NoError(t, enc.EncodeUint16(ProtocolChannel))
	require.NoError(t, enc.EncodeBytes(v))
	_, err := b.Write(frame.Bytes())
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, b) }()
	require.Eventually(t, func() bool { return sa.PeerVersion() == 1 }, 5*time.Second, time.Millisecond)
	sa.SendBeacon(100 * time.Millisecond)
	select {
	case <-sa.Done():
		assert.ErrorContains(t, sa.Err(), "did not answer a beacon")
	case <-time.After(5 * time.Second):
		t.Fatal("the socket stayed up without beacon answers")
	}
}

// What dhtnet sends, byte for byte: a request for "sip" on channel 7 as
// msgpack [name, channel, state] inside a [0, bin] frame; the answer comes
// the same way; a request on a reserved channel is declined.
func TestWireFormat(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	sb := New(b, Options{Accept: func(string) bool { return true }, OnChannel: func(*Channel) {}})
	defer sb.Close()
	dec := msgpack.NewDecoder(a)
	readFrameT := func() (uint16, []byte) {
		ch, data, err := readFrame(dec)
		require.NoError(t, err)
		return ch, data
	}
	ch, data := readFrameT()
	require.Equal(t, ProtocolChannel, ch, "the version comes first")
	var version map[string]any
	require.NoError(t, msgpack.Unmarshal(data, &version))
	assert.EqualValues(t, 1, version["v"])

	send := func(channel uint16, payload []byte) {
		var f bytes.Buffer
		enc := msgpack.NewEncoder(&f)
		require.NoError(t, enc.EncodeArrayLen(2))
		require.NoError(t, enc.EncodeUint16(channel))
		require.NoError(t, enc.EncodeBytes(payload))
		_, err := a.Write(f.Bytes())
		require.NoError(t, err)
	}
	request := func(name string, id uint16) []byte {
		var r bytes.Buffer
		enc := msgpack.NewEncoder(&r)
		require.NoError(t, enc.EncodeArrayLen(3))
		require.NoError(t, enc.EncodeString(name))
		require.NoError(t, enc.EncodeUint16(id))
		require.NoError(t, enc.EncodeInt(0))
		return r.Bytes()
	}
	send(ControlChannel, request("sip", 7))
	ch, data = readFrameT()
	require.Equal(t, ControlChannel, ch)
	name, id, state, err := readRequest(msgpack.NewDecoder(bytes.NewReader(data)))
	require.NoError(t, err)
	assert.Equal(t, "sip", name)
	assert.EqualValues(t, 7, id)
	assert.Equal(t, stateAccept, state)

	send(ControlChannel, request("sip", ProtocolChannel))
	_, data = readFrameT()
	_, _, state, err = readRequest(msgpack.NewDecoder(bytes.NewReader(data)))
	require.NoError(t, err)
	assert.Equal(t, stateDecline, state, "a reserved channel is refused")

	// A beacon is answered {"p": false}; garbage on the control channel
	// changes nothing.
	p, _ := msgpack.Marshal(map[string]any{"p": true})
	send(ControlChannel, []byte{0xc1, 0xc1})
	send(ProtocolChannel, p)
	ch, data = readFrameT()
	require.Equal(t, ProtocolChannel, ch)
	var answer map[string]any
	require.NoError(t, msgpack.Unmarshal(data, &answer))
	assert.Equal(t, false, answer["p"])
}
