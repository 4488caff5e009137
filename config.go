// Package voipbot holds the configuration of the voipbot program: one struct
// composed of each package's section, with the embedded example file as the
// single source of defaults.
package voipbot

import (
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/voipbot/voipbot/bridge"
	"github.com/voipbot/voipbot/jami"
	"github.com/voipbot/voipbot/matrix"
	"github.com/voipbot/voipbot/store"
	"github.com/voipbot/voipbot/voip"
	"github.com/voipbot/voipbot/web"
)

// ExampleConfig is config.example.yaml: every key, its default and what it
// does. `voipbot -e` writes it.
//
//go:embed config.example.yaml
var ExampleConfig []byte

// Config is the whole configuration file.
type Config struct {
	Matrix   matrix.Config `yaml:",inline"`
	Bridge   bridge.Config `yaml:",inline"`
	Media    voip.Config   `yaml:"media"`
	Jami     jami.Config   `yaml:"jami"`
	Database store.Config  `yaml:"database"`
	HTTP     web.Config    `yaml:"http"`
	Logging  LoggingConfig `yaml:"logging"`
}

// LoggingConfig is the logging section.
type LoggingConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// placeholders are the keys whose example value only shows the form of a
// real one: a value still equal to the example's is a mistake.
var placeholders = []struct{ key, hint string }{
	{"homeserver.url", "set it to your homeserver's client-server API URL"},
	{"bot.user_id", "set it to the bot's Matrix user ID"},
	{"encryption.pickle_key", "set it to a long random string (or let `voipbot -e` write a config with one generated)"},
}

// generatePlaceholder is replaced by a random value when voipbot writes the
// example config to a file.
const generatePlaceholder = "generate"

// Defaults is the configuration the example file describes.
func Defaults() (*Config, error) {
	var cfg Config
	if err := decode(ExampleConfig, "config.example.yaml", &cfg); err != nil {
		return nil, fmt.Errorf("the embedded example config is broken: %w", err)
	}
	return &cfg, nil
}

// Load reads the configuration file at path over the defaults, applies the
// VOIPBOT_ variables of environ, and validates the result. Every problem is
// reported, each naming its key.
func Load(path string, environ []string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(data, path, environ)
}

// Parse is Load on the file's contents; name is used in messages.
func Parse(data []byte, name string, environ []string) (*Config, error) {
	cfg, err := Defaults()
	if err != nil {
		return nil, err
	}
	if err = decode(data, name, cfg); err != nil {
		return nil, err
	}
	if err = applyEnv(cfg, environ); err != nil {
		return nil, err
	}
	if err = cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	leaves := flatten(reflect.ValueOf(c).Elem(), "")
	defaults, err := Defaults()
	if err != nil {
		return err
	}
	defaultLeaves := flatten(reflect.ValueOf(defaults).Elem(), "")
	for _, p := range placeholders {
		if p.key == "encryption.pickle_key" && !c.Matrix.Encryption.Enabled {
			continue
		}
		if v := leaves[p.key].Interface(); v == defaultLeaves[p.key].Interface() {
			errs = append(errs, fmt.Errorf("%s: still the example's placeholder %q: %s", p.key, v, p.hint))
		}
	}
	for _, err := range []error{
		c.Matrix.Validate(), c.Bridge.Validate(), c.Media.Validate(), c.Jami.Validate(), c.Database.Validate(), c.HTTP.Validate(), c.Logging.Validate(),
	} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Validate reports an unknown level or format.
func (l LoggingConfig) Validate() error {
	var errs []error
	switch l.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("logging.level: %q is not one of trace, debug, info, warn, error", l.Level))
	}
	switch l.Format {
	case "auto", "pretty", "json":
	default:
		errs = append(errs, fmt.Errorf("logging.format: %q is not one of auto, pretty, json", l.Format))
	}
	return errors.Join(errs...)
}

// WriteExample writes the example config to path, with every "generate"
// placeholder replaced by a fresh random value. It refuses to overwrite a
// file: a config holds secrets that must not change.
func WriteExample(path string) error {
	out, err := generateSecrets(ExampleConfig)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("writing example config: %s already exists; remove it first or write elsewhere", path)
	} else if err != nil {
		return fmt.Errorf("writing example config: %w", err)
	}
	if _, err = f.Write(out); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing example config to %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing example config to %s: %w", path, err)
	}
	return nil
}

// generateSecrets replaces each "key: generate" value with a random one.
func generateSecrets(example []byte) ([]byte, error) {
	lines := strings.Split(string(example), "\n")
	for i, line := range lines {
		key, value, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(value) != generatePlaceholder || strings.HasPrefix(strings.TrimSpace(key), "#") {
			continue
		}
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("generating %s: %w", strings.TrimSpace(key), err)
		}
		lines[i] = key + ": " + hex.EncodeToString(secret)
	}
	return []byte(strings.Join(lines, "\n")), nil
}

// decode reads YAML into cfg key by key, so that an unknown key or a value of
// the wrong type is reported with its full name and line.
func decode(data []byte, name string, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if doc.Kind == 0 { // empty file: all defaults
		return nil
	}
	var errs []error
	decodeNode(&doc, reflect.ValueOf(cfg).Elem(), "", name, &errs)
	return errors.Join(errs...)
}

func decodeNode(node *yaml.Node, v reflect.Value, path, name string, errs *[]error) {
	if node.Kind == yaml.DocumentNode {
		decodeNode(node.Content[0], v, path, name, errs)
		return
	}
	if v.Kind() != reflect.Struct {
		if err := node.Decode(v.Addr().Interface()); err != nil {
			*errs = append(*errs, fmt.Errorf("%s:%d: %s: %s", name, node.Line, path, yamlErrorText(err)))
		}
		return
	}
	if node.Tag == "!!null" {
		return // an empty section keeps its defaults
	}
	if node.Kind != yaml.MappingNode {
		what := path
		if what == "" {
			what = "the file"
		}
		*errs = append(*errs, fmt.Errorf("%s:%d: %s: expected a section of key: value lines", name, node.Line, what))
		return
	}
	fields := structFields(v)
	seen := map[string]bool{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		keyNode, valueNode := node.Content[i], node.Content[i+1]
		full := joinKey(path, keyNode.Value)
		if seen[keyNode.Value] {
			*errs = append(*errs, fmt.Errorf("%s:%d: %s: key appears twice", name, keyNode.Line, full))
			continue
		}
		seen[keyNode.Value] = true
		field, ok := fields[keyNode.Value]
		if !ok {
			*errs = append(*errs, fmt.Errorf("%s:%d: unknown key %q%s", name, keyNode.Line, full, suggest(keyNode.Value, fields)))
			continue
		}
		decodeNode(valueNode, field, full, name, errs)
	}
}

// yamlErrorText strips yaml.v3's "yaml: unmarshal errors:\n  line N:" wrapper.
func yamlErrorText(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); strings.HasPrefix(msg, "yaml: unmarshal errors:") && i >= 0 {
		return strings.TrimSpace(msg[i+2:])
	}
	return msg
}

// structFields maps the YAML keys of a struct to its fields, looking through
// inline fields.
func structFields(v reflect.Value) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		key, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			for k, fv := range structFields(v.Field(i)) {
				out[k] = fv
			}
			continue
		}
		if key == "" || key == "-" {
			continue
		}
		out[key] = v.Field(i)
	}
	return out
}

// flatten maps every leaf key ("bot.user_id") to its value.
func flatten(v reflect.Value, path string) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	for key, f := range structFields(v) {
		full := joinKey(path, key)
		if f.Kind() == reflect.Struct {
			for k, fv := range flatten(f, full) {
				out[k] = fv
			}
		} else {
			out[full] = f
		}
	}
	return out
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest names a known key close to an unknown one.
func suggest(key string, fields map[string]reflect.Value) string {
	best, bestDist := "", 3
	for k := range fields {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
