package sip

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"strconv"
	"strings"

	gosip "github.com/emiago/sipgo/sip"
)

// allowed is our Allow header. jamid sends an in-call text MESSAGE only if
// the peer's Allow lists MESSAGE (SIPCall::sendTextMessage assumes a peer
// without Allow does not take it), so it goes on every INVITE and answer.
const allowed = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, MESSAGE"

// maxMessage is jamid's PJSIP_MAX_PKT_LEN: its channel reader hands pjsip
// at most this much of a message, so a longer one can never be parsed.
const maxMessage = 8000

func token(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// newBranch is an RFC 3261 branch (the magic cookie marks it unique).
func newBranch() string { return "z9hG4bK" + token(12) }

func header(name, value string) gosip.Header { return gosip.NewHeader(name, value) }

// newResponse builds a response to req with the given To tag (empty for
// a 100, which has none) as RFC 3261 8.2.6 says. sipgo's own
// NewResponseFromRequest is not used: it draws a fresh To tag per
// response where all responses of a transaction need the same one, and it
// rewrites an empty Via rport (which pjsip always sends) from the
// request's source address, which a channel has not.
func (c *Conn) newResponse(req *gosip.Request, code int, reason, toTag string) *gosip.Response {
	res := gosip.NewResponse(code, reason)
	for _, h := range req.GetHeaders("Via") {
		res.AppendHeader(gosip.HeaderClone(h))
	}
	if h := req.From(); h != nil {
		res.AppendHeader(gosip.HeaderClone(h))
	}
	if h := req.To(); h != nil {
		to := gosip.HeaderClone(h).(*gosip.ToHeader)
		if toTag != "" && !to.Params.Has("tag") {
			to.Params = to.Params.Clone()
			if to.Params == nil {
				to.Params = gosip.NewParams()
			}
			to.Params.Add("tag", toTag)
		}
		res.AppendHeader(to)
	}
	if h := req.CallID(); h != nil {
		res.AppendHeader(gosip.HeaderClone(h))
	}
	if h := req.CSeq(); h != nil {
		res.AppendHeader(gosip.HeaderClone(h))
	}
	res.AppendHeader(header("User-Agent", c.cfg.UserAgent))
	return res
}

// contact is our Contact header: jamid's shape is
// `"name" <sips:DEVICE@ip:port;transport=tls>`.
func (c *Conn) contact() gosip.Header {
	return &gosip.ContactHeader{Address: c.contactURI()}
}

func (c *Conn) contactURI() gosip.Uri {
	host, port := splitHostPort(c.cfg.ContactHost)
	return gosip.Uri{Scheme: "sips", User: c.cfg.LocalDevice, Host: host, Port: port,
		UriParams: gosip.HeaderParams{{K: "transport", V: "tls"}}}
}

func (c *Conn) via() *gosip.ViaHeader {
	host, port := splitHostPort(c.cfg.ContactHost)
	return &gosip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TLS",
		Host: host, Port: port, Params: gosip.HeaderParams{{K: "branch", V: newBranch()}}}
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port"; an
// IPv6 host keeps its brackets, as sipgo writes a URI's host as it is.
func splitHostPort(hp string) (string, int) {
	host, port := strings.Trim(hp, "[]"), 0
	if h, p, err := net.SplitHostPort(hp); err == nil {
		host = h
		port, _ = strconv.Atoi(p)
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host, port
}

func branchOf(m gosip.Message) string {
	if v := m.Via(); v != nil {
		b, _ := v.Params.Get("branch")
		return b
	}
	return ""
}

func tagOf(p gosip.HeaderParams) string {
	t, _ := p.Get("tag")
	return t
}

func contentType(m interface{ GetHeader(string) gosip.Header }) string {
	if h := m.GetHeader("Content-Type"); h != nil {
		return h.Value()
	}
	return ""
}

// newToTag draws our tag for a dialog the peer starts; a variable so the
// fuzz seeds can reach into a dialog.
var newToTag = func() string { return token(8) }
