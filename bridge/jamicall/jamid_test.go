//go:build linux

package jamicall_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/bridge/jamicall"
	"github.com/voipbot/voipbot/bridge/leg"
	"github.com/voipbot/voipbot/internal/testbed/dhtnode"
	"github.com/voipbot/voipbot/internal/testbed/jamid"
	"github.com/voipbot/voipbot/jami"
	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/voip/media"
)

// jamidBed is a jamid account and the bot's Jami service and leg manager on
// one local DHT; the bot answers every call and hands its media to the test.
type jamidBed struct {
	d       *jamid.Daemon
	jamiAcc string
	jamiID  string
	svc     *jami.Service
	mgr     *jamicall.Manager
	host    *probeHost
}

// probeHost answers calls and puts their media beside a probe.
type probeHost struct {
	ev   *events
	rang chan *jamicall.Leg
}

func (h *probeHost) Ringing(l *jamicall.Leg) leg.Events {
	h.rang <- l
	l.Answer()
	return h.ev
}
func (h *probeHost) Text(*jamicall.Leg, string) {}

func newJamidBed(t *testing.T, ctx context.Context) *jamidBed {
	t.Helper()
	jamid.RequireInstalled(t)
	n := dhtnode.NewTestNetwork(t)
	require.NoError(t, jamid.DisableIPv6(n.Link))
	peer, err := n.Start(ctx, dhtnode.Options{NoRateLimit: true})
	require.NoError(t, err)
	b := &jamidBed{}
	b.d = jamid.NewTestDaemon(t, ctx, jamid.Options{Link: n.Link, CaptureToneHz: 660, RecordPlayback: true})
	b.jamiAcc, err = b.d.AddAccount(ctx, jamid.LoopbackAccount(peer.Addr().String()))
	require.NoError(t, err)
	b.jamiID, err = b.d.JamiID(ctx, b.jamiAcc)
	require.NoError(t, err)
	jami.KeyBits = 2048
	b.svc, err = jami.Start(ctx, jami.Config{
		Enabled: true, Listen: netip.AddrPortFrom(n.HostIP, 0).String(), Bootstrap: []string{peer.Addr().String()},
		ICEAddresses: []string{n.HostIP.String()}, Allow: []string{"*"},
	}, jami.NewMemStore(), zerolog.Nop())
	require.NoError(t, err)
	select {
	case <-b.svc.Ready():
	case <-ctx.Done():
		t.Fatal("the service did not join the DHT")
	}
	b.host = &probeHost{ev: newEvents(), rang: make(chan *jamicall.Leg, 4)}
	mctx, cancel := context.WithCancel(context.Background())
	b.mgr = jamicall.New(mctx, jamicall.Config{}, b.svc, b.host, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel))
	t.Cleanup(func() {
		b.mgr.Shutdown(context.Background())
		cancel()
		b.mgr.Wait()
		b.svc.Stop(context.Background())
		if t.Failed() {
			t.Logf("jamid log:\n%s", b.d.LogTail(6000))
		}
	})
	require.NoError(t, b.d.WaitRegistered(ctx, b.jamiAcc))
	return b
}

// TestJamidCallsBotMedia: jamid calls the bot with a tone as its
// microphone (jamid.Options.CaptureToneHz); the call is CURRENT on jamid,
// and what jamid sends reaches the bot decrypted: Opus packets of a sound,
// not silence frames. Then jamid changes its audio source, which it does
// by a re-INVITE with a new ICE session: the bot takes the ICE restart,
// and the sound goes on in the same leg. A key pressed on jamid reaches
// the leg's conversation.
func TestJamidCallsBotMedia(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b := newJamidBed(t, ctx)
	begin := time.Now()
	callID, err := b.d.PlaceCallWithMedia(ctx, b.jamiAcc, b.svc.AccountID().String(), jamid.AudioMedia())
	require.NoError(t, err)
	m := b.host.ev.waitMedia(t, ctx)
	st, err := b.d.WaitCallState(ctx, b.jamiAcc, callID, "CURRENT", "OVER", "FAILURE")
	require.NoError(t, err)
	require.Equal(t, "CURRENT", st.State)
	p := newProbe()
	fw := voip.NewForwarder("probe", zerolog.Nop())
	require.NoError(t, fw.Add(m))
	require.NoError(t, fw.Add(p.leg))
	big := 0
	for big < 50 {
		select {
		case pkt := <-p.out:
			if len(pkt.Payload) > 20 {
				if big == 0 {
					t.Logf("setup jamid → bot, dial to the bot's first sound packet from jamid: %s", time.Since(begin).Round(time.Millisecond))
				}
				big++
			}
		case <-ctx.Done():
			t.Fatalf("only %d sound packets from jamid; stats %+v", big, m.Stats())
		}
	}
	// A key pressed on jamid comes as its SIP INFO and is reported to the
	// conversation, which sends it on as RFC 4733 events.
	require.NoError(t, b.d.PlayDTMF(ctx, "7"))
	select {
	case k := <-b.host.ev.dtmf:
		require.Equal(t, '7', k.digit)
		t.Logf("jamid's key: %q for %s", k.digit, k.d)
	case <-ctx.Done():
		t.Fatal("jamid's key never reached the leg")
	}
	require.NoError(t, b.d.RequestMediaChange(ctx, b.jamiAcc, callID, jamid.AudioFileMedia("/dev/null")))
	drain := len(p.out)
	for range drain {
		<-p.out
	}
	for big = 0; big < 50; {
		select {
		case pkt := <-p.out:
			if len(pkt.Payload) > 20 {
				big++
			}
		case <-ctx.Done():
			t.Fatalf("only %d sound packets from jamid after its ICE restart; stats %+v", big, m.Stats())
		}
	}
	st, err = b.d.WaitCallState(ctx, b.jamiAcc, callID, "CURRENT", "OVER", "FAILURE")
	require.NoError(t, err)
	require.Equal(t, "CURRENT", st.State, "after the media change")

	// What jamid decodes of ours is proved by content in e2e (jamid's
	// playback, TestJamiBridge*): nothing here sends it sound.
	require.NoError(t, b.d.HangUp(ctx, b.jamiAcc, callID))
	select {
	case e := <-b.host.ev.ended:
		t.Logf("ended: %+v", e)
	case <-ctx.Done():
		t.Fatal("the bot's leg did not end on jamid's hangup")
	}
	require.NoError(t, p.leg.Close())
	require.NoError(t, fw.Close())
}

// firstSound is a tap that closes its channel at the first Opus packet of
// a sound (longer than a silence frame).
type firstSound struct {
	once sync.Once
	ch   chan struct{}
}

func (f *firstSound) Packet(_ *voip.InboundTrack, _ *rtp.Header, payload []byte) {
	if len(payload) > 20 {
		f.once.Do(func() { close(f.ch) })
	}
}
func (f *firstSound) Close() error { return nil }

// TestBotCallsJamidMedia: the bot calls a jamid account, which accepts
// with audio; the call is CURRENT on jamid, sound packets from jamid reach
// the bot decrypted (their first one times the setup; that they carry
// jamid's own tone is proved by content in e2e, where a browser decodes
// them), and jamid plays the bot's 440 Hz tone by content (jamid's
// microphone is 660 Hz, so this is not its echo; here the bot's own tone is
// the thing under test). The bot hangs up and the call is over on jamid.
func TestBotCallsJamidMedia(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b := newJamidBed(t, ctx)
	ev := newEvents()
	begin := time.Now()
	l, err := b.mgr.Place(b.jamiID, false, ev)
	require.NoError(t, err)
	l.Start()
	in, err := b.d.WaitIncomingCall(ctx, b.jamiAcc, b.svc.AccountID().String())
	require.NoError(t, err)
	rung := time.Since(begin)
	require.NoError(t, b.d.AcceptWithMedia(ctx, b.jamiAcc, in.CallID, jamid.AudioMedia()))
	m := ev.waitMedia(t, ctx)
	out := m.Outbound(webrtc.RTPCodecTypeAudio)
	require.NotNil(t, out, "the Jami leg sends audio")
	tone, err := media.Tone("bot-tone", webrtc.RTPCodecParameters{RTPCodecCapability: out.Codec()}, 440)
	require.NoError(t, err)
	sound := &firstSound{ch: make(chan struct{})}
	fw := voip.NewForwarder("bot-jamid", zerolog.Nop())
	fw.Tap(m, sound)
	require.NoError(t, fw.Add(m))
	require.NoError(t, fw.Add(tone))
	select {
	case <-sound.ch:
	case <-ctx.Done():
		t.Fatalf("no sound from jamid; stats %+v", m.Stats())
	}
	t.Logf("setup bot → jamid: jamid rung after %s; dial to the bot's first sound packet from jamid %s (jamid accepts at once)",
		rung.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	st, err := b.d.WaitCallState(ctx, b.jamiAcc, in.CallID, "CURRENT", "OVER", "FAILURE")
	require.NoError(t, err)
	require.Equal(t, "CURRENT", st.State)
	heard, err := b.d.WaitHears(ctx, 0, 440, 20)
	require.NoError(t, err)
	t.Logf("jamid plays %v, %s after dialling", heard, time.Since(begin).Round(time.Millisecond))

	l.Hangup(leg.Hangup, "test over")
	select {
	case e := <-ev.ended:
		require.Equal(t, leg.ByBot, e.By)
	case <-ctx.Done():
		t.Fatal("the bot's leg did not end")
	}
	_, err = b.d.WaitCallState(ctx, b.jamiAcc, in.CallID, "OVER")
	require.NoError(t, err)
	require.NoError(t, tone.Close())
	require.NoError(t, fw.Close())
}
