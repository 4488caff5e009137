package dendrite

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"text/template"
)

// configTemplate is the server's dendrite.yaml: SQLite files, media and the
// signing key in the state directory, registration only with the shared
// secret, no guests, no federation unless asked for, no rate limits, and
// warnings and errors logged to standard error.
var configTemplate = template.Must(template.New("dendrite.yaml").Parse(`version: 2
global:
  server_name: {{.ServerName}}
  private_key: {{.Dir}}/matrix_key.pem
  key_validity_period: 168h0m0s
  database:
    max_open_conns: 10
    max_idle_conns: 2
    conn_max_lifetime: -1
  disable_federation: {{if .Federation}}false{{else}}true{{end}}
  presence:
    enable_inbound: false
    enable_outbound: false
  jetstream:
    storage_path: {{.Dir}}/jetstream
    in_memory: {{if .DurableStreams}}false{{else}}true{{end}}
  server_notices:
    enabled: false
  report_stats:
    enabled: false
  dns_cache:
    enabled: false
app_service_api:
  disable_tls_validation: true
  config_files:
{{- range .Registrations}}
  - {{.}}
{{- end}}
client_api:
  registration_disabled: true
  registration_shared_secret: {{.SharedSecret}}
  guests_disabled: true
  rate_limiting:
    enabled: false
federation_api:
  database:
    connection_string: file:{{.Dir}}/federationapi.db
key_server:
  database:
    connection_string: file:{{.Dir}}/keyserver.db
media_api:
  database:
    connection_string: file:{{.Dir}}/mediaapi.db
  base_path: {{.Dir}}/media
room_server:
  database:
    connection_string: file:{{.Dir}}/roomserver.db
sync_api:
  database:
    connection_string: file:{{.Dir}}/syncapi.db
  search:
    enabled: false
user_api:
  bcrypt_cost: 4
  account_database:
    connection_string: file:{{.Dir}}/userapi.db
relay_api:
  database:
    connection_string: file:{{.Dir}}/relayapi.db
mscs:
  mscs: []
  database:
    connection_string: file:{{.Dir}}/mscs.db
logging:
- type: std
  level: warn
`))

// writeConfig writes dir/dendrite.yaml for opts (dir absolute) and returns
// its path. It is written at every start: the shared secret is new each
// time, and the file holds nothing else worth keeping.
func writeConfig(dir, secret string, opts Options) (string, error) {
	var cfg bytes.Buffer
	if err := configTemplate.Execute(&cfg, map[string]any{
		"ServerName": ServerName, "Dir": dir, "SharedSecret": secret, "Registrations": opts.AppserviceRegistrations,
		"Federation": opts.Federation, "DurableStreams": opts.DurableStreams,
	}); err != nil {
		return "", fmt.Errorf("dendrite: writing its config: %w", err)
	}
	path := dir + "/dendrite.yaml"
	if err := os.WriteFile(path, cfg.Bytes(), 0o600); err != nil {
		return "", fmt.Errorf("dendrite: writing its config: %w", err)
	}
	return path, nil
}

// ensureMatrixKey writes a fresh ed25519 signing key in Dendrite's PEM form
// to path, unless a key is there already: the server keeps its key, and so
// the signatures on its events, across starts.
func ensureMatrixKey(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("dendrite: generating its signing key: %w", err)
	}
	block := &pem.Block{Type: "MATRIX PRIVATE KEY", Headers: map[string]string{"Key-ID": "ed25519:test"}, Bytes: priv.Seed()}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("dendrite: writing its signing key: %w", err)
	}
	if _, err = f.Write(pem.EncodeToMemory(block)); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("dendrite: writing its signing key: %w", err)
	}
	if err = f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("dendrite: writing its signing key: %w", err)
	}
	return nil
}
