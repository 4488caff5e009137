// Package impair is an in-process UDP relay that loses, delays and reorders
// datagrams the way netem's "loss P delay D J" does, for measuring media
// quality over a bad network where netem is not available. Each side of a
// call is told the relay's address instead of the other side's; the relay
// learns each side's address from what it receives.
package impair

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Link is what happens to each datagram in one direction.
type Link struct {
	// Loss is the probability that a datagram is dropped (0.05: 5 %).
	Loss float64
	// Delay is the mean one-way delay; each datagram's delay varies
	// uniformly within ±Jitter of it (never below zero).
	Delay, Jitter time.Duration
	// Reorder lets a datagram overtake an earlier one whose delay was
	// longer, as netem's jitter does. Without it a datagram waits for the
	// one before it, as in a router's queue, where jitter comes from.
	Reorder bool
}

// Validate reports settings that make no sense.
func (l Link) Validate() error {
	switch {
	case l.Loss < 0 || l.Loss >= 1:
		return fmt.Errorf("loss %v is not in [0, 1)", l.Loss)
	case l.Delay < 0 || l.Jitter < 0:
		return errors.New("delay and jitter must not be negative")
	}
	return nil
}

// Counts are what one direction of a relay did.
type Counts struct {
	Forwarded, Dropped uint64
	// Unrouted datagrams arrived before the other side had sent anything,
	// so the relay did not know where to send them.
	Unrouted uint64
}

// side is one socket of the relay and the peer that talks to it.
type side struct {
	conn    *net.UDPConn
	peer    atomic.Pointer[netip.AddrPort]
	out     *side // where datagrams received here go
	link    Link
	fwd     atomic.Uint64
	drop    atomic.Uint64
	nowhere atomic.Uint64
	rngMu   sync.Mutex
	rng     *rand.Rand
	last    time.Time   // when the previous datagram leaves (in order)
	queue   chan queued // in order: datagrams waiting to leave
}

// Relay carries datagrams between two peers on loopback.
type Relay struct {
	a, b    side
	readers sync.WaitGroup
	pending sync.WaitGroup // delayed datagrams not yet sent
	closed  atomic.Bool
}

// NewRelay opens the relay's two sockets on 127.0.0.1. aToB impairs what A
// sends to B, bToA the reverse; seed makes the losses and delays
// repeatable.
func NewRelay(aToB, bToA Link, seed uint64) (*Relay, error) {
	for _, l := range []Link{aToB, bToA} {
		if err := l.Validate(); err != nil {
			return nil, err
		}
	}
	r := &Relay{}
	r.a.link, r.b.link = aToB, bToA
	r.a.rng = rand.New(rand.NewPCG(seed, 1))
	r.b.rng = rand.New(rand.NewPCG(seed, 2))
	r.a.out, r.b.out = &r.b, &r.a
	for _, s := range []*side{&r.a, &r.b} {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			r.closeConns()
			return nil, fmt.Errorf("opening relay socket: %w", err)
		}
		s.conn = conn
	}
	for _, s := range []*side{&r.a, &r.b} {
		s.queue = make(chan queued, 4096)
		r.pending.Add(1)
		go r.send(s)
		r.readers.Add(1)
		go r.read(s)
	}
	return r, nil
}

// AddrForA is where A sends to reach B.
func (r *Relay) AddrForA() netip.AddrPort { return r.a.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// AddrForB is where B sends to reach A.
func (r *Relay) AddrForB() netip.AddrPort { return r.b.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// AToB and BToA report what each direction did so far.
func (r *Relay) AToB() Counts { return r.a.counts() }

// BToA reports the direction from B to A.
func (r *Relay) BToA() Counts { return r.b.counts() }

func (s *side) counts() Counts {
	return Counts{Forwarded: s.fwd.Load(), Dropped: s.drop.Load(), Unrouted: s.nowhere.Load()}
}

func (r *Relay) read(s *side) {
	defer r.readers.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if p := s.peer.Load(); p == nil || *p != from {
			s.peer.Store(&from)
		}
		to := s.out.peer.Load()
		if to == nil {
			s.nowhere.Add(1) // the other side has not spoken yet
			continue
		}
		s.rngMu.Lock()
		lost := s.rng.Float64() < s.link.Loss
		delay := s.link.Delay
		if s.link.Jitter > 0 {
			delay += time.Duration(s.rng.Int64N(int64(2*s.link.Jitter)+1)) - s.link.Jitter
		}
		s.rngMu.Unlock()
		if lost {
			s.drop.Add(1)
			continue
		}
		s.fwd.Add(1)
		pkt := append([]byte(nil), buf[:n]...)
		dst := *to
		if !s.link.Reorder {
			leave := time.Now().Add(delay)
			if leave.Before(s.last) {
				leave = s.last // behind the one before it in the queue
			}
			s.last = leave
			s.queue <- queued{pkt: pkt, to: dst, leave: leave}
			continue
		}
		if delay <= 0 {
			_, _ = s.out.conn.WriteToUDPAddrPort(pkt, dst)
			continue
		}
		r.pending.Add(1)
		time.AfterFunc(delay, func() {
			defer r.pending.Done()
			if !r.closed.Load() {
				_, _ = s.out.conn.WriteToUDPAddrPort(pkt, dst)
			}
		})
	}
}

type queued struct {
	pkt   []byte
	to    netip.AddrPort
	leave time.Time
}

// send sends the queued datagrams of an in-order link, each when it is due.
func (r *Relay) send(s *side) {
	defer r.pending.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for q := range s.queue {
		if d := time.Until(q.leave); d > 0 {
			timer.Reset(d)
			<-timer.C
		}
		if !r.closed.Load() {
			_, _ = s.out.conn.WriteToUDPAddrPort(q.pkt, q.to)
		}
	}
}

func (r *Relay) closeConns() {
	for _, s := range []*side{&r.a, &r.b} {
		if s.conn != nil {
			_ = s.conn.Close()
		}
	}
}

// Close stops the relay and waits for its goroutines and delayed datagrams.
func (r *Relay) Close() error {
	r.closed.Store(true)
	r.closeConns()
	r.readers.Wait()
	close(r.a.queue)
	close(r.b.queue)
	r.pending.Wait()
	return nil
}
