// Package connect is how two Jami devices reach each other before any
// channel exists (dhtnet's ConnectionManager): the connection request each
// side puts on the DHT for the other, and the ICE description it carries.
package connect

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Request is dhtnet's PeerConnectionRequest: put encrypted for the peer
// device (signed by ours) at its "peer:" key; the answer has IsAnswer set
// and the same ID. ConnType ("audioCall", "videoCall" or "") says why, for
// push notifications. It is a msgpack map, as MSGPACK_DEFINE_MAP packs it.
type Request struct {
	ID       uint64 `msgpack:"id"`
	ICE      string `msgpack:"ice_msg"`
	IsAnswer bool   `msgpack:"isAnswer"`
	ConnType string `msgpack:"connType"`
}

// The request's value type on the DHT: dht::ValueType::USER_DATA, with
// user_type "peer_request".
const (
	ValueType = 0
	UserType  = "peer_request"
)

// Marshal packs the request.
func (r *Request) Marshal() ([]byte, error) { return msgpack.Marshal(r) }

// ParseRequest reads a request; fields a newer peer adds are ignored.
func ParseRequest(b []byte) (*Request, error) {
	var r Request
	// A decoder of its own: msgpack.Unmarshal's pooled decoders keep the
	// buffer a claimed length (of a field skipped) grew, a quarter more
	// each time, up to gigabytes from values of a few bytes.
	if err := msgpack.NewDecoder(bytes.NewReader(b)).Decode(&r); err != nil {
		return nil, fmt.Errorf("reading a connection request: %w", err)
	}
	if r.ID == 0 {
		return nil, errors.New("reading a connection request: no id")
	}
	return &r, nil
}

// Transport is a candidate's transport.
type Transport string

// The transports. Jami's parser takes "TCP" in upper case only (lower
// case reads as UDP).
const (
	UDP Transport = "UDP"
	TCP Transport = "TCP"
)

// Candidate is one ICE candidate as Jami writes it: RFC 5245/6544
// candidate syntax without "candidate:", no related address.
type Candidate struct {
	Foundation string
	Component  uint16
	Transport  Transport
	Priority   uint32
	Addr       netip.AddrPort
	Type       string // host, srflx, prflx, relay
	TCPType    string // active, passive, so ("" for UDP)
}

// String writes the candidate as jami-daemon does
// ("Ha630001 1 TCP 2130706431 10.99.0.1 56607 typ host tcptype passive").
func (c Candidate) String() string {
	s := fmt.Sprintf("%s %d %s %d %s %d typ %s", c.Foundation, c.Component, c.Transport, c.Priority, c.Addr.Addr(), c.Addr.Port(), c.Type)
	if c.Transport == TCP {
		s += " tcptype " + c.TCPType
	}
	return s
}

// ParseCandidate reads a candidate line, in Jami's format or RFC syntax
// (lower-case transport, related address, extensions).
func ParseCandidate(line string) (Candidate, error) {
	f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "candidate:"))
	if len(f) < 8 || f[6] != "typ" {
		return Candidate{}, fmt.Errorf("candidate %q: want foundation component transport priority address port typ type", line)
	}
	comp, err := strconv.ParseUint(f[1], 10, 16)
	if err != nil {
		return Candidate{}, fmt.Errorf("candidate %q: component: %w", line, err)
	}
	prio, err := strconv.ParseUint(f[3], 10, 32)
	if err != nil {
		return Candidate{}, fmt.Errorf("candidate %q: priority: %w", line, err)
	}
	addr, err := netip.ParseAddr(f[4])
	if err != nil {
		return Candidate{}, fmt.Errorf("candidate %q: address: %w", line, err)
	}
	port, err := strconv.ParseUint(f[5], 10, 16)
	if err != nil {
		return Candidate{}, fmt.Errorf("candidate %q: port: %w", line, err)
	}
	c := Candidate{Foundation: f[0], Component: uint16(comp), Priority: uint32(prio),
		Addr: netip.AddrPortFrom(addr, uint16(port)), Type: f[7]}
	switch strings.ToUpper(f[2]) {
	case "UDP":
		c.Transport = UDP
	case "TCP":
		c.Transport = TCP
	default:
		return Candidate{}, fmt.Errorf("candidate %q: transport %q", line, f[2])
	}
	for i := 8; i+1 < len(f); i += 2 {
		if f[i] == "tcptype" {
			c.TCPType = f[i+1]
		}
	}
	if c.Transport == TCP && c.TCPType == "" {
		return Candidate{}, fmt.Errorf("candidate %q: a TCP candidate without tcptype", line)
	}
	return c, nil
}

// ICE is the ICE description a request carries: "ufrag\npwd\n" and one
// candidate per line.
type ICE struct {
	Ufrag, Pwd string
	Candidates []Candidate
}

// String writes the description.
func (m ICE) String() string {
	var sb strings.Builder
	sb.WriteString(m.Ufrag + "\n" + m.Pwd + "\n")
	for _, c := range m.Candidates {
		sb.WriteString(c.String() + "\n")
	}
	return sb.String()
}

// ParseICE reads a description. Lines that are not candidates are skipped
// (as jami-daemon does); missing credentials are an error.
func ParseICE(s string) (ICE, []error) {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	var m ICE
	if len(lines) < 2 || strings.TrimSpace(lines[0]) == "" || strings.TrimSpace(lines[1]) == "" {
		return m, []error{errors.New("an ICE message without ufrag and pwd")}
	}
	m.Ufrag, m.Pwd = strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
	var errs []error
	for _, l := range lines[2:] {
		if strings.TrimSpace(l) == "" {
			continue
		}
		c, err := ParseCandidate(l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.Candidates = append(m.Candidates, c)
	}
	return m, errs
}
