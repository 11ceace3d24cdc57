package devcluster_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
)

// TestE2ESimulatedAgents runs the e2e benchmark once at a tiny size on an
// in-process cluster with simulated agents and checks the outcome, never
// the time: every task RUNNING and acknowledged, the counts match, no agent
// over capacity, and the agents saw every launch.
func TestE2ESimulatedAgents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := devcluster.Start(ctx, devcluster.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	const agents, tasks = 50, 500
	sim, err := c.StartSimulatedAgents(agents, "cpus:4;mem:4096", 0)
	if err != nil {
		t.Fatal(err)
	}
	res, err := devcluster.RunE2E(ctx, devcluster.E2EOptions{Masters: c.Addrs(), Agents: agents, Frameworks: 2, Tasks: tasks,
		TasksPerAccept: 20, CPUs: 0.1, MemMiB: 16, Verify: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tasks != tasks || res.Agents != agents || res.Frameworks != 2 || res.RaftEntries == 0 {
		t.Fatalf("result %+v", res)
	}
	st := sim.Stats()
	if st.Registered != agents || st.Launched != tasks || st.Running != tasks || st.Dropped != 0 {
		t.Fatalf("simulated agents: %+v, want %d registered, %d launched and RUNNING, none dropped", st, agents, tasks)
	}
	t.Logf("e2e: %d tasks on %d simulated agents in %.2fs (%d raft entries, p99 launch->running %.0f ms)",
		res.Tasks, res.Agents, res.Seconds, res.RaftEntries, res.P99LaunchToRunningMs)
}
