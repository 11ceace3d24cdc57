package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/freeport"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agora.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A refused config file is one line on stderr naming the key and the file,
// exit 1, and nothing starts.
func TestConfigFileRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		cmd, body, want string
	}{
		{"master", "id = \"m1\"\ndata-dir = \"" + dir + "/m1\"\nbootstrap-expekt = 3\n", `unknown key "bootstrap-expekt"`},
		{"agent", "id = \"a1\"\ndata-dir = \"" + dir + "/a1\"\nlog-json = \"yes\"\n", `key "log-json": bad value "yes"`},
		{"agent", "offer-timeout = \"1m\"\n", `unknown key "offer-timeout"`},
		{"master", "offer-timeout = \"soon\"\n", `key "offer-timeout": bad value "soon"`},
		{"dev", "agents = \"two\"\n", `key "agents": bad value "two"`},
	} {
		p := writeConfig(t, tc.body)
		_, errOut, code := agora(t, tc.cmd, "--config", p)
		if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, p) || !strings.Contains(errOut, tc.want) {
			t.Errorf("agora %s with %q: exit %d, stderr %q; want exit 1 and one line naming %s and %s", tc.cmd, tc.body, code, errOut, p, tc.want)
		}
	}
	for _, sub := range []string{"m1", "a1"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); err == nil {
			t.Errorf("%s: a refused config created the data dir", sub)
		}
	}
}

// A master takes its settings from the file, the environment overrides the
// file and a flag overrides both: the file's HTTP port is never used.
func TestConfigPrecedenceStartsMaster(t *testing.T) {
	ports := make([]int, 5)
	for i := range ports {
		p, err := freeport.TCPUDP("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	fileHTTP, envHTTP, raftPort, gossipPort, flagHTTP := ports[0], ports[1], ports[2], ports[3], ports[4]
	p := writeConfig(t, fmt.Sprintf(`
id = "from-file"
data-dir = %q
http = "127.0.0.1:%d"
raft = "127.0.0.1:%d"
gossip = "127.0.0.1:%d"
join = ["127.0.0.1:%d"]
bootstrap-expect = 1
gossip-profile = "local"
raft-profile = "fast"
log-level = "warn"
`, t.TempDir(), fileHTTP, raftPort, gossipPort, gossipPort))

	run := func(env []string, args ...string) func() {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, agoraBin, append([]string{"master", "--config", p}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.WaitDelay = 20 * time.Second
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return func() { cancel(); _ = cmd.Wait() }
	}
	leaderAt := func(port int, id string) func() (bool, string) {
		return func() (bool, string) {
			out, errOut, code := agora(t, "status", "--json", "--timeout", "2s", "--addr", fmt.Sprintf("http://127.0.0.1:%d", port))
			if code != 0 {
				return false, errOut
			}
			st := mustJSON[struct {
				Leader *struct{ ID string } `json:"leader"`
			}](t, out)
			return st.Leader != nil && st.Leader.ID == id, out
		}
	}

	// Environment over file: AGORA_HTTP and AGORA_ID win.
	stop := run([]string{fmt.Sprintf("AGORA_HTTP=127.0.0.1:%d", envHTTP), "AGORA_ID=from-env"})
	eventually(t, 30*time.Second, "the master answers on AGORA_HTTP with AGORA_ID", leaderAt(envHTTP, "from-env"))
	if _, _, code := agora(t, "status", "--timeout", "1s", "--addr", fmt.Sprintf("http://127.0.0.1:%d", fileHTTP)); code == 0 {
		t.Errorf("something answers on the file's HTTP port although AGORA_HTTP overrides it")
	}
	stop()

	// Flag over environment over file (same data dir, so the same id).
	stop = run([]string{fmt.Sprintf("AGORA_HTTP=127.0.0.1:%d", envHTTP), "AGORA_ID=from-env"}, "--http", fmt.Sprintf("127.0.0.1:%d", flagHTTP))
	defer stop()
	eventually(t, 30*time.Second, "the master answers on --http", leaderAt(flagHTTP, "from-env"))
}

// The config files shipped under deploy/ name only real flags with good
// values: with --id= given empty on the command line (which wins), the
// command gets past the file and stops at its own check.
func TestShippedConfigFilesAreValid(t *testing.T) {
	for _, tc := range []struct{ cmd, file string }{
		{"master", "../../deploy/systemd/master.toml"},
		{"agent", "../../deploy/systemd/agent.toml"},
		{"master", "../../deploy/compose/master.toml"},
		{"agent", "../../deploy/compose/agent.toml"},
	} {
		_, errOut, code := agora(t, tc.cmd, "--config", tc.file, "--id=")
		if code != 1 || !strings.Contains(errOut, "--id and --data-dir are required") {
			t.Errorf("agora %s --config %s: exit %d, %q; want the file accepted", tc.cmd, tc.file, code, errOut)
		}
	}
}
