package qbsignal

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUserJID(t *testing.T) {
	require.Equal(t, "1001-77@localhost", UserJID(1001, 77, "localhost"))
	require.Equal(t, "18446744073709551615-1@chat.example.org", UserJID(1<<64-1, 1, "chat.example.org"))
}

func TestUserID(t *testing.T) {
	for jid, want := range map[string]uint64{
		"1001-77@localhost":          1001,
		"1001-77@localhost/0jv91-1w": 1001, // a full JID as Prosody gives it in from
		"1001@localhost":             1001, // no application id: parseInt reads the node
		"0042-77@localhost":          42,
	} {
		got, err := UserID(jid)
		require.NoError(t, err, jid)
		require.Equal(t, want, got, jid)
	}
	for _, jid := range []string{
		"localhost",                        // no node: the SDK's null
		"alice-77@localhost",               // not a number
		"12x-77@localhost",                 // parseInt would read 12
		"-77@localhost",                    // empty
		" 12-77@localhost",                 // parseInt would skip the space
		"+12-77@localhost",                 // or take the sign
		"18446744073709551616-1@localhost", // over 64 bits
	} {
		_, err := UserID(jid)
		require.ErrorIs(t, err, ErrBadID, jid)
	}
}

func TestAppID(t *testing.T) {
	app, err := AppID("1001-77@localhost/res")
	require.NoError(t, err)
	require.Equal(t, uint64(77), app)
	for _, jid := range []string{"1001@localhost", "1001-x@localhost", "localhost"} {
		_, err := AppID(jid)
		require.ErrorIs(t, err, ErrBadID, jid)
	}
}
