package main

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/jami/dht"
)

// The dht commands against a Go node on loopback (the interop tests drive
// them against dhtnode).
func TestDHTCommands(t *testing.T) {
	node, err := dht.New(dht.Config{Listen4: "127.0.0.1:0"}, zerolog.Nop())
	require.NoError(t, err)
	node.Start(context.Background())
	t.Cleanup(func() { _ = node.Close() })
	boot := node.Addr4().String()
	dir := t.TempDir()
	run := func(args ...string) (int, string, string) {
		return runCLI(t, dir, nil, append([]string{"dht", "-bootstrap", boot, "-listen", "127.0.0.1:0", "-timeout", "20s", "-key-bits", "2048"}, args...)...)
	}

	code, out, errOut := run("ping", boot)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "is node "+node.ID().String())

	code, out, errOut = run("put", "cli-key", "hello")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "stored on 1 node(s)")
	code, out, errOut = run("get", "cli-key")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, `plain: "hello"`)

	code, _, errOut = run("put-signed", "cli-signed", "signed")
	require.Equal(t, 0, code, errOut)
	code, out, errOut = run("get", "cli-signed")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `signed by [0-9a-f]{40} seq 0: "signed"`, out)

	code, _, errOut = run("get")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "get takes 1 argument(s)")
	code, _, errOut = runCLI(t, dir, nil, "dht", "-listen", "127.0.0.1:0", "get", "x")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "-bootstrap host:port is needed")

	// Without -bootstrap, the configuration's jami.bootstrap.
	writeConfig(t, dir, "jami:\n  bootstrap: [\""+boot+"\"]\n")
	code, out, errOut = runCLI(t, dir, nil, "dht", "-listen", "127.0.0.1:0", "get", "cli-key")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, `plain: "hello"`)
	code, _, errOut = runCLI(t, dir, nil, "dht", "-bootstrap", "127.0.0.1:1", "-listen", "127.0.0.1:0", "-timeout", "5s", "get", "x")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no node answered")
}
