package mux

import (
	"bytes"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// Protocol messages are read entry by entry, with what a decoded map
// meant: the last of a key counts, a nil value is none, "p" wins over "v".
func TestProtocolMessage(t *testing.T) {
	pack := func(kv ...any) []byte {
		var b bytes.Buffer
		enc := msgpack.NewEncoder(&b)
		require.NoError(t, enc.EncodeMapLen(len(kv)/2))
		for _, x := range kv {
			require.NoError(t, enc.Encode(x))
		}
		return b.Bytes()
	}
	for _, tc := range []struct {
		name    string
		pkt     []byte
		ok      bool
		version int
		answers int // {"p": false} written
		beacons int // beacons of ours still unanswered (one was sent)
	}{
		{"version", pack("v", 1), true, 1, 0, 1},
		{"version uint64", pack("v", uint64(7)), true, 7, 0, 1},
		{"version negative", pack("v", -2), true, -2, 0, 1},
		{"version not an int", pack("v", "1"), false, -1, 0, 1},
		{"version float", pack("v", 1.0), false, -1, 0, 1},
		{"version nil", pack("v", nil), true, -1, 0, 1},
		{"beacon", pack("p", true), true, -1, 1, 1},
		{"beacon answer", pack("p", false), true, -1, 0, 0},
		{"beacon of another type", pack("p", 1), true, -1, 0, 0},
		{"beacon nil, version", pack("p", nil, "v", 2), true, 2, 0, 1},
		{"beacon before version", pack("v", 3, "p", true), true, -1, 1, 1},
		{"the last of a key", pack("v", 1, "v", 4), true, 4, 0, 1},
		{"the last of a key, nil", pack("p", true, "p", nil), true, -1, 0, 1},
		{"unknown entries skipped", pack("x", map[string]any{"y": []any{1, "z"}}, "v", 5), true, 5, 0, 1},
		{"unknown", pack("x", 1), true, -1, 0, 1},
		{"nil", []byte{0xc0}, true, -1, 0, 1},
		{"not a map", []byte{0x91, 0x01}, false, -1, 0, 1},
		{"a key that is no string", []byte{0x81, 0x01, 0x01}, false, -1, 0, 1},
		{"2^32-1 entries claimed", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, false, -1, 0, 1},
		{"2^32-1 entries claimed, two given", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 0x01, 0xa1, 'p', 0xc3}, false, -1, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := newFuzzConn(nil, 1, false) // the gate stays shut: nothing is read
			s := New(conn, Options{Log: zerolog.Nop()})
			defer s.Close()
			s.beacons.Store(1)
			before := len(conn.wrote)
			s.peerVersion.Store(-1)
			ok := s.protocolMessage(msgpack.NewDecoder(bytes.NewReader(tc.pkt)))
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.version, s.PeerVersion())
			assert.Equal(t, tc.answers, len(conn.wrote)-before)
			assert.EqualValues(t, tc.beacons, s.beacons.Load())
		})
	}
}

// A frame over 64 KiB (which dhtnet never sends) ends the socket; one of
// 64 KiB nesting as deep as it can is read and ignored.
func TestFrameBounds(t *testing.T) {
	run := func(data []byte) *Socket {
		conn := newFuzzConn(data, 1<<20, true)
		close(conn.gate)
		s := New(conn, Options{Accept: func(string) bool { return true }, OnChannel: func(*Channel) {}, Log: zerolog.Nop()})
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	over := frame(42, bytes.Repeat([]byte("x"), maxFrame+1))
	s := run(over)
	select {
	case <-s.Done():
		assert.ErrorContains(t, s.Err(), "over 65535")
	case <-time.After(10 * time.Second):
		t.Fatal("an oversized frame did not end the socket")
	}

	deep := append(channelRequest("sip", 5, stateRequest), bytes.Repeat([]byte{0x91}, maxFrame)...)
	deep[0] = 0x94 // a fourth field, nested
	deep = deep[:maxFrame]
	s = run(cat(frame(ControlChannel, deep), frame(ControlChannel, channelRequest("sip", 6, stateRequest))))
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.channels[6] != nil
	}, 10*time.Second, time.Millisecond, "the request after the deep one is served")
	select {
	case <-s.Done():
		t.Fatalf("the socket ended: %v", s.Err())
	default:
	}
}
