package jami

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	require.NoError(t, (&Config{Listen: "0.0.0.0:4222", Bootstrap: []string{"bootstrap.jami.net:4222"}}).Validate())
	require.NoError(t, (&Config{Listen: "[::]:4222"}).Validate(), "off: no bootstrap needed")
	require.EqualError(t, (&Config{Enabled: true, Listen: "4222", Bootstrap: []string{"nohost"}}).Validate(),
		`jami.listen: "4222" is not host:port: address 4222: missing port in address
jami.bootstrap[0]: "nohost" is not host:port: address nohost: missing port in address`)
	require.ErrorContains(t, (&Config{Enabled: true, Listen: ":4222"}).Validate(), "jami.bootstrap: at least one node")
}
