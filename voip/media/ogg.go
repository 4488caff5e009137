package media

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// oggPackets splits an Ogg stream into its packets, following the lacing
// values of each page, so that files written by any muxer (several Opus
// packets per page, packets spanning pages) play correctly.
type oggPackets struct {
	r       *bufio.Reader
	pending []byte   // a packet continued on the next page
	queue   [][]byte // complete packets of the current page
}

func newOggPackets(r io.Reader) *oggPackets { return &oggPackets{r: bufio.NewReader(r)} }

var errNotOgg = errors.New("not an Ogg stream")

// next returns the next packet, or io.EOF at the end.
func (o *oggPackets) next() ([]byte, error) {
	for len(o.queue) == 0 {
		if err := o.page(); err != nil {
			return nil, err
		}
	}
	p := o.queue[0]
	o.queue = o.queue[1:]
	return p, nil
}

func (o *oggPackets) page() error {
	var hdr [27]byte
	if _, err := io.ReadFull(o.r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("truncated Ogg page header: %w", err)
		}
		return err
	}
	if !bytes.Equal(hdr[:4], []byte("OggS")) || hdr[4] != 0 {
		return errNotOgg
	}
	lacing := make([]byte, hdr[26])
	if _, err := io.ReadFull(o.r, lacing); err != nil {
		return fmt.Errorf("truncated Ogg segment table: %w", err)
	}
	total := 0
	for _, l := range lacing {
		total += int(l)
	}
	body := make([]byte, total)
	if _, err := io.ReadFull(o.r, body); err != nil {
		return fmt.Errorf("truncated Ogg page: %w", err)
	}
	pos := 0
	for _, l := range lacing {
		o.pending = append(o.pending, body[pos:pos+int(l)]...)
		pos += int(l)
		if l < 255 { // a lacing value under 255 ends a packet
			o.queue = append(o.queue, o.pending)
			o.pending = nil
		}
	}
	return nil
}
