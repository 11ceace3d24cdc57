package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// benchJSON runs `agora bench ARGS --json`, requires exit 0 and progress
// on stderr, and decodes the last line of stdout.
func benchJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out, errOut, code := agora(t, append(append([]string{"bench"}, args...), "--json")...)
	if code != 0 {
		t.Fatalf("agora bench %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	if !strings.Contains(errOut, "bench "+args[0]) {
		t.Errorf("agora bench %v: no progress on stderr: %q", args, errOut)
	}
	return mustJSON[map[string]any](t, lastLine(out))
}

func num(t *testing.T, m map[string]any, k string) float64 {
	t.Helper()
	v, ok := m[k].(float64)
	if !ok {
		t.Fatalf("result has no number %q: %v", k, m)
	}
	return v
}

// TestBenchSubcommandsTiny runs each cluster benchmark once at a tiny
// size and checks what it measured is whole and correct, never a time.
func TestBenchSubcommandsTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short: starts clusters of separate processes")
	}
	t.Run("write", func(t *testing.T) {
		r := benchJSON(t, "write", "--writers", "4", "--duration", "500ms")
		for _, k := range []string{"agora_writes_per_sec", "apply_writes_per_sec", "raft_writes_per_sec", "ratio", "agora_log_entries", "apply_log_entries", "agora_rpcs", "client_writes_in_flight"} {
			if num(t, r, k) <= 0 {
				t.Errorf("%s = %v, want > 0 (nothing committed?)", k, r[k])
			}
		}
		if num(t, r, "errors") != 0 {
			t.Errorf("errors = %v", r["errors"])
		}
		if s, _ := r["client_batching"].(string); s == "" {
			t.Errorf("client_batching missing: %v", r)
		}
	})
	t.Run("state", func(t *testing.T) {
		// The command itself fails unless the restored FSM and the
		// caught-up follower hold every agent and task.
		r := benchJSON(t, "state", "--agents", "50", "--tasks", "500")
		if num(t, r, "agents") != 50 || num(t, r, "tasks") != 500 {
			t.Errorf("sizes: %v", r)
		}
		if num(t, r, "snapshot_mib") <= 0 || num(t, r, "heap_mib") <= 0 {
			t.Errorf("no snapshot or heap measured: %v", r)
		}
	})
	t.Run("failover", func(t *testing.T) {
		r := benchJSON(t, "failover", "--rounds", "1", "--raft-profile", "fast")
		if num(t, r, "rounds") != 1 || num(t, r, "old_offer_accepted") != 1 {
			t.Errorf("the offer made before the kill was not accepted: %v", r)
		}
		if len(r["leader_ms"].([]any)) != 1 || len(r["offers_ms"].([]any)) != 1 || len(r["bare_raft_ms"].([]any)) != 1 {
			t.Errorf("per-round figures missing: %v", r)
		}
	})
	t.Run("agent-loss", func(t *testing.T) {
		r := benchJSON(t, "agent-loss", "--agents", "2", "--rounds", "1")
		if len(r["rescind_ms"].([]any)) != 1 || len(r["unreachable_ms"].([]any)) != 1 {
			t.Errorf("RESCIND or UNREACHABLE missing: %v", r)
		}
		if num(t, r, "settle_ms") < 2000 { // the members held alive for 2 s first
			t.Errorf("settle_ms %v: the first kill did not wait for gossip to settle", r["settle_ms"])
		}
	})
	t.Run("e2e", func(t *testing.T) {
		out, errOut, code := agora(t, "bench", "e2e", "--agents", "20", "--tasks", "200", "--frameworks", "2", "--tasks-per-accept", "20", "--json")
		if code != 0 {
			t.Fatalf("agora bench e2e: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		if !strings.Contains(errOut, "200/200 RUNNING") {
			t.Errorf("no progress on stderr: %q", errOut)
		}
		r := mustJSON[map[string]any](t, lastLine(out))
		if num(t, r, "tasks") != 200 || num(t, r, "agents") != 20 || num(t, r, "frameworks") != 2 || num(t, r, "raft_entries") <= 0 {
			t.Errorf("result: %v", r)
		}
		// The CPU the run took: every master's, the simulator's and the
		// frameworks', each read before and after.
		ms, _ := r["master_cpu_seconds"].([]any)
		if len(ms) != 3 {
			t.Fatalf("master_cpu_seconds = %v, want one figure per master", r["master_cpu_seconds"])
		}
		sum := num(t, r, "sim_cpu_seconds") + num(t, r, "framework_cpu_seconds")
		for i, m := range ms {
			if c, _ := m.(float64); c <= 0 {
				t.Errorf("master %d used no CPU: %v", i, ms)
			}
			sum += m.(float64)
		}
		if num(t, r, "sim_cpu_seconds") <= 0 || num(t, r, "framework_cpu_seconds") <= 0 {
			t.Errorf("simulator or frameworks used no CPU: %v", r)
		}
		if got := num(t, r, "cpu_seconds"); got < sum-1e-6 || got > sum+1e-6 {
			t.Errorf("cpu_seconds %v is not the sum of its parts %v", got, sum)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		_, errOut, code := agora(t, "bench", "agent-loss", "--agents", "2", "--rounds", "3")
		if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("want one line and exit 1, got %d: %q", code, errOut)
		}
	})
}

// TestBenchReportQuick runs `agora bench report --quick` (what `make bench`
// runs, at tiny sizes): every benchmark's section is written between the
// markers, none failed, the text outside them is kept, and each plot it
// links to is there.
func TestBenchReportQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short: starts clusters of separate processes")
	}
	dir := t.TempDir()
	doc := filepath.Join(dir, "B.md")
	if err := os.WriteFile(doc, []byte("# Benchmarks\n\nwritten by hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Five benchmarks one after another, each starting its own cluster:
	// 30-40 s on a quiet machine, more beside the other packages' tests.
	out, errOut, code := agoraWithin(t, 5*time.Minute, "bench", "report", "--quick", "--out", doc, "--plots", "plots")
	if code != 0 {
		t.Fatalf("agora bench report --quick: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{"written by hand", "### Allocator: full round", "### Replicated writes", "### Leader failover",
		"### Agent loss", "### The store at scale", "### Placement at scale", "| 200 tasks, 20 agents, 2 frameworks |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "failed in this run") || strings.Contains(md, "Runs that failed") {
		t.Errorf("a benchmark failed:\n%s", md)
	}
	for _, plot := range []string{"allocator-round.svg", "failover-timeline.svg", "e2e-running.svg"} {
		if !strings.Contains(md, "plots/"+plot) {
			t.Errorf("report does not link %s", plot)
		}
		if svg, err := os.ReadFile(filepath.Join(dir, "plots", plot)); err != nil || !strings.HasPrefix(string(svg), "<svg") {
			t.Errorf("plot %s: %v %.40q", plot, err, svg)
		}
	}
}

// TestBenchAllocatorIncrementalTiny runs the one-agent-freed benchmark at
// a tiny size: it fails unless every freed agent was offered again whole.
func TestBenchAllocatorIncrementalTiny(t *testing.T) {
	r := benchJSON(t, "allocator", "--agents", "50", "--frameworks", "10", "--rounds", "20", "--incremental")
	if num(t, r, "rounds") != 20 || num(t, r, "fast_rounds") != 20 {
		t.Errorf("want 20 rounds, all on the one-agent path: %v", r)
	}
	r = benchJSON(t, "allocator", "--agents", "50", "--frameworks", "10", "--rounds", "2")
	if num(t, r, "offers_per_cycle") != 50 {
		t.Errorf("full round: %v", r)
	}
}

// TestMetricValue: the CPU meter finds an unlabelled sample by its exact
// name, not a longer name that starts with it, and says when there is none.
func TestMetricValue(t *testing.T) {
	text := "# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total_other 9\nprocess_cpu_seconds_total 12.5\n"
	v, err := metricValue(strings.NewReader(text), "process_cpu_seconds_total")
	if err != nil || v != 12.5 {
		t.Fatalf("got %v, %v; want 12.5", v, err)
	}
	if _, err := metricValue(strings.NewReader("up 1\n"), "process_cpu_seconds_total"); err == nil {
		t.Fatal("no error for a missing sample")
	}
}
