package xmpp

import (
	"context"
	"encoding/xml"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/xmpp/qbsignal"
)

// everySignal is a valid call.
func everySignal() qbsignal.Signal {
	return qbsignal.Signal{
		Type: qbsignal.TypeCall, SessionID: "a09ab99a-66af-4a09-80e3-fab77d1fe74d", CallType: qbsignal.CallAudio,
		CallerID: 1001, OpponentIDs: []uint64{1002}, Platform: "web",
		SDP:      "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n",
		UserInfo: qbsignal.Fields{"name": qbsignal.Text("Bot"), "bandwidth": qbsignal.Text("0")},
	}
}

// decoderOf reads a stanza for SendElement: its tokens with their
// namespaces in Name.Space only (an xmlns attribute as well would be
// written twice).
func decoderOf(raw string) xml.TokenReader {
	return xmlnsStripper{xml.NewDecoder(strings.NewReader(raw))}
}

type xmlnsStripper struct{ r xml.TokenReader }

func (s xmlnsStripper) Token() (xml.Token, error) {
	tok, err := s.r.Token()
	if start, ok := tok.(xml.StartElement); ok {
		attrs := start.Attr[:0:0]
		for _, a := range start.Attr {
			if a.Name.Space == "" && a.Name.Local == "xmlns" {
				continue
			}
			attrs = append(attrs, a)
		}
		start.Attr = attrs
		tok = start
	}
	return tok, err
}

// recorder is a Handler that hands everything to the test.
type recorder struct {
	states chan bool
	msgs   chan Message
}

func newRecorder() *recorder {
	return &recorder{states: make(chan bool, 64), msgs: make(chan Message, 64)}
}

func (r *recorder) HandleMessage(_ context.Context, m Message) { r.msgs <- m }
func (r *recorder) HandleState(_ context.Context, up bool)     { r.states <- up }

func (r *recorder) waitState(t *testing.T, want bool, within time.Duration) {
	t.Helper()
	select {
	case got := <-r.states:
		require.Equal(t, want, got, "session state")
	case <-time.After(within):
		require.Failf(t, "no state change", "waited %s for connected=%t", within, want)
	}
}

func (r *recorder) waitMessage(t *testing.T, within time.Duration) Message {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(within):
		require.Failf(t, "no message", "waited %s", within)
		return Message{}
	}
}

// testCtx is a context with the test's logger and a deadline.
func testCtx(t *testing.T, d time.Duration) context.Context {
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	ctx, cancel := context.WithTimeout(log.WithContext(context.Background()), d)
	t.Cleanup(cancel)
	return ctx
}

// run runs c until the test ends (or stop is called): stop cancels Run
// and waits for it to return nil.
func run(t *testing.T, ctx context.Context, c *Client) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err, "Run returns nil when its context ends")
			case <-time.After(10 * time.Second):
				require.Fail(t, "Run did not return after its context ended")
			}
			require.False(t, c.Connected())
		})
	}
	t.Cleanup(stop)
	return stop
}

// checkLeaks makes the test fail, at its very end, if a goroutine of a
// Client or of mellium is still running (mellium's deadline watchers end
// just after their session's calls return: a moment is allowed). Call it
// first, so that it runs after every other cleanup.
func checkLeaks(t *testing.T) { t.Cleanup(func() { noGoroutinesLeft(t) }) }

func noGoroutinesLeft(t *testing.T) {
	t.Helper()
	var left string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		left = ""
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "mellium.im/") || strings.Contains(g, "voipbot/xmpp.(*Client)") || strings.Contains(g, "voipbot/xmpp.(*inbox)") {
				left += g + "\n\n"
			}
		}
		if left == "" {
			return
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling: a goroutine's end sends no event
	}
	require.Fail(t, "goroutines left after Run returned", "%s", left)
}

// proxy forwards loopback connections to target; Cut drops every
// connection, Freeze makes the current ones a dead link (bytes vanish),
// and accepted gets a token per connection.
type proxy struct {
	ln       net.Listener
	target   string
	accepted chan time.Time
	mu       sync.Mutex
	links    []*link
	wg       sync.WaitGroup
}

type link struct {
	a, b   net.Conn
	frozen atomic.Bool
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: target, accepted: make(chan time.Time, 256)}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = p.ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		a, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted <- time.Now()
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = a.Close()
			continue
		}
		l := &link{a: a, b: b}
		p.mu.Lock()
		p.links = append(p.links, l)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(l, l.b, l.a)
		go p.pipe(l, l.a, l.b)
	}
}

func (p *proxy) pipe(l *link, dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			_ = src.Close()
			_ = dst.Close()
			return
		}
	}
}

// Cut closes every connection (both sides: a reset link).
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		_ = l.a.Close()
		_ = l.b.Close()
	}
	p.links = nil
}

// Freeze drops whatever the current connections carry from now on, in
// both directions, and keeps them open: a dead link. New connections
// work.
func (p *proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		l.frozen.Store(true)
	}
}
