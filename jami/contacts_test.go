package jami

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/jami/dht"
)

// syncBuffer is a log that tests read while services write it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// contactOf is the stored contact of account, if any.
func contactOf(t *testing.T, s *Service, account dht.InfoHash) *Contact {
	t.Helper()
	all, err := s.Contacts(context.Background())
	require.NoError(t, err)
	for _, c := range all {
		if c.Account == account.String() {
			return &c
		}
	}
	return nil
}

// Two bots on one DHT: an invitation to an account that allows the inviter
// is accepted and confirmed on both sides; one to an account that does not
// is logged and dropped, and stays an unconfirmed invitation.
func TestTrustRequestsBetweenBots(t *testing.T) {
	KeyBits = 2048
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	boot, err := dht.New(dht.Config{Listen4: "127.0.0.1:0", MaxPeerRequestsPerSec: -1}, zerolog.Nop())
	require.NoError(t, err)
	boot.Start(context.Background())
	defer boot.Close()
	start := func(allow []string, st Store, log *syncBuffer) *Service {
		cfg := Config{Enabled: true, Listen: "127.0.0.1:0", Bootstrap: []string{boot.Addr4().String()},
			ICEAddresses: []string{"127.0.0.1"}, Allow: allow}
		s, err := Start(ctx, cfg, st, zerolog.New(log).Level(zerolog.DebugLevel))
		require.NoError(t, err)
		t.Cleanup(func() { s.Stop(context.Background()) })
		select {
		case <-s.Ready():
		case <-ctx.Done():
			t.Fatal("a bot did not join the DHT")
		}
		return s
	}
	var logA, logB, logC syncBuffer
	storeA := NewMemStore()
	a := start(nil, storeA, &logA)
	b := start([]string{"*"}, NewMemStore(), &logB)
	c := start(nil, NewMemStore(), &logC)
	defer func() {
		if t.Failed() {
			t.Logf("A:\n%s\nB:\n%s\nC:\n%s", logA.String(), logB.String(), logC.String())
		}
	}()

	require.ErrorContains(t, a.SendTrustRequest(ctx, a.AccountID()), "own account")
	require.NoError(t, a.SendTrustRequest(ctx, b.AccountID()))
	invited := contactOf(t, a, b.AccountID())
	require.NotNil(t, invited)
	assert.False(t, invited.Confirmed, "an invitation until B answers")
	require.Eventually(t, func() bool {
		got := contactOf(t, b, a.AccountID())
		return got != nil && got.Confirmed
	}, 30*time.Second, 50*time.Millisecond, "B accepts A (jami.allow: *)")
	require.Eventually(t, func() bool {
		got := contactOf(t, a, b.AccountID())
		return got != nil && got.Confirmed
	}, 30*time.Second, 50*time.Millisecond, "B's confirmation reaches A")
	assert.Contains(t, logB.String(), "Accepted a Jami trust request")
	assert.Contains(t, logA.String(), "accepted the bot's trust request")

	require.NoError(t, a.SendTrustRequest(ctx, c.AccountID()))
	require.Eventually(t, func() bool {
		return strings.Contains(logC.String(), "the account is not in jami.allow")
	}, 30*time.Second, 50*time.Millisecond, "C logs the request it drops")
	assert.Contains(t, logC.String(), a.AccountID().String(), "naming the account")
	assert.Nil(t, contactOf(t, c, a.AccountID()), "C keeps no contact")
	// C's handler returned right after that log line, sending nothing.
	got := contactOf(t, a, c.AccountID())
	require.NotNil(t, got)
	assert.False(t, got.Confirmed, "no confirmation from C")

	// A second bot on A's store (A restarted) sends the unanswered
	// invitation again, and only that one.
	var logA2 syncBuffer
	a2 := start(nil, storeA, &logA2)
	require.Eventually(t, func() bool { return strings.Contains(logA2.String(), "Sent a Jami trust request") },
		30*time.Second, 50*time.Millisecond)
	assert.Contains(t, logA2.String(), c.AccountID().String())
	assert.NotContains(t, logA2.String(), `"account":"`+b.AccountID().String()+`","devices"`, "B is confirmed")
	all, err := a2.Contacts(ctx)
	require.NoError(t, err)
	assert.Len(t, all, 2)
}

// Before the DHT is joined there is nobody to invite; a banned account is
// never invited.
func TestSendTrustRequestBeforeJoining(t *testing.T) {
	KeyBits = 2048
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := Config{Enabled: true, Listen: "127.0.0.1:0", Bootstrap: []string{"127.0.0.1:9"}, Ban: []string{strings.Repeat("ab", 20)}}
	s, err := Start(ctx, cfg, NewMemStore(), zerolog.Nop())
	require.NoError(t, err)
	defer s.Stop(ctx)
	id, err := ParseID(strings.Repeat("cd", 20))
	require.NoError(t, err)
	require.ErrorIs(t, s.SendTrustRequest(ctx, id), ErrNotConnected)
	banned, err := ParseID(strings.Repeat("ab", 20))
	require.NoError(t, err)
	require.ErrorContains(t, s.SendTrustRequest(ctx, banned), "jami.ban")
	all, err := s.Contacts(ctx)
	require.NoError(t, err)
	assert.Empty(t, all, "nothing stored")
}
