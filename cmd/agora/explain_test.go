package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/allocator"
)

func TestReasonHelpCoversEveryReason(t *testing.T) {
	for _, r := range allocator.Reasons() {
		if reasonHelp[r.String()] == "" {
			t.Errorf("no help for reason %s", r)
		}
	}
	if len(reasonHelp) != len(allocator.Reasons()) {
		t.Errorf("help for %d reasons, the allocator has %d", len(reasonHelp), len(allocator.Reasons()))
	}
}

// keys returns the sorted keys of a JSON object.
func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestCLIExplain(t *testing.T) {
	addrs := startDev(t)

	// Bad input first: one line on stderr, non-zero exit.
	for _, bad := range [][]string{
		{"explain"},
		{"explain", "a", "b"},
		{"explain", "no-such-framework"},
	} {
		_, errOut, code := agora(t, append(bad, "--addr", addrs[0])...)
		if code == 0 || errOut == "" || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("agora %v: exit %d, stderr %q; want non-zero and one line", bad, code, errOut)
		}
		if bad[len(bad)-1] == "no-such-framework" && !strings.Contains(errOut, "not_found") {
			t.Errorf("explain of an unknown framework: %q, want not_found", errOut)
		}
	}

	// A framework that stays subscribed: `agora run` without --detach.
	ctx, cancel := context.WithCancel(context.Background())
	run := exec.CommandContext(ctx, agoraBin, "run", "--addr", addrs[0], "--name", "explained", "--instances", "1",
		"--cmd", "sleep 600", "--cpus", "0.1", "--mem", "16")
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = run.Wait() })
	var fid string
	eventually(t, 60*time.Second, "framework explained CONNECTED", func() (bool, string) {
		out, _, _ := agora(t, "frameworks", "--json", "--addr", addrs[0])
		for _, f := range mustJSON[[]struct{ ID, Name, State string }](t, out) {
			if f.Name == "explained" && f.State == "CONNECTED" {
				fid = f.ID
				return true, out
			}
		}
		return false, out
	})
	// agora dev's agents register on their own: the framework can be
	// CONNECTED before they are (a CI rehearsal counted 0 agents here and
	// then explain counted 2). Wait for all of them to be ACTIVE.
	agents := 0
	eventually(t, 60*time.Second, "the dev agents ACTIVE", func() (bool, string) {
		out, errOut, code := agora(t, "agents", "--json", "--addr", addrs[0])
		if code != 0 {
			return false, errOut
		}
		agents = 0
		for _, a := range mustJSON[[]struct{ State string }](t, out) {
			if a.State == "ACTIVE" {
				agents++
			}
		}
		return agents == len(devAgents), out
	})

	// --json has exactly the documented keys, and offers plus counts cover
	// every (role, agent). Asked through a follower: the CLI follows the
	// redirect to the leader.
	var follower string
	st := mustJSON[struct {
		Leader struct{ Address string } `json:"leader"`
	}](t, mustRun(t, "status", "--json", "--addr", addrs[0]))
	for _, a := range addrs {
		if a != st.Leader.Address {
			follower = a
			break
		}
	}
	var exp explainJSON
	eventually(t, 30*time.Second, "explain --json", func() (bool, string) {
		out, errOut, code := agora(t, "explain", fid, "--json", "--addr", follower)
		if code != 0 {
			return false, errOut // e.g. unavailable until a round saw the framework
		}
		top := mustJSON[map[string]json.RawMessage](t, out)
		if got := keys(top); !slices.Equal(got, []string{"framework_id", "offered", "reasons", "roles"}) {
			t.Fatalf("explain --json keys %v: %s", got, out)
		}
		for _, r := range mustJSON[[]map[string]json.RawMessage](t, string(top["reasons"])) {
			if got := keys(r); !slices.Equal(got, []string{"count", "example_agent", "reason"}) {
				t.Fatalf("explain --json reason keys %v: %s", got, out)
			}
		}
		exp = mustJSON[explainJSON](t, out)
		return true, out
	})
	if exp.FrameworkID != fid || !slices.Equal(exp.Roles, []string{"*"}) {
		t.Fatalf("explain: framework %q roles %v, want %s [*]", exp.FrameworkID, exp.Roles, fid)
	}
	sum := exp.Offered
	for _, r := range exp.Reasons {
		sum += r.Count
		if r.Count <= 0 || r.ExampleAgent == "" || !slices.ContainsFunc(allocator.Reasons(), func(a allocator.Reason) bool { return a.String() == r.Reason }) {
			t.Fatalf("explain: bad reason %+v", r)
		}
	}
	if sum != uint64(len(exp.Roles)*agents) {
		t.Fatalf("explain: offered plus counts is %d, want %d roles x %d agents: %+v", sum, len(exp.Roles), agents, exp)
	}

	// The text form names the framework, the offers and each reason.
	text := mustRun(t, "explain", fid, "--addr", addrs[0])
	t.Logf("agora explain %s:\n%s", fid, text)
	if !strings.Contains(text, "framework "+fid) || !strings.Contains(text, "offered: ") {
		t.Fatalf("explain text: %q", text)
	}
	for _, r := range exp.Reasons {
		if !strings.Contains(text, r.Reason) {
			t.Errorf("explain text lacks %s: %q", r.Reason, text)
		}
	}

	// Torn down: failed_precondition, one line.
	mustRun(t, "kill-framework", fid, "--addr", addrs[0])
	_, errOut, code := agora(t, "explain", fid, "--addr", addrs[0])
	if code == 0 || !strings.Contains(errOut, "failed_precondition") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("explain of a torn-down framework: exit %d, %q", code, errOut)
	}
}

// mustRun runs the CLI and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := agora(t, args...)
	if code != 0 {
		t.Fatalf("agora %v: exit %d: %s", args, code, errOut)
	}
	return out
}
