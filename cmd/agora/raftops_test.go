package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
)

// oneLineError checks a failed command: exit 1 and one line on stderr
// that mentions want.
func oneLineError(t *testing.T, stderr string, code int, want string) {
	t.Helper()
	if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr %q; want exit 1 and one line about %q", code, stderr, want)
	}
}

// TestRaftAndSnapshotCommands drives raft health/transfer-leader/remove
// and snapshot save/inspect/restore against an in-process cluster.
func TestRaftAndSnapshotCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.Join(c.Addrs(), ",")

	type healthJSON struct {
		Healthy          bool     `json:"healthy"`
		FailureTolerance int      `json:"failure_tolerance"`
		Voters           []string `json:"voters"`
		Servers          []struct {
			ID        string `json:"id"`
			RaftState string `json:"raft_state"`
		} `json:"servers"`
	}
	eventually(t, 20*time.Second, "raft health", func() (bool, string) {
		out, errOut, code := agora(t, "raft", "health", "--json", "--addr", addr)
		if code != 0 {
			return false, errOut
		}
		h := mustJSON[healthJSON](t, out)
		return h.Healthy && h.FailureTolerance == 1 && len(h.Voters) == 3 && len(h.Servers) == 3, out
	})
	if out, errOut, code := agora(t, "raft", "health", "--addr", addr); code != 0 || !strings.Contains(out, "failure tolerance:  1") {
		t.Fatalf("raft health table: exit %d\n%s%s", code, out, errOut)
	}

	// Bad input: one line, exit 1.
	_, errOut, code := agora(t, "raft", "remove", leader.ID(), "--addr", addr)
	oneLineError(t, errOut, code, "is the leader")
	_, errOut, code = agora(t, "raft", "add", "m9", "not-an-address", "--addr", addr)
	oneLineError(t, errOut, code, "invalid_argument")

	// Transfer leadership to another master.
	var target string
	for _, m := range c.Masters() {
		if m.ID() != leader.ID() {
			target = m.ID()
			break
		}
	}
	if out, errOut, code := agora(t, "raft", "transfer-leader", target, "--addr", addr); code != 0 || !strings.Contains(out, target) {
		t.Fatalf("transfer-leader: exit %d\n%s%s", code, out, errOut)
	}

	// Snapshot save, inspect, refusals and restore.
	if _, errOut, code := agora(t, "role", "set", "saved-role", "--weight", "2", "--addr", addr); code != 0 {
		t.Fatal(errOut)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "agora.snap")
	if out, errOut, code := agora(t, "snapshot", "save", file, "--addr", addr); code != 0 || !strings.Contains(out, "sha256") {
		t.Fatalf("snapshot save: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code := agora(t, "snapshot", "inspect", file, "--json")
	if code != 0 {
		t.Fatal(errOut)
	}
	insp := mustJSON[struct {
		RaftIndex uint64         `json:"raft_index"`
		Counts    map[string]any `json:"counts"`
	}](t, out)
	if insp.RaftIndex == 0 || insp.Counts["roles"] != float64(1) || insp.Counts["masters"] != float64(3) {
		t.Fatalf("inspect: %s", out)
	}
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.snap")
	if err := os.WriteFile(truncated, good[:len(good)-7], 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = agora(t, "snapshot", "restore", truncated, "--addr", addr)
	oneLineError(t, errOut, code, "truncated")
	_, errOut, code = agora(t, "snapshot", "inspect", truncated)
	oneLineError(t, errOut, code, "corrupt backup file")

	if _, errOut, code := agora(t, "role", "rm", "saved-role", "--addr", addr); code != 0 {
		t.Fatal(errOut)
	}
	if out, errOut, code := agora(t, "snapshot", "restore", file, "--addr", addr); code != 0 || !strings.Contains(out, "restored") {
		t.Fatalf("snapshot restore: exit %d\n%s%s", code, out, errOut)
	}
	eventually(t, 10*time.Second, "role back after restore", func() (bool, string) {
		out, _, code := agora(t, "roles", "--addr", addr)
		return code == 0 && strings.Contains(out, "saved-role"), out
	})
}
