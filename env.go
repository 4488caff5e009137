package voipbot

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment variable that overrides a config key.
const EnvPrefix = "VOIPBOT_"

// EnvName is the environment variable that overrides a config key:
// "bot.password" is VOIPBOT_BOT_PASSWORD.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// applyEnv sets config keys from VOIPBOT_ variables. A string key can also
// be read from the file named by its _FILE variable (Docker and systemd
// secrets). An unknown VOIPBOT_ variable is an error: a typo must not leave a
// secret silently unset.
func applyEnv(cfg *Config, environ []string) error {
	leaves := flatten(reflect.ValueOf(cfg).Elem(), "")
	byEnv := make(map[string]string, len(leaves))
	for key := range leaves {
		byEnv[EnvName(key)] = key
	}
	var errs []error
	set := map[string]string{} // key -> variable that set it
	names := make([]string, 0, len(environ))
	values := map[string]string{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix) {
			names = append(names, name)
			values[name] = value
		}
	}
	slices.Sort(names) // deterministic messages
	for _, name := range names {
		value := values[name]
		key, ok := byEnv[name]
		fromFile := false
		if !ok {
			if base, isFile := strings.CutSuffix(name, "_FILE"); isFile {
				key, ok = byEnv[base]
				fromFile = true
			}
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no config key has this name", name))
			continue
		}
		field := leaves[key]
		if fromFile {
			if field.Kind() != reflect.String {
				errs = append(errs, fmt.Errorf("%s: only text keys can be read from a file", name))
				continue
			}
			data, err := os.ReadFile(value)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: reading %s: %w", name, key, err))
				continue
			}
			value = strings.TrimRight(string(data), "\r\n")
		}
		if other, dup := set[key]; dup {
			errs = append(errs, fmt.Errorf("%s: %s is already set by %s", name, key, other))
			continue
		}
		set[key] = name
		if err := setFromString(field, value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", name, key, err))
		}
	}
	return errors.Join(errs...)
}

var durationType = reflect.TypeFor[time.Duration]()

func setFromString(field reflect.Value, value string) error {
	switch {
	case field.Type() == durationType:
		d, err := time.ParseDuration(value)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 30s or 5m", value)
		}
		field.SetInt(int64(d))
	case field.Kind() == reflect.String:
		field.SetString(value)
	case field.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("%q is not true or false", value)
		}
		field.SetBool(b)
	case field.Kind() == reflect.Int || field.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", value)
		}
		field.SetInt(n)
	case field.Kind() >= reflect.Uint && field.Kind() <= reflect.Uint64:
		n, err := strconv.ParseUint(value, 10, field.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a whole number from 0 to %d", value, uint64(1)<<field.Type().Bits()-1)
		}
		field.SetUint(n)
	case field.Kind() == reflect.Slice && field.Type().Elem().Kind() == reflect.String:
		var items []string
		for item := range strings.SplitSeq(value, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		list := reflect.MakeSlice(field.Type(), len(items), len(items))
		for i, item := range items {
			list.Index(i).SetString(item)
		}
		field.Set(list)
	default:
		return fmt.Errorf("cannot be set from the environment (type %s)", field.Type())
	}
	return nil
}
