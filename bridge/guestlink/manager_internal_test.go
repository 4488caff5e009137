package guestlink

import (
	"context"
	"errors"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCreateFailsWithoutRandomness(t *testing.T) {
	boom := errors.New("no entropy")
	m := NewManager(nil, nil)
	m.rand = iotest.ErrReader(boom)
	_, _, err := m.Create(context.Background(), Spec{Room: "!a:example.com", CreatedBy: "@alice:example.com", TTL: time.Hour})
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "drawing a link token")
}

func TestValidID(t *testing.T) {
	require.True(t, validID("0123456789"))
	require.True(t, validID("abcdefabcd"))
	for _, s := range []string{"", "012345678", "01234567890", "ABCDEFABCD", "g123456789", "012345678 "} {
		require.False(t, validID(s), "%q", s)
	}
}
