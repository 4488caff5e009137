package jamicall

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/voipbot/voipbot/jami/media"
	"github.com/voipbot/voipbot/voip"
)

// reportInterval is how often RTCP reports go to the Jami peer (RFC 3550
// asks for about 5 s).
const reportInterval = 5 * time.Second

// mediaLeg is a Jami call's media as the forwarder sees it: a PacketLeg of
// the session's streams, with the RTCP the session carries read and
// written here.
type mediaLeg struct {
	*voip.PacketLeg
	session *media.Session
	streams []*media.Stream // by PacketLeg stream index
	ssrcs   []atomic.Uint32 // the peer's SSRC of each stream, from its packets
	log     zerolog.Logger
	// onKeyframe asks the peer for a keyframe by SIP INFO too (jamid acts
	// on that; it may ignore a PLI).
	onKeyframe func()
	stop       chan struct{}
	wg         sync.WaitGroup
	once       sync.Once
}

func newMediaLeg(id string, s *media.Session, onKeyframe func(), log zerolog.Logger) *mediaLeg {
	m := &mediaLeg{session: s, log: log, onKeyframe: onKeyframe, stop: make(chan struct{})}
	for _, st := range s.Streams() {
		if !st.Rejected() {
			m.streams = append(m.streams, st)
		}
	}
	m.ssrcs = make([]atomic.Uint32, len(m.streams))
	ps := make([]voip.PacketStream, len(m.streams))
	for i, st := range m.streams {
		ps[i] = voip.PacketStream{
			Kind:                st.Kind,
			Codec:               st.Parameters(),
			SendPayloadType:     st.SendPayloadType,
			DTMFPayloadType:     st.DTMFPayloadType,
			SendDTMFPayloadType: st.SendDTMFPayloadType,
			ReadRTP: func(b []byte) (int, error) {
				n, err := st.ReadRTP(b)
				if err == nil && n >= 12 {
					m.ssrcs[i].Store(binary.BigEndian.Uint32(b[8:12]))
				}
				return n, err
			},
			WriteRTP: st.WriteRTP,
			ID:       id + "-" + st.Label,
			StreamID: id,
		}
		if st.Kind == webrtc.RTPCodecTypeVideo {
			ps[i].RequestKeyframe = func() { m.requestKeyframe(i) }
		}
	}
	m.PacketLeg = voip.NewPacketLeg(id, ps, voip.WithCloser(m.closeSession))
	for i, st := range m.streams {
		m.wg.Add(1)
		go m.readRTCP(i, st)
	}
	m.wg.Add(1)
	go m.report()
	return m
}

// readRTCP hands the peer's RTCP on stream i to the packet leg until the
// session closes.
func (m *mediaLeg) readRTCP(i int, st *media.Stream) {
	defer m.wg.Done()
	buf := make([]byte, 1500)
	for {
		pkts, err := st.ReadRTCP(buf)
		if err != nil {
			select {
			case <-m.stop:
				return
			default:
			}
			if errors.Is(err, media.ErrNotConnected) || errors.Is(err, media.ErrRejected) {
				return
			}
			// A packet that does not parse is dropped; a closed session
			// ends the loop above.
			continue
		}
		_ = m.HandleRTCP(i, pkts)
	}
}

// report sends our sender and receiver reports every few seconds.
func (m *mediaLeg) report() {
	defer m.wg.Done()
	t := time.NewTicker(reportInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			for i, pkts := range m.Reports(now) {
				if len(pkts) > 0 {
					_ = m.streams[i].WriteRTCP(pkts)
				}
			}
		}
	}
}

// requestKeyframe asks the peer for a keyframe on video stream i: an RTCP
// PLI, and the SIP INFO jamid's own peers send.
func (m *mediaLeg) requestKeyframe(i int) {
	if ssrc := m.ssrcs[i].Load(); ssrc != 0 {
		_ = m.streams[i].WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	}
	if m.onKeyframe != nil {
		m.onKeyframe()
	}
}

// keyframeRequested: the peer asked us for a keyframe (SIP INFO).
func (m *mediaLeg) keyframeRequested() {
	for i, st := range m.streams {
		if st.Kind == webrtc.RTPCodecTypeVideo {
			m.KeyframeRequested(i)
		}
	}
}

// closeSession is the packet leg's closer: the RTCP loops stop and the
// session closes.
func (m *mediaLeg) closeSession() error {
	var err error
	m.once.Do(func() {
		close(m.stop)
		err = m.session.Close()
		m.wg.Wait()
	})
	return err
}
