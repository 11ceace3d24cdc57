// Package flagconfig lets every flag of a flag.FlagSet also come from a
// config file and from environment variables, and prints a FlagSet's help
// grouped by topic.
//
// It is generic over the FlagSet: a flag registered tomorrow is covered
// without any change here. The rules:
//
//   - Precedence: a flag given on the command line wins over the
//     environment, which wins over the config file, which wins over the
//     flag's default.
//   - The config file is TOML with one top-level key per flag, spelled as
//     the flag (`data-dir = "/var/lib/agora"`, `bootstrap-expect = 3`).
//     Strings, integers, floats and booleans are given as TOML values;
//     durations as strings ("10m"); list flags (comma-separated on the
//     command line) also take an array of strings. The file is named by
//     the flag Options.ConfigFlag (`--config FILE`) or by its environment
//     variable. A key that names no flag, a table, or a value the flag
//     refuses is an error that names the key and the file.
//   - The environment variable of a flag is the prefix followed by the
//     flag's name in upper case with '-' as '_': with prefix "AGORA_",
//     --data-dir is AGORA_DATA_DIR and --tls-ca is AGORA_TLS_CA. A value the
//     flag refuses is an error that names the variable.
//
// Drive it in three steps: register the flags, parse the command line
// with fs.Parse, then call Apply, which fills in every flag the command
// line left unset. Usage (or SetUsage) prints the help.
package flagconfig
