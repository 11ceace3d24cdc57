package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/freeport"
)

var agoraBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agora-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agoraBin = filepath.Join(dir, "agora")
	if out, err := exec.Command("go", "build", "-o", agoraBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building agora: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeBase finds a base port whose dev-cluster ports (base+i, +100+i, +200+i) are all free.
func freeBase(t *testing.T) int {
	t.Helper()
	base, err := freeport.Block("127.0.0.1", []int{0, 1, 2, 100, 101, 102, 200, 201, 202}, true)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// agora runs the CLI and returns stdout, stderr and the exit code.
func agora(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return agoraWithin(t, 90*time.Second, args...)
}

// agoraWithin is agora for a command that may take up to d (it is killed
// after that).
func agoraWithin(t *testing.T, d time.Duration, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, agoraBin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("agora %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func mustJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON (%v): %q", err, s)
	}
	return v
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		<-time.After(100 * time.Millisecond) // poll interval
	}
	t.Fatalf("%s: not true after %v (last: %s)", what, d, last)
}

// startDev runs `agora dev` as a separate process and waits for its ready line.
func startDev(t *testing.T) (addrs []string) {
	t.Helper()
	base := freeBase(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, agoraBin, "dev", "--base-port", fmt.Sprint(base), "--data-dir", t.TempDir())
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready ") {
				ready <- strings.TrimPrefix(sc.Text(), "ready ")
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("agora dev printed no ready line in 60 s")
	}
	for i := range 3 {
		addrs = append(addrs, fmt.Sprintf("http://127.0.0.1:%d", base+i))
	}
	return addrs
}

func TestCLIAgainstDevCluster(t *testing.T) {
	addrs := startDev(t)

	// status --json: a leader among the three masters.
	out, errOut, code := agora(t, "status", "--json", "--addr", addrs[0])
	if code != 0 {
		t.Fatalf("status failed: %s", errOut)
	}
	st := mustJSON[struct {
		Leader  *struct{ ID, Address string } `json:"leader"`
		Masters []struct {
			ID, Address, Suffrage, State string
		} `json:"masters"`
		Raft   map[string]any `json:"raft"`
		Agents *int           `json:"agents"`
		Tasks  *int           `json:"tasks"`
	}](t, out)
	if st.Leader == nil || len(st.Masters) != 3 || st.Raft["commit_index"] == nil || st.Agents == nil || st.Tasks == nil {
		t.Fatalf("status JSON incomplete: %s", out)
	}
	var follower string
	for _, a := range addrs {
		if a != st.Leader.Address {
			follower = a
			break
		}
	}

	// A write through a follower is redirected; roles --json shows it.
	if _, errOut, code := agora(t, "role", "set", "analytics", "--weight", "3", "--guarantee", "cpus:2;mem:1024", "--limit", "cpus:4;mem:2048", "--addr", follower); code != 0 {
		t.Fatalf("role set through a follower: %s", errOut)
	}
	out, _, _ = agora(t, "roles", "--json", "--addr", follower)
	roles := mustJSON[[]struct {
		Name      string             `json:"name"`
		Weight    float64            `json:"weight"`
		Guarantee map[string]float64 `json:"guarantee"`
		Limit     map[string]float64 `json:"limit"`
	}](t, out)
	if len(roles) != 1 || roles[0].Name != "analytics" || roles[0].Weight != 3 || roles[0].Guarantee["cpus"] != 2 || roles[0].Limit["mem"] != 2048 {
		t.Fatalf("roles JSON: %s", out)
	}

	// Bad input: a one-line error, non-zero exit, and the commit index does not move.
	commit := func() float64 {
		out, _, _ := agora(t, "status", "--json", "--addr", st.Leader.Address)
		return mustJSON[struct {
			Raft struct {
				CommitIndex float64 `json:"commit_index"`
			} `json:"raft"`
		}](t, out).Raft.CommitIndex
	}
	eventually(t, 30*time.Second, "2 agents ACTIVE", func() (bool, string) {
		out, _, _ := agora(t, "agents", "--json", "--addr", addrs[0])
		n := 0
		for _, a := range mustJSON[[]struct{ ID, State string }](t, out) {
			if a.State == "ACTIVE" {
				n++
			}
		}
		return n == 2, out
	})
	// Wait for a quiet cluster (no registrations in flight) so that only the
	// bad input below could move the index.
	before := commit()
	eventually(t, 20*time.Second, "a quiet commit index", func() (bool, string) {
		<-time.After(time.Second) // the quiet window being checked
		now := commit()
		ok := now == before
		before = now
		return ok, fmt.Sprint(now)
	})
	for _, bad := range [][]string{
		{"role", "set", "Bad Name"},
		{"role", "set", "neg", "--weight", "-1"},
		{"role", "set", "q", "--guarantee", "cpus:4", "--limit", "cpus:2"},
		{"role", "set", "q", "--guarantee", "bogus:4"},
		{"role", "rm", "nosuchrole"},
		{"raft", "remove", "nosuchmaster"},
	} {
		_, errOut, code := agora(t, append(bad, "--addr", follower)...)
		if code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || errOut == "" {
			t.Errorf("agora %v: exit %d, stderr %q; want non-zero and one line", bad, code, errOut)
		}
	}
	if after := commit(); after != before {
		t.Errorf("bad input moved the commit index from %v to %v", before, after)
	}

	// raft peers --json: three voters with ids and states.
	out, _, _ = agora(t, "raft", "peers", "--json", "--addr", addrs[2])
	peers := mustJSON[[]struct{ ID, Suffrage, State string }](t, out)
	if len(peers) != 3 {
		t.Fatalf("raft peers: %s", out)
	}

	// agora run --detach: tasks RUNNING on the dev agents, the framework listed, then kill-framework.
	if out, errOut, code := agora(t, "run", "--addr", addrs[1], "--name", "web", "--instances", "3", "--cmd", "sleep 600",
		"--cpus", "0.1", "--mem", "16", "--detach"); code != 0 {
		t.Fatalf("agora run --detach: exit %d\n%s\n%s", code, out, errOut)
	}
	type task struct{ ID, Framework, Agent, State string }
	out, _, _ = agora(t, "tasks", "--json", "--addr", addrs[0])
	tasks := mustJSON[[]task](t, out)
	running := 0
	for _, tk := range tasks {
		if tk.State == "RUNNING" {
			running++
		}
	}
	if running != 3 {
		t.Fatalf("want 3 RUNNING tasks after detach, got %s", out)
	}
	out, _, _ = agora(t, "frameworks", "--json", "--addr", addrs[0])
	fws := mustJSON[[]struct{ ID, Name, State string }](t, out)
	if len(fws) != 1 || fws[0].Name != "web" || fws[0].ID != tasks[0].Framework {
		t.Fatalf("frameworks: %s", out)
	}
	if _, errOut, code := agora(t, "kill-framework", fws[0].ID, "--addr", addrs[2]); code != 0 {
		t.Fatalf("kill-framework: %s", errOut)
	}
	eventually(t, 30*time.Second, "tasks of the torn-down framework gone or KILLED", func() (bool, string) {
		out, _, _ := agora(t, "tasks", "--json", "--addr", addrs[0])
		for _, tk := range mustJSON[[]task](t, out) {
			if tk.State != "KILLED" {
				return false, out
			}
		}
		return true, out
	})
	out, _, _ = agora(t, "frameworks", "--json", "--addr", addrs[0])
	if fws := mustJSON[[]struct{ State string }](t, out); len(fws) != 1 || fws[0].State != "TORN_DOWN" {
		t.Fatalf("framework after kill-framework: %s", out)
	}
	if _, errOut, code := agora(t, "kill-framework", "no-such-framework", "--addr", addrs[0]); code == 0 || !strings.Contains(errOut, "not_found") {
		t.Fatalf("kill-framework of an unknown id: exit %d, %q", code, errOut)
	}
}
