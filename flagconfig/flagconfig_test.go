package flagconfig

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type flags struct {
	fs      *flag.FlagSet
	dataDir *string
	expect  *int
	timeout *time.Duration
	rate    *float64
	verbose *bool
	join    *string
	http    *string
}

func newFlags() *flags {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := &flags{fs: fs}
	fs.String("config", "", "config file")
	f.dataDir = fs.String("data-dir", "/default", "data dir")
	f.expect = fs.Int("bootstrap-expect", 0, "masters")
	f.timeout = fs.Duration("offer-timeout", time.Minute, "offer timeout")
	f.rate = fs.Float64("agent-removal-rate", 10, "rate")
	f.verbose = fs.Bool("log-json", false, "json")
	f.join = fs.String("join", "", "joins")
	f.http = fs.String("http", "127.0.0.1:7100", "http")
	return f
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agora.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

var opts = Options{EnvPrefix: "AGORA_", ConfigFlag: "config"}

func apply(t *testing.T, f *flags, args []string, e map[string]string) error {
	t.Helper()
	if err := f.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	o := opts
	o.Getenv = env(e)
	_, err := Apply(f.fs, o)
	return err
}

func TestPrecedenceFlagOverEnvOverFileOverDefault(t *testing.T) {
	p := writeFile(t, `
data-dir = "/from-file"
bootstrap-expect = 3
offer-timeout = "90s"
agent-removal-rate = 2.5
log-json = true
join = ["m1:7300", "m2:7300"]
http = "10.0.0.1:7100"
`)
	f := newFlags()
	err := apply(t, f, []string{"--config", p, "--data-dir", "/from-flag"},
		map[string]string{"AGORA_DATA_DIR": "/from-env", "AGORA_BOOTSTRAP_EXPECT": "5", "AGORA_HTTP": ""})
	if err != nil {
		t.Fatal(err)
	}
	if *f.dataDir != "/from-flag" {
		t.Errorf("data-dir = %q, want the flag's value over env and file", *f.dataDir)
	}
	if *f.expect != 5 {
		t.Errorf("bootstrap-expect = %d, want env's 5 over the file's 3", *f.expect)
	}
	if *f.timeout != 90*time.Second || *f.rate != 2.5 || !*f.verbose {
		t.Errorf("from the file: offer-timeout %v, rate %v, log-json %v", *f.timeout, *f.rate, *f.verbose)
	}
	if *f.join != "m1:7300,m2:7300" {
		t.Errorf("join = %q, want the file's list joined with commas", *f.join)
	}
	if *f.http != "10.0.0.1:7100" {
		t.Errorf("http = %q: an empty environment variable must count as unset", *f.http)
	}
}

func TestDefaultsWithoutFileOrEnv(t *testing.T) {
	f := newFlags()
	if err := apply(t, f, nil, nil); err != nil {
		t.Fatal(err)
	}
	if *f.dataDir != "/default" || *f.expect != 0 || *f.timeout != time.Minute {
		t.Errorf("defaults changed: %q %d %v", *f.dataDir, *f.expect, *f.timeout)
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	p := writeFile(t, `bootstrap-expect = 3`)
	f := newFlags()
	if err := apply(t, f, nil, map[string]string{"AGORA_CONFIG": p}); err != nil {
		t.Fatal(err)
	}
	if *f.expect != 3 {
		t.Errorf("bootstrap-expect = %d, want 3 from the file named by AGORA_CONFIG", *f.expect)
	}
}

func TestUnknownKey(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"data-dir = \"/x\"\nbootstrap-expekt = 3\n", `unknown key "bootstrap-expekt"`},
		{"data_dir = \"/x\"\n", `unknown key "data_dir" (did you mean "data-dir"?)`},
		{"[master]\nid = \"m1\"\n", `unknown key "master"`},
		{"config = \"other.toml\"\n", `key "config": a config file cannot name another`},
	} {
		p := writeFile(t, tc.body)
		f := newFlags()
		err := apply(t, f, []string{"--config", p}, nil)
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%q: err = %v, want one naming %s and the file", tc.body, err, tc.want)
		}
		if *f.dataDir != "/default" {
			t.Errorf("%q: data-dir = %q: a refused file must set nothing", tc.body, *f.dataDir)
		}
	}
}

func TestBadValue(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`bootstrap-expect = "three"`, `key "bootstrap-expect": bad value "three"`},
		{`offer-timeout = 90`, `key "offer-timeout": bad value "90"`},
		{`log-json = "maybe"`, `key "log-json": bad value "maybe"`},
		{`join = [1, 2]`, `key "join": a list must hold strings`},
		{`data-dir = `, `config file`},
	} {
		p := writeFile(t, tc.body)
		f := newFlags()
		err := apply(t, f, []string{"--config", p}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%q: err = %v, want one containing %q and the file", tc.body, err, tc.want)
		}
	}
	f := newFlags()
	err := apply(t, f, nil, map[string]string{"AGORA_OFFER_TIMEOUT": "soon"})
	if err == nil || !strings.Contains(err.Error(), "AGORA_OFFER_TIMEOUT") {
		t.Errorf("bad env value: err = %v, want one naming the variable", err)
	}
	f = newFlags()
	err = apply(t, f, []string{"--config", filepath.Join(t.TempDir(), "missing.toml")}, nil)
	if err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"data-dir": "AGORA_DATA_DIR", "tls-ca": "AGORA_TLS_CA", "addr": "AGORA_ADDR"} {
		if got := EnvName("AGORA_", in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUsageGroupsByTopic(t *testing.T) {
	f := newFlags()
	f.fs.String("tls-ca", "", "CA")
	f.fs.String("brand-new-flag", "x", "added by someone later")
	var buf bytes.Buffer
	Usage(&buf, f.fs, []Topic{
		{Title: "Network", Match: []string{"http", "join"}},
		{Title: "Security", Match: []string{"tls-"}},
		{Title: "Agents", Match: []string{"agent-"}},
	}, opts)
	out := buf.String()
	order := []string{"Network:", "--http", "--join", "Security:", "--tls-ca", "Agents:", "--agent-removal-rate", "Other:", "--brand-new-flag", "--data-dir"}
	at := 0
	for _, s := range order {
		i := strings.Index(out[at:], s)
		if i < 0 {
			t.Fatalf("%q missing or out of order in:\n%s", s, out)
		}
		at += i
	}
	for _, s := range []string{"default 127.0.0.1:7100", "env AGORA_HTTP", "default 1m0s"} {
		if !strings.Contains(out, s) {
			t.Errorf("help lacks %q:\n%s", s, out)
		}
	}
}
