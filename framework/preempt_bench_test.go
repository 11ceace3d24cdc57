package framework_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/master"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// BenchmarkPriorityDemandToRunning: 3 masters and 10 (AGORA_BENCH_AGENTS)
// agents of 2 cpus, all held by a revocable batch framework (4 tasks of 0.5
// cpu per agent, kill grace 1 s); each iteration a prod framework
// (priority 10) demands 3 tasks of 1 cpu, which need 6 victims, and the
// time until all 3 are RUNNING is measured (goal: p99 <= kill grace + 1 s).
// Each iteration checks that exactly 6 batch tasks were preempted (kill
// reason PREEMPTED). Then prod's tasks are killed and batch fills the
// cluster again before the next iteration.
//
// The agents are simulated (package simagent, in this process, no gossip)
// unless AGORA_BENCH_SIMULATED=0 asks for real in-process agents, whose
// gossip pools thrash at 100 on one machine. A simulated victim ignores
// SIGTERM: it ends KILLED only when its 1 s kill grace is over, the longest
// a real agent's kill takes (a real `sleep` ends at the SIGTERM), so the
// simulated figure is the worst case of the kill.
//
//	AGORA_BENCH_AGENTS=100 go test -timeout 30m -run '^$' -bench PriorityDemandToRunning -benchtime 20x ./framework/
func BenchmarkPriorityDemandToRunning(b *testing.B) {
	log := e2eLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{
		Masters: 3, DataDir: b.TempDir(), Logger: log,
		MasterConfig: func(mc *master.Config) {
			mc.HeartbeatInterval = time.Second
			mc.PreemptionWindow = time.Second
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	l, err := c.WaitLeader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range []*agorav1.Role{{Name: "prod", Priority: 10}, {Name: "batch", Priority: 0}} {
		if _, err := l.Apply(ctx, fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: r}); err != nil {
			b.Fatal(err)
		}
	}
	// AGORA_BENCH_AGENTS sets the cluster size (default 10; the issue's
	// size is 100): 4 batch tasks per agent fill it.
	agents, grace := 10, 1.0
	if v, err := strconv.Atoi(os.Getenv("AGORA_BENCH_AGENTS")); err == nil && v > 0 {
		agents = v
	}
	simulated := os.Getenv("AGORA_BENCH_SIMULATED") != "0"
	batchTasks := 4 * agents
	const agentRes = "cpus:2;mem:2048;disk:1000"
	if simulated {
		sim, err := c.StartSimulatedAgents(agents, agentRes, 0)
		if err != nil {
			b.Fatal(err)
		}
		waitFor(b, 2*time.Minute, "simulated agents registered", func() error {
			if n := sim.Stats().Registered; n != int64(agents) {
				return fmt.Errorf("%d of %d registered", n, agents)
			}
			return nil
		})
	} else {
		for i := 1; i <= agents; i++ {
			if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: fmt.Sprintf("a%d", i), Resources: agentRes}); err != nil {
				b.Fatal(err)
			}
		}
	}
	masters := c.Addrs()
	var ids []string
	for i := range batchTasks {
		ids = append(ids, fmt.Sprintf("b%d", i))
	}
	batch := newFillSched("batch", "sleep 300", grace, 0.5, 256, ids...)
	runFramework2(b, masters, &agorav1.FrameworkInfo{Name: "batch", Roles: []string{"batch"}, FailoverTimeoutSeconds: 3600,
		Capabilities: []agorav1.Capability{agorav1.Capability_CAPABILITY_REVOCABLE_RESOURCES}}, batch, log)
	// prod's tasks end fast when killed between iterations (untimed).
	prod := newFillSched("prod", "sleep 300", 0.1, 1, 512)
	runFramework2(b, masters, &agorav1.FrameworkInfo{Name: "prod", Roles: []string{"prod"}, FailoverTimeoutSeconds: 3600}, prod, log)

	runningCount := func(s *fillSched) int {
		n := 0
		if l := c.Leader(); l != nil && s.d0() != nil {
			for _, tk := range l.State().TasksByFramework(s.d0().FrameworkID()) {
				if !fsm.IsTerminal(tk.GetState()) && !tk.GetKillRequested() {
					n++
				}
			}
		}
		return n
	}
	running := func(s *fillSched, want int) func() error {
		return func() error {
			d := s.d0()
			if d == nil {
				return fmt.Errorf("%s not subscribed", s.name)
			}
			l := c.Leader()
			if l == nil {
				return fmt.Errorf("no leader")
			}
			n := 0
			for _, tk := range l.State().TasksByFramework(d.FrameworkID()) {
				if tk.GetState() == agorav1.TaskState_TASK_STATE_RUNNING && !tk.GetKillRequested() {
					n++
				}
			}
			if n != want {
				return fmt.Errorf("%s: %d tasks running, want %d", s.name, n, want)
			}
			return nil
		}
	}
	waitFor(b, 5*time.Minute, "batch fills the cluster", running(batch, batchTasks))

	// preempted counts batch's tasks that ended KILLED with reason
	// PREEMPTED, as batch was told (the masters drop such a task once
	// batch acknowledged it).
	preempted := func() int {
		batch.mu.Lock()
		defer batch.mu.Unlock()
		n := 0
		for _, sts := range batch.statuses {
			for _, st := range sts {
				if st.GetState() == agorav1.TaskState_TASK_STATE_KILLED && st.GetReason() == fsm.KillReasonPreempted {
					n++
					break // once per task, resends aside
				}
			}
		}
		return n
	}
	var took []time.Duration
	var victims []int
	next := batchTasks
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		tasks := []string{fmt.Sprintf("p%d-1", i), fmt.Sprintf("p%d-2", i), fmt.Sprintf("p%d-3", i)}
		preemptedBefore := preempted()
		b.StartTimer()
		t0 := time.Now()
		prod.enqueue(ctx, tasks...)
		waitFor(b, 2*time.Minute, "prod tasks RUNNING", running(prod, 3))
		took = append(took, time.Since(t0))
		b.StopTimer()
		// Back to a full cluster: prod's tasks go, batch refills.
		for _, id := range tasks {
			tk, err := taskIn(c, prod.d0().FrameworkID(), id)
			if err != nil {
				b.Fatal(err)
			}
			if err := prod.d0().Kill(ctx, id, tk.GetAgentId()); err != nil {
				b.Fatal(err)
			}
		}
		waitFor(b, time.Minute, "prod tasks gone", running(prod, 0))
		// Refill what was preempted (6 victims when the decisions were
		// exact; counted, so that a bench run reports rather than hangs
		// if more were taken).
		var refill []string
		for range batchTasks - runningCount(batch) {
			refill = append(refill, fmt.Sprintf("b%d", next))
			next++
		}
		victims = append(victims, len(refill))
		if len(refill) != 6 {
			b.Errorf("iteration %d: %d batch tasks gone, want exactly the 6 victims needed", i, len(refill))
		}
		waitFor(b, 30*time.Second, "batch told of its preempted tasks", func() error {
			if n := preempted() - preemptedBefore; n != len(refill) {
				return fmt.Errorf("iteration %d: %d tasks KILLED (PREEMPTED), %d gone", i, n, len(refill))
			}
			return nil
		})
		batch.enqueue(ctx, refill...)
		waitFor(b, 2*time.Minute, "batch fills the cluster again", running(batch, batchTasks))
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(took)
	b.Logf("%d %s agents: demand -> RUNNING, sorted: %v; victims per iteration: %v (6 needed)",
		agents, map[bool]string{true: "simulated", false: "real"}[simulated], took, victims)
	q := func(f float64) float64 { return took[int(f*float64(len(took)-1))].Seconds() * 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.9), "p90-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(took[len(took)-1].Seconds()*1000, "max-ms")
	b.ReportMetric(grace*1000+1000, "goal-ms")
}
