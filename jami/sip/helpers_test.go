package sip

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
)

const (
	accountA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	deviceA  = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
	accountB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	deviceB  = "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1"
)

const offerSDP = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/SAVP 111\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n" +
	"m=video 4002 RTP/SAVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n"

const answerSDP = "v=0\r\no=- 2 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n" +
	"m=audio 5000 RTP/SAVP 111\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n" +
	"m=video 5002 RTP/SAVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n"

// wait is how long a test waits for an event before it fails (a bound,
// never a synchronisation).
const wait = 5 * time.Second

func testLog(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
}

// leakCheck fails the test if it leaves goroutines behind.
func leakCheck(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(wait)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			runtime.Gosched()
			time.Sleep(time.Millisecond) // polling a counter, not ordering events
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines leaked:\n%s", n-before, buf[:runtime.Stack(buf, true)])
		}
	})
}

type peer struct {
	*Conn
	invites  chan *IncomingCall
	messages chan string
}

func newPeer(t *testing.T, rw io.ReadWriteCloser, local, device, remote string) *peer {
	p := &peer{invites: make(chan *IncomingCall, 4), messages: make(chan string, 4)}
	p.Conn = NewConn(rw, Config{
		LocalAccount: local, LocalDevice: device, PeerAccount: remote,
		Log:       testLog(t).With().Str("side", local[:1]).Logger(),
		OnInvite:  func(ic *IncomingCall) { p.invites <- ic },
		OnMessage: func(from, ct string, body []byte) { p.messages <- from + "|" + ct + "|" + string(body) },
	})
	t.Cleanup(func() {
		_ = p.Close()
		<-p.Done()
	})
	return p
}

// pair is two user agents on the two ends of a pipe: A calls B.
func pair(t *testing.T) (a, b *peer) {
	leakCheck(t)
	ca, cb := net.Pipe()
	return newPeer(t, ca, accountA, deviceA, accountB), newPeer(t, cb, accountB, deviceB, accountA)
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func closed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// raw is the far end of a pipe driven by hand: what it writes goes to the
// Conn as is, what the Conn sends is parsed into msgs.
type raw struct {
	net.Conn
	msgs chan gosip.Message
}

func newRaw(t *testing.T, cfg Config) (*Conn, *raw) {
	leakCheck(t)
	near, far := net.Pipe()
	if cfg.LocalAccount == "" {
		cfg.LocalAccount, cfg.LocalDevice, cfg.PeerAccount = accountB, deviceB, accountA
	}
	cfg.Log = testLog(t)
	c := NewConn(near, cfg)
	r := &raw{Conn: far, msgs: make(chan gosip.Message, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := gosip.NewParser().NewSIPStream()
		buf := make([]byte, 4096)
		for {
			n, err := far.Read(buf)
			if err != nil {
				return
			}
			_ = p.ParseSIPStream(buf[:n], func(m gosip.Message) { r.msgs <- m })
		}
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-c.Done()
		_ = far.Close()
		<-done
	})
	return c, r
}

func (r *raw) write(t *testing.T, s string) {
	t.Helper()
	if _, err := r.Write([]byte(s)); err != nil {
		t.Fatalf("raw write: %v", err)
	}
}

func (r *raw) next(t *testing.T) gosip.Message {
	t.Helper()
	return recv(t, r.msgs, "a SIP message from the Conn")
}

func (r *raw) response(t *testing.T, code int) *gosip.Response {
	t.Helper()
	m := r.next(t)
	res, ok := m.(*gosip.Response)
	if !ok || res.StatusCode != code {
		t.Fatalf("want a %d response, got %q", code, startLine(m))
	}
	return res
}

// sipMsg joins header lines with CRLF and appends the body with its
// Content-Length, as jamid (pjsip) writes a message.
func sipMsg(body string, lines ...string) string {
	return strings.Join(lines, "\r\n") + fmt.Sprintf("\r\nContent-Length: %d\r\n\r\n", len(body)) + body
}

// jamidInvite is an INVITE shaped as jamid 13.7.0 sends it.
func jamidInvite(callID, branch string) string {
	return sipMsg(offerSDP,
		"INVITE sips:10.0.0.2:41000;transport=tls SIP/2.0",
		"Via: SIP/2.0/TLS 10.0.0.1:37457;rport;branch="+branch+";alias",
		"Max-Forwards: 70",
		"From: <sip:"+accountA+"@ring.dht>;tag=jamidtag1",
		"To: <sips:"+accountB+"@10.0.0.2:41000;transport=tls>",
		`Contact: "" <sips:`+deviceA+`@10.0.0.1:37457;transport=tls>`,
		"Call-ID: "+callID,
		"CSeq: 2407 INVITE",
		"Allow: INVITE, ACK, BYE, CANCEL, INFO, PRACK, UPDATE, MESSAGE, NOTIFY, OPTIONS, REFER",
		"Supported: replaces, 100rel, timer, norefersub",
		"User-Agent: Jami Daemon 13.7.0 (linux)",
		"Content-Type: application/sdp")
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}
