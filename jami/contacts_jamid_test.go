//go:build linux

package jami_test

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/internal/testbed/dhtnode"
	"github.com/voipbot/voipbot/internal/testbed/jamid"
	"github.com/voipbot/voipbot/jami"
)

// logBuffer keeps the service's log for the test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// contactsBed is a jamid account and the bot on one local DHT, the bot's
// log kept.
type contactsBed struct {
	d       *jamid.Daemon
	jamiAcc string
	jamiID  string
	svc     *jami.Service
	log     *logBuffer
}

func newContactsBed(t *testing.T, ctx context.Context, allowJamid bool) *contactsBed {
	t.Helper()
	jamid.RequireInstalled(t)
	n := dhtnode.NewTestNetwork(t)
	require.NoError(t, jamid.DisableIPv6(n.Link))
	peer, err := n.Start(ctx, dhtnode.Options{NoRateLimit: true})
	require.NoError(t, err)
	b := &contactsBed{log: &logBuffer{}}
	b.d = jamid.NewTestDaemon(t, ctx, jamid.Options{Link: n.Link})
	b.jamiAcc, err = b.d.AddAccount(ctx, jamid.LoopbackAccount(peer.Addr().String()))
	require.NoError(t, err)
	b.jamiID, err = b.d.JamiID(ctx, b.jamiAcc)
	require.NoError(t, err)

	jami.KeyBits = 2048
	c := jami.Config{
		Enabled: true, Listen: netip.AddrPortFrom(n.HostIP, 0).String(), Bootstrap: []string{peer.Addr().String()},
		ICEAddresses: []string{n.HostIP.String()},
	}
	if allowJamid {
		c.Allow = []string{b.jamiID}
	}
	w := io.MultiWriter(zerolog.NewTestWriter(t), b.log)
	b.svc, err = jami.Start(ctx, c, jami.NewMemStore(), zerolog.New(w).Level(zerolog.DebugLevel))
	require.NoError(t, err)
	t.Cleanup(func() { b.svc.Stop(context.Background()) })
	select {
	case <-b.svc.Ready():
	case <-ctx.Done():
		t.Fatal("the service did not join the DHT")
	}
	require.NoError(t, b.d.WaitRegistered(ctx, b.jamiAcc))
	require.NoError(t, b.d.WaitDeviceAnnounced(ctx, b.jamiAcc))
	return b
}

// contact is the bot's stored contact of jamid's account, if any.
func (b *contactsBed) contact(t *testing.T) *jami.Contact {
	t.Helper()
	all, err := b.svc.Contacts(context.Background())
	require.NoError(t, err)
	for _, c := range all {
		if c.Account == b.jamiID {
			return &c
		}
	}
	return nil
}

// TestJamidInvitesUs: a jamid user adds the bot (sendTrustRequest, as a
// client does with the user's vCard): the bot, which jami.allow lets jamid's
// account call, accepts, and jamid shows the bot as a confirmed contact,
// with the conversation it made.
func TestJamidInvitesUs(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b := newContactsBed(t, ctx, true)
	bot := b.svc.AccountID().String()
	vcard := []byte("BEGIN:VCARD\r\nVERSION:2.1\r\nFN:Alice\r\nEND:VCARD\r\n")
	require.NoError(t, b.d.SendTrustRequest(ctx, b.jamiAcc, bot, vcard))
	details, err := b.d.ContactDetails(ctx, b.jamiAcc, bot)
	require.NoError(t, err)
	require.Equal(t, "false", details[jamid.ContactConfirmed], "jamid's side before the bot answers: %v", details)
	conv := details[jamid.ContactConversationID]
	require.NotEmpty(t, conv, "13.7.0 makes a 1:1 swarm for the contact")

	details, err = b.d.WaitContactConfirmed(ctx, b.jamiAcc, bot)
	require.NoError(t, err, "bot log:\n%s", b.log.String())
	assert.Equal(t, conv, details[jamid.ContactConversationID], "the conversation jamid made is kept")
	c := b.contact(t)
	require.NotNil(t, c)
	assert.True(t, c.Confirmed)
	assert.Equal(t, conv, c.ConversationID, "the bot keeps the request's conversation id")
	// (The bot logs once every device took its confirmation: jamid may
	// have it before.)
	require.Eventually(t, func() bool { return strings.Contains(b.log.String(), "Accepted a Jami trust request") },
		30*time.Second, 50*time.Millisecond)
	t.Logf("jamid: contact %v, signals %v", details, b.d.ContactSignals(b.jamiAcc, bot))
}

// TestWeInviteJamid: the bot invites the jamid account; jamid signals the
// request (without conversation: the bot makes no swarm), its user
// accepts, and the confirmation makes the bot's contact confirmed.
func TestWeInviteJamid(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b := newContactsBed(t, ctx, false) // invitations do not need jami.allow
	bot := b.svc.AccountID().String()
	id, err := jami.ParseID(b.jamiID)
	require.NoError(t, err)
	require.NoError(t, b.svc.SendTrustRequest(ctx, id))
	require.NotNil(t, b.contact(t))
	assert.False(t, b.contact(t).Confirmed)

	req, err := b.d.WaitIncomingTrustRequest(ctx, b.jamiAcc, bot)
	require.NoError(t, err, "bot log:\n%s", b.log.String())
	assert.Empty(t, req.ConversationID)
	reqs, err := b.d.TrustRequests(ctx, b.jamiAcc)
	require.NoError(t, err)
	require.Len(t, reqs, 1)
	assert.Equal(t, bot, reqs[0]["from"])

	require.NoError(t, b.d.AcceptTrustRequest(ctx, b.jamiAcc, bot))
	details, err := b.d.WaitContactConfirmed(ctx, b.jamiAcc, bot)
	require.NoError(t, err)
	t.Logf("jamid: contact %v", details)
	require.Eventually(t, func() bool { c := b.contact(t); return c != nil && c.Confirmed }, time.Minute, 100*time.Millisecond,
		"jamid's confirmation reaches the bot; bot log:\n%s", b.log.String())
}

// TestJamidNotAllowedIsIgnored: a trust request from an account jami.allow
// does not list is logged and dropped: jamid's contact stays unconfirmed
// and the bot keeps nothing.
func TestJamidNotAllowedIsIgnored(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b := newContactsBed(t, ctx, false)
	bot := b.svc.AccountID().String()
	require.NoError(t, b.d.SendTrustRequest(ctx, b.jamiAcc, bot, nil))
	require.Eventually(t, func() bool { return strings.Contains(b.log.String(), "the account is not in jami.allow") },
		time.Minute, 100*time.Millisecond, "the bot logs the request it drops")
	assert.Contains(t, b.log.String(), b.jamiID)
	// The log line is the handler's last step on this path: it stored
	// nothing and sent no confirmation, so there is nothing to wait for.
	assert.Nil(t, b.contact(t))
	details, err := b.d.ContactDetails(ctx, b.jamiAcc, bot)
	require.NoError(t, err)
	assert.Equal(t, "false", details[jamid.ContactConfirmed])
	for _, s := range b.d.ContactSignals(b.jamiAcc, bot) {
		assert.False(t, s.Confirmed)
	}
}
