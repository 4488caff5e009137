package xmpp

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Run returns, and leaves nothing running, when ctx ends in the middle of
// a login (a server that accepts and says nothing) or of a wait between
// tries (nothing listening; the wait is long).
func TestRunStopsWhileConnecting(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	r := newRecorder()
	c := newClient(t, Config{JID: "1001-77@localhost", Password: "pw", Server: ln.Addr().String(), AllowPlaintext: true}, r)
	stop := run(t, testCtx(t, time.Minute), c)
	conn := <-accepted
	defer conn.Close()
	buf := make([]byte, 64)
	_, err = conn.Read(buf) // the client's stream header
	require.NoError(t, err)
	start := time.Now()
	stop()
	require.Less(t, time.Since(start), time.Second, "a login in progress is given up at once")
	require.Empty(t, r.states)
}

func TestRunStopsWhileWaiting(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	r := newRecorder()
	c := newClient(t, Config{
		JID: "1001-77@localhost", Password: "pw", Server: addr, AllowPlaintext: true,
		ReconnectMin: time.Hour, ReconnectMax: time.Hour,
	}, r)
	ctx := testCtx(t, time.Minute)
	stop := run(t, ctx, c)
	// The first try fails at once (connection refused); then Run waits an
	// hour. LastError tells when the try is over.
	require.Eventually(t, func() bool { return c.LastError() != nil }, 10*time.Second, 5*time.Millisecond)
	require.ErrorContains(t, c.LastError(), "connection refused")
	start := time.Now()
	stop()
	require.Less(t, time.Since(start), time.Second)
}
