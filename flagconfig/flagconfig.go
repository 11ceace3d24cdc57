package flagconfig

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// ErrConfig marks every error Apply returns.
var ErrConfig = errors.New("flagconfig")

// Options say where flag values come from besides the command line.
type Options struct {
	// EnvPrefix prefixes every flag's environment variable ("AGORA_").
	// Empty turns the environment off.
	EnvPrefix string
	// ConfigFlag names the flag that holds the config file's path
	// ("config"). Empty, or a FlagSet without that flag, turns files off.
	ConfigFlag string
	// Getenv reads the environment; nil means os.Getenv. Tests set it.
	Getenv func(string) string
}

// EnvName is the environment variable of the flag name under prefix:
// EnvName("AGORA_", "data-dir") is "AGORA_DATA_DIR".
func EnvName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
}

// Apply sets every flag of fs that the command line did not set (fs must
// have been parsed) from the environment or, failing that, from the config
// file. It returns the config file it read, "" for none.
func Apply(fs *flag.FlagSet, o Options) (string, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var file string
	var values map[string]string
	if o.ConfigFlag != "" {
		if f := fs.Lookup(o.ConfigFlag); f != nil {
			file = f.Value.String()
			if !set[o.ConfigFlag] && o.EnvPrefix != "" {
				if v := getenv(EnvName(o.EnvPrefix, o.ConfigFlag)); v != "" {
					file = v
				}
			}
			if file != "" {
				var err error
				if values, err = readFile(fs, file, o.ConfigFlag); err != nil {
					return file, err
				}
			}
		}
	}

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == o.ConfigFlag {
			return
		}
		if o.EnvPrefix != "" {
			env := EnvName(o.EnvPrefix, f.Name)
			if v, ok := lookup(getenv, env); ok {
				if err := fs.Set(f.Name, v); err != nil {
					errs = append(errs, fmt.Errorf("%w: environment variable %s: bad value %q for --%s: %w", ErrConfig, env, v, f.Name, unwrapFlag(err)))
				}
				return
			}
		}
		if v, ok := values[f.Name]; ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%w: %s: key %q: bad value %q: %w", ErrConfig, file, f.Name, v, unwrapFlag(err)))
			}
		}
	})
	if len(errs) > 0 {
		return file, errs[0]
	}
	return file, nil
}

// lookup treats an empty variable as unset, as a shell's `VAR= cmd` means.
func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// unwrapFlag drops the flag package's own wording ("parse error") where it
// wraps a value's error; the caller names the source.
func unwrapFlag(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// readFile decodes the TOML file into flag name -> command-line text.
func readFile(fs *flag.FlagSet, path, configFlag string) (map[string]string, error) {
	raw := map[string]any{}
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		return nil, fmt.Errorf("%w: config file %s: %w", ErrConfig, path, err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, len(raw))
	for _, k := range keys {
		if k == configFlag {
			return nil, fmt.Errorf("%w: config file %s: key %q: a config file cannot name another", ErrConfig, path, k)
		}
		if fs.Lookup(k) == nil {
			return nil, fmt.Errorf("%w: config file %s: unknown key %q%s", ErrConfig, path, k, suggest(fs, k))
		}
		s, err := text(raw[k])
		if err != nil {
			return nil, fmt.Errorf("%w: config file %s: key %q: %w", ErrConfig, path, k, err)
		}
		out[k] = s
	}
	return out, nil
}

// text turns a TOML value into the text the flag would take on the command line.
func text(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("a list must hold strings, not %T", e)
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		return "", errors.New("a table is not a flag (keys are flag names at the top level)")
	}
	return "", fmt.Errorf("unsupported value of type %T", v)
}

// suggest names a flag close to an unknown key: a common typo is '_' for '-'.
func suggest(fs *flag.FlagSet, k string) string {
	if alt := strings.ReplaceAll(k, "_", "-"); alt != k && fs.Lookup(alt) != nil {
		return fmt.Sprintf(" (did you mean %q?)", alt)
	}
	return " (keys are the command's flag names; see --help)"
}
