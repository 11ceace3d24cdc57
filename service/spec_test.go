package service

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

// docExamples are the JSON specs of docs/service-spec.md that have pods.
func docExamples(t *testing.T) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile("../docs/service-spec.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	re := regexp.MustCompile("(?s)```json\n(.*?)```")
	for _, m := range re.FindAllSubmatch(b, -1) {
		if !strings.Contains(string(m[1]), `"count"`) {
			continue // the status example
		}
		spec, err := Parse(m[1])
		if err != nil {
			t.Fatalf("docs example does not parse: %v\n%s", err, m[1])
		}
		out[spec.Name] = m[1]
	}
	return out
}

func TestDocExamplesParse(t *testing.T) {
	ex := docExamples(t)
	for _, name := range []string{"kvservice", "nats"} {
		if ex[name] == nil {
			t.Fatalf("docs/service-spec.md has no %s example", name)
		}
	}
	s, _ := Parse(ex["nats"])
	p := &s.Pods[0]
	if p.Readiness.IntervalSeconds != DefaultReadinessInterval || p.Readiness.TimeoutSeconds != DefaultReadinessTimeout || p.Readiness.DeadlineSeconds != DefaultReadinessDeadline {
		t.Errorf("readiness defaults not filled: %+v", p.Readiness)
	}
	peers := []Peer{
		{Index: 0, Host: "h0", Ports: map[string]uint64{"client": 1, "cluster": 2, "monitor": 3}},
		{Index: 1, Host: "h1", Ports: map[string]uint64{"client": 11, "cluster": 12, "monitor": 13}},
	}
	env, err := Env(PodEnvInput{Service: s.Name, Pod: p, Count: 3, Self: peers[1], Peers: peers})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"NATS_ROUTES":         "nats://h0:2,nats://h1:12",
		"POD_NAME":            "nats-server-1",
		"POD_INDEX":           "1",
		"POD_COUNT":           "3",
		"PORT_CLUSTER":        "12",
		"VOLUME_PATH":         "jetstream",
		"AGORA_PEERS":         "0=h0:1,1=h1:11",
		"AGORA_PEERS_MONITOR": "0=h0:3,1=h1:13",
		"AGORA_SERVICE":       "nats",
		"POD_HOST":            "h1",
		"POD_TYPE":            "server",
		"PORT_CLIENT":         "11",
		"PORT_MONITOR":        "13",
		"AGORA_PEERS_CLIENT":  "0=h0:1,1=h1:11",
		"AGORA_PEERS_CLUSTER": "0=h0:2,1=h1:12",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if len(env) != len(want) {
		t.Errorf("env has %d variables, want %d: %v", len(env), len(want), env)
	}
	ks, _ := Parse(ex["kvservice"])
	env, err = Env(PodEnvInput{Service: ks.Name, Pod: &ks.Pods[0], Count: 3,
		Self:  Peer{Index: 2, Host: "h2", Ports: map[string]uint64{"http": 9}},
		Peers: []Peer{{Index: 0, Host: "h0", Ports: map[string]uint64{"http": 7}}, {Index: 2, Host: "h2", Ports: map[string]uint64{"http": 9}}}})
	if err != nil {
		t.Fatal(err)
	}
	if env["KV_PEERS"] != "0=h0:7,2=h2:9" || env["KV_LISTEN"] != ":9" || env["KV_INDEX"] != "2" || env["KV_DATA"] != "data" {
		t.Errorf("kvservice env = %v", env)
	}
}

const goodSpec = `{"name":"kv","role":"kv","pods":[{"name":"kv","count":3,
 "resources":{"cpus":0.5,"mem":256,"disk":1024,"ports":["http"]},
 "volume":{"size":512,"path":"data"},"command":"run",
 "readiness":{"http":{"port":"http","path":"/ready"}},
 "placement":{"one_per":"agent"}}]}`

// mutate replaces old by new in goodSpec, once.
func mutate(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(goodSpec, old) {
		t.Fatalf("goodSpec has no %q", old)
	}
	return strings.Replace(goodSpec, old, new, 1)
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse([]byte(goodSpec)); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	cases := []struct {
		name, spec, want string
	}{
		{"negative count", mutate(t, `"count":3`, `"count":-1`), `pod "kv": count -1 is negative`},
		{"missing count", mutate(t, `"count":3,`, ``), `pod "kv": count is missing`},
		{"huge count", mutate(t, `"count":3`, `"count":1001`), `count 1001 exceeds 1000`},
		{"zero cpus", mutate(t, `"cpus":0.5`, `"cpus":0`), `resources.cpus must be positive`},
		{"zero mem", mutate(t, `"mem":256`, `"mem":0`), `resources.mem must be positive`},
		{"no resources", mutate(t, `{"cpus":0.5,"mem":256,"disk":1024,"ports":["http"]}`, `{}`), `resources.cpus must be positive`},
		{"negative disk", mutate(t, `"disk":1024`, `"disk":-1`), `resources.disk -1 is negative`},
		{"tiny cpus", mutate(t, `"cpus":0.5`, `"cpus":0.0001`), `resources.cpus 0.0001 is below 0.001`},
		{"unknown top field", mutate(t, `"role":"kv",`, `"role":"kv","colour":"red",`), `unknown field "colour"`},
		{"unknown pod field", mutate(t, `"count":3,`, `"count":3,"replicas":3,`), `pods[0] "kv": unknown field "replicas"`},
		{"unknown resource", mutate(t, `"cpus":0.5`, `"cpu":0.5`), `pods[0] "kv": unknown field "cpu"`},
		{"unknown volume field", mutate(t, `"path":"data"`, `"path":"data","mount":"x"`), `unknown field "mount"`},
		{"duplicate pod", mutate(t, `"agent"}}]}`, `"agent"}},{"name":"kv","count":1,"resources":{"cpus":1,"mem":1},"command":"x"}]}`), `pod name "kv" is used twice`},
		{"readiness without check", mutate(t, `{"http":{"port":"http","path":"/ready"}}`, `{"interval_seconds":3}`), `readiness has neither a command nor an http check`},
		{"readiness with both", mutate(t, `{"http":`, `{"command":"true","http":`), `readiness has both`},
		{"readiness http no path", mutate(t, `"path":"/ready"`, `"path":""`), `readiness.http.path is missing`},
		{"readiness bad port", mutate(t, `"port":"http"`, `"port":"admin"`), `readiness.http.port "admin" is not one of the pod's ports`},
		{"readiness negative", mutate(t, `"path":"/ready"}`, `"path":"/ready"},"timeout_seconds":-1`), `must not be negative`},
		{"bad service name", mutate(t, `"name":"kv","role"`, `"name":"KV!","role"`), `name "KV!": want`},
		{"service name trailing dash", mutate(t, `"name":"kv","role"`, `"name":"kv-","role"`), `name "kv-": want`},
		{"missing name", mutate(t, `"name":"kv","role"`, `"role"`), `name is missing`},
		{"bad pod name", mutate(t, `"name":"kv","count"`, `"name":"k_v","count"`), `pod name "k_v": want`},
		{"bad role", mutate(t, `"role":"kv"`, `"role":"*"`), `role "*": want`},
		{"missing role", mutate(t, `"role":"kv",`, ``), `role is missing`},
		{"no pods", `{"name":"kv","role":"kv","pods":[]}`, `no pods`},
		{"volume larger than disk", mutate(t, `"size":512`, `"size":2048`), `volume.size 2048 MiB is larger than resources.disk 1024 MiB`},
		{"volume zero", mutate(t, `"size":512`, `"size":0`), `volume.size 0 must be positive`},
		{"volume absolute path", mutate(t, `"path":"data"`, `"path":"/data"`), `volume.path "/data": want a clean path`},
		{"volume escapes", mutate(t, `"path":"data"`, `"path":"../x"`), `volume.path "../x"`},
		{"volume no path", mutate(t, `"path":"data"`, `"path":""`), `volume.path is missing`},
		{"no command", mutate(t, `"command":"run"`, `"command":" "`), `command is missing`},
		{"bad port name", mutate(t, `"ports":["http"]`, `"ports":["HTTP"]`), `port name "HTTP"`},
		{"duplicate port", mutate(t, `"ports":["http"]`, `"ports":["http","http"]`), `port name "http" is used twice`},
		{"negative port count", mutate(t, `"ports":["http"]`, `"ports":-2`), `ports: count -2`},
		{"reserved env", mutate(t, `"command":"run"`, `"command":"run","env":{"POD_INDEX":"1"}`), `env POD_INDEX is set by agora`},
		{"bad env name", mutate(t, `"command":"run"`, `"command":"run","env":{"A-B":"1"}`), `env name "A-B"`},
		{"bad template", mutate(t, `"command":"run"`, `"command":"run","env":{"P":"{{peers"}`), `env P:`},
		{"template unknown port", mutate(t, `"command":"run"`, `"command":"run","env":{"P":"{{port \"grpc\"}}"}`), `no port named "grpc"`},
		{"bad placement", mutate(t, `"one_per":"agent"`, `"one_per":"a b"`), `placement.one_per "a b"`},
		{"wrong type", mutate(t, `"count":3`, `"count":"3"`), `count: want number, got string`},
		{"syntax", `{"name":"kv",}`, `line 1 column 14: invalid character '}'`},
		{"trailing", goodSpec + `{}`, `trailing data`},
		{"empty", ``, `empty spec`},
		{"negative grace", mutate(t, `"command":"run"`, `"command":"run","kill_grace_seconds":-1`), `kill_grace_seconds -1 is negative`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.spec))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", c.want)
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error %v does not wrap ErrInvalidSpec", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestPortCount(t *testing.T) {
	if _, err := Parse([]byte(mutate(t, `"ports":["http"]`, `"ports":2`))); err == nil {
		t.Fatal("readiness names port http, which a count does not define; want an error")
	}
	s, err := Parse([]byte(strings.Replace(mutate(t, `"ports":["http"]`, `"ports":2`), `"port":"http"`, `"port":"1"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Pods[0].Resources.Ports; len(got) != 2 || got[0] != "0" || got[1] != "1" {
		t.Fatalf("ports = %v", got)
	}
}

// FuzzParse: Parse never panics, and a spec it accepts survives a round
// trip through its JSON (the form stored in the record).
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodSpec))
	f.Add([]byte(kvSpec))
	f.Add([]byte(`{"name":"a","role":"b","pods":[{"name":"c","count":0,"resources":{"cpus":1,"mem":1,"ports":2},"command":"x"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if again, _ := json.Marshal(back); string(again) != string(out) {
			t.Fatalf("round trip:\n%s\n%s", out, again)
		}
	})
}
