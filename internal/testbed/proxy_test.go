package testbed

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoServer answers each line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err = c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip writes a line and reads the answer, failing if none comes
// within wait.
func roundTrip(c net.Conn, r *bufio.Reader, line string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

func TestProxyFreezeHoldsBytesAndNewConnections(t *testing.T) {
	p, err := StartProxy(echoServer(t))
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close()) }()

	c, err := net.Dial("tcp", p.Addr)
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	got, err := roundTrip(c, r, "one", 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "one\n", got)

	p.Freeze()
	// Checking for silence needs some wait; 300 ms is enough on loopback,
	// where the echo comes back in well under a millisecond.
	_, err = roundTrip(c, r, "two", 300*time.Millisecond)
	requireTimeout(t, err) // nothing comes back while frozen
	fresh, err := net.Dial("tcp", p.Addr)
	require.NoError(t, err, "a frozen server's port still accepts connections")
	defer fresh.Close()
	freshR := bufio.NewReader(fresh)
	_, err = roundTrip(fresh, freshR, "three", 300*time.Millisecond)
	requireTimeout(t, err) // but does not answer them

	p.Unfreeze()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	got, err = r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "two\n", got, "what was held back arrives after the thaw")
	require.NoError(t, fresh.SetReadDeadline(time.Now().Add(5*time.Second)))
	got, err = freshR.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "three\n", got)
}

func requireTimeout(t *testing.T, err error) {
	t.Helper()
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.Truef(t, ne.Timeout(), "%v is not a timeout", err)
}

func TestProxyCloseDropsConnections(t *testing.T) {
	p, err := StartProxy(echoServer(t))
	require.NoError(t, err)
	c, err := net.Dial("tcp", p.Addr)
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	_, err = roundTrip(c, r, "one", 5*time.Second)
	require.NoError(t, err)
	p.Freeze()
	require.NoError(t, p.Close(), "Close does not wait for a thaw")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = r.ReadString('\n')
	require.Error(t, err, "the connection is closed")
}
