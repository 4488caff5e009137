package xmpp

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{JID: "1001-77@chat.example.org", Password: "pw"}
	require.NoError(t, ok.Validate())

	c := ok
	c.JID, c.Password = "", ""
	require.EqualError(t, c.Validate(), "xmpp.jid: missing\nxmpp.password: missing")

	c = ok
	c.JID = "chat.example.org"
	require.ErrorContains(t, c.Validate(), "xmpp.jid: \"chat.example.org\" has no user part")
	c.JID = "1001-77@chat.example.org/bot"
	require.ErrorContains(t, c.Validate(), "has a resource (set xmpp.resource instead)")

	c = ok
	c.Server = "chat.example.org"
	require.ErrorContains(t, c.Validate(), `xmpp.server: "chat.example.org" is not host:port`)

	c = ok
	c.ReconnectMin, c.ReconnectMax = time.Minute, time.Second
	require.ErrorContains(t, c.Validate(), "xmpp.reconnect_min: 1m0s is over xmpp.reconnect_max 1s")
	c.ReconnectMin, c.ReconnectMax, c.PingTimeout = 0, 0, -time.Second
	require.ErrorContains(t, c.Validate(), "xmpp.ping_timeout: -1s is negative")
}

// Plaintext is for a server on the same host only.
func TestConfigPlaintextOnlyOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		jid, server string
		ok          bool
	}{
		{"1001-77@localhost", "", true},
		{"1001-77@chat.example.org", "127.0.0.1:5222", true},
		{"1001-77@chat.example.org", "127.8.9.10:5222", true},
		{"1001-77@chat.example.org", "[::1]:5222", true},
		{"1001-77@chat.example.org", "[::ffff:127.0.0.1]:5222", true},
		{"1001-77@chat.example.org", "LocalHost.:15222", true},
		{"1001-77@chat.example.org", "", false},
		{"1001-77@localhost", "192.0.2.7:5222", false},
		{"1001-77@localhost", "[2001:db8::1]:5222", false},
		{"1001-77@localhost", "chat.example.org:5222", false}, // a name is not resolved to decide
		{"1001-77@localhost", "localhost.example.org:5222", false},
	} {
		c := Config{JID: tc.jid, Server: tc.server, Password: "pw", AllowPlaintext: true}
		err := c.Validate()
		if tc.ok {
			require.NoError(t, err, "%s via %q", tc.jid, tc.server)
			continue
		}
		require.ErrorIs(t, err, ErrPlaintextRefused, "%s via %q", tc.jid, tc.server)
		require.ErrorContains(t, err, "xmpp.allow_plaintext")
		require.ErrorContains(t, err, "not on loopback")
		_, err = New(c, HandlerFuncs{})
		require.ErrorIs(t, err, ErrPlaintextRefused, "New refuses it too")
	}
}

func TestNewDefaults(t *testing.T) {
	c, err := New(Config{JID: "1001-77@chat.example.org", Password: "pw", Resource: "bot"}, HandlerFuncs{})
	require.NoError(t, err)
	require.Equal(t, "chat.example.org:5222", c.server)
	require.Equal(t, "1001-77@chat.example.org/bot", c.addr.String())
	require.Equal(t, DefaultReconnectMin, c.cfg.ReconnectMin)
	require.Equal(t, DefaultReconnectMax, c.cfg.ReconnectMax)
	require.False(t, c.Connected())
	require.ErrorIs(t, c.Send(t.Context(), c.addr, everySignal()), ErrNotConnected)

	_, err = New(Config{JID: "1001-77@chat.example.org", Password: "pw"}, nil)
	require.Error(t, err)
}
