//go:build linux

package janus

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/voipbot/voipbot/internal/testbed/netns"
)

const (
	echoClients   = 3
	echoPackets   = 100
	echoMinEchoed = 90
	payloadSize   = 160
	opusPT        = 111
)

// TestEchoCalls runs Janus and three concurrent pion clients through its
// echotest, each checking that it gets its own packets back.
func TestEchoCalls(t *testing.T) {
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("this test needs Debian's janus at %s (apt-get install janus): %v", Binary, err)
	}
	begin := time.Now()
	link, err := netns.Create()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, link.Delete()) })
	srv, err := Start(t.TempDir(), link)
	require.NoError(t, err)
	t.Logf("janus %s (pid %d, ICE on %s) ready in %s", srv.URL, srv.PID(), srv.ICEAddress, time.Since(begin).Round(time.Millisecond))
	// Stop is idempotent: this only matters when the test fails early.
	t.Cleanup(func() { _ = srv.Stop() })

	api, err := clientAPI(srv)
	require.NoError(t, err)
	client := NewClient(srv.URL)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var g errgroup.Group
	echoed := make([]int, echoClients)
	for i := range echoClients {
		g.Go(func() error {
			n, err := runEchoClient(ctx, api, client, byte(i))
			echoed[i] = n
			if err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("%v\n%s", err, srv.LogTail())
	}
	for i, n := range echoed {
		t.Logf("client %d: %d of %d packets echoed", i, n, echoPackets)
		require.GreaterOrEqual(t, n, echoMinEchoed, "client %d echoed packets", i)
	}

	pid := srv.PID()
	require.NoError(t, srv.Stop())
	require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "janus (pid %d) still exists after Stop", pid)
}

// clientAPI builds pion clients that offer Opus only and gather host
// candidates on srv's ICE address only.
func clientAPI(srv *Server) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: opusCapability(),
		PayloadType:        opusPT,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	srv.ConfigureClient(&se)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

func opusCapability() webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
}

// payload is packet seq of client id: the sequence number, the client, and a
// pattern that a mixed-up echo would not reproduce.
func payload(id byte, seq int) []byte {
	p := make([]byte, payloadSize)
	binary.BigEndian.PutUint16(p, uint16(seq))
	p[2] = id
	for j := 3; j < len(p); j++ {
		p[j] = byte(j) ^ id
	}
	return p
}

// runEchoClient makes one echo call and returns how many of its packets came
// back intact.
func runEchoClient(ctx context.Context, api *webrtc.API, client *Client, id byte) (echoed int, err error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return 0, fmt.Errorf("creating the PeerConnection: %w", err)
	}
	defer pc.Close()

	track, err := webrtc.NewTrackLocalStaticRTP(opusCapability(), "audio", fmt.Sprintf("echo-client-%d", id))
	if err != nil {
		return 0, err
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		return 0, fmt.Errorf("adding the track: %w", err)
	}
	// RTCP must be read for the interceptors to run; the reads end when
	// the PeerConnection closes.
	go drainRTCP(sender.Read)

	var (
		mu       sync.Mutex
		got      = make(map[uint16]bool)
		allEcho  = make(chan struct{})
		failed   = make(chan webrtc.PeerConnectionState, 1)
		connect  = make(chan struct{})
		onceConn sync.Once
	)
	pc.OnTrack(func(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
		go drainRTCP(receiver.Read)
		want := payload(id, 0)
		for {
			pkt, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			p := pkt.Payload
			if len(p) != payloadSize || p[2] != id || string(p[3:]) != string(want[3:]) {
				continue // not ours, or damaged: not counted
			}
			seq := binary.BigEndian.Uint16(p)
			mu.Lock()
			if !got[seq] && int(seq) < echoPackets {
				got[seq] = true
				if len(got) == echoPackets {
					close(allEcho)
				}
			}
			mu.Unlock()
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			onceConn.Do(func() { close(connect) })
		case webrtc.PeerConnectionStateFailed:
			select {
			case failed <- s:
			default:
			}
		}
	})

	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return 0, fmt.Errorf("creating the offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err = pc.SetLocalDescription(offer); err != nil {
		return 0, fmt.Errorf("setting the offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return 0, fmt.Errorf("gathering candidates: %w", ctx.Err())
	}

	answer, hangup, err := client.EchoCall(ctx, pc.LocalDescription().SDP)
	if err != nil {
		return 0, err
	}
	defer func() {
		if herr := hangup(context.WithoutCancel(ctx)); herr != nil && err == nil {
			err = fmt.Errorf("hanging up: %w", herr)
		}
	}()
	if err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return 0, fmt.Errorf("setting the answer: %w\n%s", err, answer)
	}
	select {
	case <-connect:
	case s := <-failed:
		return 0, fmt.Errorf("PeerConnection %s; answer:\n%s", s, answer)
	case <-ctx.Done():
		return 0, fmt.Errorf("connecting: %w; answer:\n%s", ctx.Err(), answer)
	}

	// 20 ms pacing, as a real Opus sender.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for seq := range echoPackets {
		if err = track.WriteRTP(&rtp.Packet{
			Header: rtp.Header{
				Version:        2,
				PayloadType:    opusPT,
				SequenceNumber: uint16(seq),
				Timestamp:      uint32(seq * 960),
			},
			Payload: payload(id, seq),
		}); err != nil {
			return 0, fmt.Errorf("sending packet %d: %w", seq, err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	// Echoes still in flight get a second after the last send.
	select {
	case <-allEcho:
	case <-time.After(time.Second):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	mu.Lock()
	n := len(got)
	mu.Unlock()
	return n, nil
}

// drainRTCP reads RTCP until the reader fails (closed).
func drainRTCP(read func([]byte) (int, interceptor.Attributes, error)) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := read(buf); err != nil {
			return
		}
	}
}
