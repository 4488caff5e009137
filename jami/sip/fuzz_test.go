package sip

import (
	"bytes"
	"io"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// feed is a stream that yields data in chunks, then EOF; writes vanish.
// A NUL byte in data is a pause: the reads after it wait until the
// callbacks of what came before ran, so a seed's ACK finds the dialog its
// INVITE made.
type feed struct {
	mu    sync.Mutex
	data  []byte
	chunk int
	c     *Conn
}

func (f *feed) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.data) > 0 && f.data[0] == 0 {
		f.data = f.data[1:]
		ran := make(chan struct{})
		f.c.cb.push(func() { close(ran) })
		select {
		case <-ran:
		case <-f.c.done: // cannot happen while we read, but never hang
		}
	}
	if len(f.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), f.chunk, len(f.data))
	if i := bytes.IndexByte(f.data[:n], 0); i >= 0 {
		n = i
	}
	copy(p, f.data[:n])
	f.data = f.data[n:]
	return n, nil
}

func (f *feed) Write(p []byte) (int, error) { return len(p), nil }
func (f *feed) Close() error                { return nil }

// FuzzConnInput feeds arbitrary bytes to a Conn, cut in chunks of the
// first byte's size, answering the calls it sees so the dialog code runs
// too. It must neither panic nor hang.
func FuzzConnInput(f *testing.F) {
	newToTag = func() string { return "fuzztag" } // the seeds' dialogs use it
	f.Fuzz(func(t *testing.T, data []byte) {
		chunk := 1 << 20
		if len(data) > 0 {
			chunk = int(data[0])%64 + 1
			if data[0] >= 128 {
				chunk = 1 << 20
			}
			data = data[1:]
		}
		h := Handler{
			OnReInvite: func(offer []byte) ([]byte, error) { return offer, nil },
			OnInfo:     func(_ string, body []byte) { ParseMediaControl(body) },
		}
		fd := &feed{chunk: chunk}
		fd.mu.Lock() // until fd.c is set
		c := NewConn(fd, Config{
			LocalAccount: accountB, LocalDevice: deviceB, PeerAccount: accountA,
			Log: zerolog.Nop(),
			OnInvite: func(ic *IncomingCall) {
				if len(ic.Offer)%2 == 1 {
					_ = ic.Ringing()
					_ = ic.Reject(486, "Busy Here")
					return
				}
				if d, err := ic.accept([]byte(answerSDP)); err == nil {
					d.SetHandler(h)
				}
			},
		})
		fd.c, fd.data = c, data
		fd.mu.Unlock()
		<-c.Done()
	})
}
