package master_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

const agAgentResources = "cpus:4;mem:4096;disk:10000;ports:[31000-31999]"

// agAgentStates renders the agents' states as "a1=ACTIVE,a2=UNREACHABLE".
func agAgentStates(st *fsm.State) string {
	var parts []string
	for _, a := range st.Agents() {
		parts = append(parts, a.GetId()+"="+strings.TrimPrefix(a.GetState().String(), "AGENT_STATE_"))
	}
	return strings.Join(parts, ",")
}

func agWaitAgentState(tb testing.TB, c *devcluster.Cluster, d time.Duration, id string, want agorav1.AgentState) {
	tb.Helper()
	agWaitFor(tb, d, fmt.Sprintf("agent %s %v", id, want), func() error {
		l := c.Leader()
		if l == nil {
			return fmt.Errorf("no leader")
		}
		if a, ok := l.State().Agent(id); !ok || a.GetState() != want {
			return fmt.Errorf("agents: %s", agAgentStates(l.State()))
		}
		return nil
	})
}

func agWaitTaskState(tb testing.TB, c *devcluster.Cluster, d time.Duration, fw, id string, want agorav1.TaskState) *agorav1.Task {
	tb.Helper()
	var task *agorav1.Task
	agWaitFor(tb, d, fmt.Sprintf("task %s %v", id, want), func() error {
		l := c.Leader()
		if l == nil {
			return fmt.Errorf("no leader")
		}
		t, ok := l.State().Task(fw, id)
		if !ok || t.GetState() != want {
			return fmt.Errorf("task: %v", t)
		}
		task = t
		return nil
	})
	return task
}

// agStatusCounter counts, per master, the applied status updates per uuid.
type agStatusCounter struct {
	mu     sync.Mutex
	counts map[string]map[string]int // master -> uuid -> applications
}

func (sc *agStatusCounter) hook(_ int, m *master.Master) {
	id := m.ID()
	sc.mu.Lock()
	sc.counts[id] = map[string]int{} // a restarted master replays its log
	sc.mu.Unlock()
	m.OnApplyForTest(func(_ uint64, events []fsm.Event) {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		for _, e := range events {
			if e.Kind == fsm.EventTaskStatus && e.Status.GetUuid() != "" {
				sc.counts[id][e.Status.GetUuid()]++
			}
		}
	})
}

func (sc *agStatusCounter) count(masterID, uuid string) int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.counts[masterID][uuid]
}

// agRaftLogCount counts the StatusUpdate entries carrying uuid in a stopped
// master's Raft log.
func agRaftLogCount(tb testing.TB, dir, uuid string) int {
	tb.Helper()
	st, err := master.OpenRaftStorage(dir, agLogger())
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Bolt.Close()
	first, _ := st.Bolt.FirstIndex()
	last, _ := st.Bolt.LastIndex()
	n := 0
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		if err := st.Bolt.GetLog(i, &l); err != nil || l.Type != raft.LogCommand {
			continue
		}
		typ, msg, err := fsm.Decode(l.Data)
		if err != nil {
			continue
		}
		var updates []*agorav1.StatusUpdateCommand
		switch typ {
		case fsm.CmdStatusUpdate:
			updates = append(updates, msg.(*agorav1.StatusUpdateCommand))
		case fsm.CmdStatusUpdateBatch:
			updates = msg.(*agorav1.StatusUpdateBatchCommand).GetUpdates()
		}
		for _, u := range updates {
			for _, s := range u.GetStatuses() {
				if s.GetUuid() == uuid {
					n++
				}
			}
		}
	}
	return n
}

// TestClusterAgents runs 3 masters and 3 real agents in process on
// loopback (local gossip profile, fast Raft) through the agent lifecycle.
func TestClusterAgents(t *testing.T) {
	counter := &agStatusCounter{counts: map[string]map[string]int{}}
	c, _ := agStartAgentCluster(t, devcluster.Options{Masters: 3, OnNew: counter.hook})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	outer := t
	for _, id := range []string{"a1", "a2", "a3"} {
		if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: id, Resources: agAgentResources, Attributes: map[string]string{"rack": "r-" + id}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a1", "a2", "a3"} {
		agWaitAgentState(t, c, 20*time.Second, id, agorav1.AgentState_AGENT_STATE_ACTIVE)
	}
	if a, _ := c.Leader().State().Agent("a1"); a.GetAttributes()["rack"] != "r-a1" || a.GetGossipAddress() == "" || a.GetVersion() != "dev" {
		t.Errorf("registered agent a1: %v", a)
	}

	// Executor integration: a task assigned through the state is launched
	// by the real agent and reaches RUNNING.
	agLaunchTask(t, c, "fw1", "a1", "sleeper", "sleep 30", "cpus:0.5;mem:32;ports:[31000-31000]")
	running := agWaitTaskState(t, c, 20*time.Second, "fw1", "sleeper", agorav1.TaskState_TASK_STATE_RUNNING)
	if running.GetStatus().GetUuid() == "" || running.GetStatus().GetAgentId() != "a1" {
		t.Errorf("RUNNING status: %v", running.GetStatus())
	}

	t.Run("killed agent becomes unreachable and returns", func(t *testing.T) {
		start := time.Now()
		if err := c.KillAgent("a2"); err != nil {
			t.Fatal(err)
		}
		agWaitAgentState(t, c, 20*time.Second, "a2", agorav1.AgentState_AGENT_STATE_UNREACHABLE)
		t.Logf("a2 unreachable %v after the kill", time.Since(start).Round(time.Millisecond))
		st := c.Leader().State()
		for _, id := range []string{"a1", "a3"} {
			if a, _ := st.Agent(id); a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
				t.Errorf("agent %s is %v after a2 died", id, a.GetState())
			}
		}
		if _, err := c.RestartAgent(ctx, "a2"); err != nil {
			t.Fatal(err)
		}
		agWaitAgentState(t, c, 20*time.Second, "a2", agorav1.AgentState_AGENT_STATE_ACTIVE)
	})

	t.Run("status update across a leader kill is committed once", func(t *testing.T) {
		old := c.LeaderIndex()
		if old < 0 {
			t.Fatal("no leader")
		}
		// The real agent's path: this task ends while the leader dies.
		agLaunchTask(t, c, "fw1", "a3", "short", "sleep 0.3; exit 3", "cpus:0.5;mem:32")
		uuid := "failover-" + master.NewID()
		req := &agorav1.UpdateStatusRequest{AgentId: "a1", Statuses: []*agorav1.TaskStatus{{
			TaskId: "sleeper", FrameworkId: "fw1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: uuid, Message: "sent during failover",
		}}}
		killed := make(chan struct{})
		go func() {
			c.Kill(old)
			close(killed)
		}()
		// Retry like an agent: any master, backoff, until committed.
		addrs := c.Addrs()
		backoff := 50 * time.Millisecond
		deadline := time.Now().Add(30 * time.Second)
		attempts := 0
		for i := old; ; i++ {
			attempts++
			if time.Now().After(deadline) {
				t.Fatal("status update not committed within 30s of the leader kill")
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := client.New(addrs[i%len(addrs)]).Agent.UpdateStatus(cctx, connect.NewRequest(req))
			cancel()
			if err == nil {
				break
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, 2*time.Second)
		}
		<-killed
		t.Logf("failover update committed after %d attempt(s)", attempts)
		if _, err := c.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
		task := agWaitTaskState(t, c, 10*time.Second, "fw1", "sleeper", agorav1.TaskState_TASK_STATE_RUNNING)
		if task.GetStatus().GetUuid() != uuid {
			t.Errorf("sleeper's status uuid = %q, want %q", task.GetStatus().GetUuid(), uuid)
		}
		for i, m := range c.Masters() {
			if !c.Alive(i) {
				continue
			}
			agWaitFor(t, 10*time.Second, "update applied on "+m.ID(), func() error {
				if n := counter.count(m.ID(), uuid); n != 1 {
					return fmt.Errorf("applied %d times", n)
				}
				return nil
			})
		}
		short := agWaitTaskState(t, c, 20*time.Second, "fw1", "short", agorav1.TaskState_TASK_STATE_FAILED)
		if short.GetStatus().GetExitCode() != 3 {
			t.Errorf("short's exit code = %d, want 3", short.GetStatus().GetExitCode())
		}
		for i, m := range c.Masters() {
			if !c.Alive(i) {
				continue
			}
			agWaitFor(t, 10*time.Second, "short's terminal update applied on "+m.ID(), func() error {
				if n := counter.count(m.ID(), short.GetStatus().GetUuid()); n != 1 {
					return fmt.Errorf("applied %d times", n)
				}
				return nil
			})
		}
		outer.Cleanup(func() {
			// After the cluster stops: the Raft logs hold the update once.
			c.Stop()
			for i, cfg := range c.Configs() {
				if i == old {
					continue
				}
				if n := agRaftLogCount(outer, cfg.DataDir+"/raft", uuid); n != 1 {
					outer.Errorf("%s's raft log holds the failover update %d times, want 1", cfg.ID, n)
				}
			}
		})
	})

	t.Run("leader kill marks no agent unreachable", func(t *testing.T) {
		l, err := c.WaitLeader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		grace := l.Config().LivenessGrace
		// The previous subtest killed a leader; the one after it must not
		// have marked anything. Check well past the grace period.
		until := time.Now().Add(grace + 2*time.Second)
		for time.Now().Before(until) {
			if l := c.Leader(); l != nil {
				if s := agAgentStates(l.State()); strings.Contains(s, "UNREACHABLE") {
					t.Fatalf("agents after a leader change: %s", s)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	// Kill path: the masters ask, the agent kills, KILLED is committed.
	l, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Apply(ctx, fsm.CmdKillTask, &agorav1.KillTaskCommand{FrameworkId: "fw1", TaskId: "sleeper"}); err != nil {
		t.Fatal(err)
	}
	agWaitTaskState(t, c, 20*time.Second, "fw1", "sleeper", agorav1.TaskState_TASK_STATE_KILLED)
}

// BenchmarkAgentFailureToUnreachable measures, over 10 rounds, the time
// from an agent's abrupt stop (gossip and RPC gone, like SIGKILL) to its
// UNREACHABLE state being committed, with the local and LAN gossip
// profiles and 3 or 50 agents. The LAN profile takes seconds per round:
// run it with -benchtime 1x.
func BenchmarkAgentFailureToUnreachable(b *testing.B) {
	for _, profile := range []gossip.Profile{gossip.ProfileLocal, gossip.ProfileLAN} {
		// 100 in-process agents overload a 2-core machine (the masters'
		// fast Raft profile loses its leader), so the grid stops at 50.
		for _, n := range []int{3, 50} {
			b.Run(fmt.Sprintf("profile=%s/agents=%d", profile, n), func(b *testing.B) {
				agBenchFailure(b, profile, n)
			})
		}
	}
}

func agBenchFailure(b *testing.B, profile gossip.Profile, n int) {
	c, _ := agStartAgentCluster(b, devcluster.Options{Masters: 3, GossipProfile: profile})
	ctx := context.Background()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("a%02d", i)
		ids = append(ids, id)
		if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: id, Resources: agAgentResources}); err != nil {
			b.Fatal(err)
		}
	}
	for _, id := range ids {
		agWaitAgentState(b, c, 60*time.Second, id, agorav1.AgentState_AGENT_STATE_ACTIVE)
	}
	const rounds = 10
	b.ResetTimer()
	for range b.N {
		var took []time.Duration
		for r := range rounds {
			id := ids[r%n]
			l := c.Leader()
			agWaitFor(b, 60*time.Second, id+" alive in the leader's gossip", func() error {
				for _, m := range l.Gossip().Members() {
					if m.Tags.ID == id && m.Status == gossip.StatusAlive {
						return nil
					}
				}
				return fmt.Errorf("not alive")
			})
			start := time.Now()
			if err := c.KillAgent(id); err != nil {
				b.Fatal(err)
			}
			for {
				ch := l.FSM().Changed()
				if a, _ := l.State().Agent(id); a.GetState() == agorav1.AgentState_AGENT_STATE_UNREACHABLE {
					break
				}
				select {
				case <-ch:
				case <-time.After(2 * time.Minute):
					b.Fatalf("%s not unreachable 2 minutes after the kill", id)
				}
			}
			took = append(took, time.Since(start))
			if _, err := c.RestartAgent(ctx, id); err != nil {
				b.Fatal(err)
			}
			agWaitAgentState(b, c, 60*time.Second, id, agorav1.AgentState_AGENT_STATE_ACTIVE)
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "p50-ms")
		b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "p99-ms")
		b.Logf("%s, %d agents: %v", profile, n, took)
	}
}

// TestLivenessProbesBeforeMarking: an agent missing from the leader's
// gossip view that still answers a direct ping at its gossip address is
// not marked UNREACHABLE (and is joined back into the pool), while one
// that does not answer is.
func TestLivenessProbesBeforeMarking(t *testing.T) {
	c, l := agStartAgentCluster(t, devcluster.Options{Masters: 1, MasterConfig: func(cfg *master.Config) {
		cfg.LivenessGrace = 500 * time.Millisecond
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Two agents' gossip endpoints that never joined the masters' pool:
	// "ghost" keeps answering pings, "dead" is shut down.
	start := func(id string) *gossip.Pool {
		p, err := gossip.New(gossip.Config{NodeName: "agent/" + id, BindAddr: "127.0.0.1:0", Profile: gossip.ProfileLocal,
			Tags: gossip.Tags{Role: gossip.RoleAgent, ID: id}, Logger: agLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Shutdown() })
		return p
	}
	ghost, dead := start("ghost"), start("dead")
	deadAddr := dead.Addr()
	if err := dead.Shutdown(); err != nil {
		t.Fatal(err)
	}
	cl := client.New(c.Addrs()[0]).Agent
	for id, addr := range map[string]string{"ghost": ghost.Addr(), "dead": deadAddr} {
		r := agRegistration(id)
		r.GossipAddress = addr
		if _, err := cl.RegisterAgent(ctx, connect.NewRequest(r)); err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
	}
	// Both are missing from the leader's gossip view; only "dead" must go.
	agWaitAgentState(t, c, 20*time.Second, "dead", agorav1.AgentState_AGENT_STATE_UNREACHABLE)
	if a, _ := l.State().Agent("ghost"); a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
		t.Fatalf("ghost answers pings but is %v", a.GetState())
	}
	agWaitFor(t, 10*time.Second, "ghost alive in the leader's gossip view", func() error {
		for _, m := range l.Gossip().Members() {
			if m.Tags.ID == "ghost" && m.Status == gossip.StatusAlive {
				return nil
			}
		}
		return fmt.Errorf("members: %v", l.Gossip().Members())
	})
	if a, _ := l.State().Agent("ghost"); a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
		t.Fatalf("ghost is %v after rejoining", a.GetState())
	}
}
