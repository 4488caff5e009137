//go:build linux

package netns

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain doubles as a UDP echo server when run inside a namespace by
// TestLinkCarriesUDP (the helper-process pattern): it echoes one datagram.
func TestMain(m *testing.M) {
	addr := os.Getenv("VB_NETNS_ECHO")
	if addr == "" {
		os.Exit(m.Run())
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("LISTENING\n")
	buf := make([]byte, 1500)
	n, from, err := conn.ReadFromUDP(buf)
	if err == nil {
		_, err = conn.WriteToUDP(buf[:n], from)
	}
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

// TestLinkCarriesUDP: a UDP echo inside the namespace answers a client on
// this side of the veth pair.
func TestLinkCarriesUDP(t *testing.T) {
	l, err := Create()
	require.NoError(t, err)
	defer func() { require.NoError(t, l.Delete()) }()

	server := l.NSIP + ":40001"
	cmd := l.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "VB_NETNS_ECHO="+server)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Wait() }()
	lines := bufio.NewScanner(out)
	for lines.Scan() && !strings.Contains(lines.Text(), "LISTENING") {
	}

	conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(l.HostIP)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(server)))
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("ping"))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 16)
	n, err := conn.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf[:n]))
}
