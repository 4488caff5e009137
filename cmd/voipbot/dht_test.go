package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/voipbot/voipbot/jami"
	"github.com/voipbot/voipbot/jami/dht"
	"github.com/voipbot/voipbot/store"
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

	// With the bot's database, the bot's own device signs (and whoami
	// shows its Jami ID).
	jami.KeyBits = 2048
	acc, err := jami.NewAccount("voipbot")
	require.NoError(t, err)
	archive, err := acc.Export("")
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(acc.DeviceKey)
	require.NoError(t, err)
	st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(dir, "voipbot.db")}, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, st.PutDHTNode(context.Background(), &store.DHTNode{NodeID: make([]byte, 20), AccountArchive: archive,
		KeyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
		CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: acc.DeviceCert.Raw}))}))
	require.NoError(t, st.Close())
	code, out, errOut = runCLI(t, dir, nil, "dht", "-listen", "127.0.0.1:0", "whoami")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "Jami ID       "+acc.ID().String())
	assert.Contains(t, out, acc.DeviceID().String()+" (the bot's device)")
	code, _, errOut = runCLI(t, dir, nil, "dht", "-listen", "127.0.0.1:0", "put-signed", "as-bot", "signed by the bot")
	require.Equal(t, 0, code, errOut)
	code, out, errOut = runCLI(t, dir, nil, "dht", "-listen", "127.0.0.1:0", "get", "as-bot")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "signed by "+acc.DeviceID().String())
	code, _, errOut = runCLI(t, dir, nil, "dht", "-bootstrap", "127.0.0.1:1", "-listen", "127.0.0.1:0", "-timeout", "5s", "get", "x")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no node answered")
}
