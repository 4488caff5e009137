package voip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/ice/v4"
	"golang.org/x/net/ipv4"

	"github.com/voipbot/voipbot/internal/pionlog"
)

// batchSize is how many datagrams one recvmmsg takes at most.
const batchSize = 64

// batchConn is a UDP socket shared by every call (the single-port mode)
// whose reads merge system calls: one recvmmsg takes up to batchSize
// datagrams, which the mux then hands out one by one. Writes go straight to
// the socket: a sendmmsg queue was measured on loopback and saved nothing
// (the kernel's per-datagram work, done in the sender's context, dominates)
// while adding a goroutine hand-off per packet. pion's UDP mux reads and
// writes it through the allocation-free AddrPort methods.
type batchConn struct {
	*net.UDPConn
	batch *ipv4.PacketConn // ReadBatch works for IPv6 sockets too: Message is shared

	// Only the mux's worker goroutine reads.
	rmsgs        []ipv4.Message
	rnext, rlast int
}

var _ ice.AddrPortReaderWriter = (*batchConn)(nil)

func newBatchConn(conn *net.UDPConn) *batchConn {
	c := &batchConn{UDPConn: conn, batch: ipv4.NewPacketConn(conn), rmsgs: make([]ipv4.Message, batchSize)}
	for i := range c.rmsgs {
		c.rmsgs[i].Buffers = [][]byte{make([]byte, maxPacket+64)}
	}
	return c
}

// ReadFromAddrPort returns the next datagram, reading a new batch when the
// last one is used up.
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for c.rnext == c.rlast {
		n, err := c.batch.ReadBatch(c.rmsgs, 0)
		if err != nil {
			return 0, netip.AddrPort{}, err
		}
		c.rnext, c.rlast = 0, n
	}
	m := &c.rmsgs[c.rnext]
	c.rnext++
	n := copy(b, m.Buffers[0][:m.N])
	addr, ok := m.Addr.(*net.UDPAddr)
	if !ok {
		return 0, netip.AddrPort{}, fmt.Errorf("datagram from %T address", m.Addr)
	}
	ap := addr.AddrPort()
	return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// ReadFrom implements net.PacketConn.
func (c *batchConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.ReadFromAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// WriteToAddrPort implements ice.AddrPortReaderWriter.
func (c *batchConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.WriteToUDPAddrPort(b, addr)
}

// newBatchedUDPMux binds the single shared port on every allowed interface
// address, each socket batched, behind one pion mux.
func newBatchedUDPMux(cfg Config, allowed func(string) bool, lf pionlog.Factory) (*ice.MultiUDPMuxDefault, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	var muxes []ice.UDPMux
	closeAll := func() {
		for _, m := range muxes {
			_ = m.Close()
		}
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || (iface.Flags&net.FlagLoopback != 0 && !cfg.IncludeLoopback) || !allowed(iface.Name) {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listing addresses of %s: %w", iface.Name, err)
		}
		for _, a := range addrs {
			ipnet, ok := a.(*net.IPNet)
			if !ok || ipnet.IP.IsLinkLocalUnicast() || ipnet.IP.IsLinkLocalMulticast() {
				continue
			}
			network := "udp4"
			if ipnet.IP.To4() == nil {
				network = "udp6"
			}
			conn, err := net.ListenUDP(network, &net.UDPAddr{IP: ipnet.IP, Port: int(cfg.UDPMuxPort)})
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("listening on %s port %d: %w", ipnet.IP, cfg.UDPMuxPort, err)
			}
			muxes = append(muxes, ice.NewUDPMuxDefault(ice.UDPMuxParams{
				UDPConn: newBatchConn(conn),
				Logger:  lf.NewLogger("udpmux"),
			}))
		}
	}
	if len(muxes) == 0 {
		return nil, errors.New("no usable interface address for the shared UDP port (see media.interfaces and media.include_loopback)")
	}
	return ice.NewMultiUDPMuxDefault(muxes...), nil
}
