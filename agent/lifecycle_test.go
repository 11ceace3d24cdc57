package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/master"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// pidTask is a task command that records the pid of its long-lived
// process in the sandbox ("pid") and sleeps.
const pidTask = `echo $$ > pid.tmp && mv pid.tmp pid && exec sleep 600`

// launcher is a scheduler that launches the tasks it is asked to (one
// LAUNCH or one LAUNCH_GROUP per request, on the first offer that fits) and
// records every status update it receives.
type launcher struct {
	mu      sync.Mutex
	d       framework.Driver
	pending [][]*agorav1.TaskInfo // each entry is one operation's tasks
	group   []bool
	updates []*agorav1.TaskStatus
}

func (s *launcher) Subscribed(d framework.Driver, _ string, _ bool) {
	s.mu.Lock()
	s.d = d
	s.mu.Unlock()
}

// launch asks for tasks (one operation; a group when group is true).
func (s *launcher) launch(group bool, tasks ...*agorav1.TaskInfo) {
	s.mu.Lock()
	s.pending = append(s.pending, tasks)
	s.group = append(s.group, group)
	d := s.d
	s.mu.Unlock()
	if d != nil {
		_ = d.Revive(context.Background())
	}
}

func (s *launcher) Offers(d framework.Driver, offers []*agorav1.Offer) {
	ctx := context.Background()
	refuse := 0.2
	for _, o := range offers {
		s.mu.Lock()
		var ops []*agorav1.Operation
		for i, tasks := range s.pending {
			for _, t := range tasks {
				t.AgentId = o.GetAgentId()
			}
			if s.group[i] {
				ops = append(ops, framework.LaunchGroup(tasks...))
			} else {
				ops = append(ops, framework.Launch(tasks...))
			}
		}
		s.pending, s.group = nil, nil
		s.mu.Unlock()
		if len(ops) == 0 {
			_ = d.Decline(ctx, []string{o.GetId()}, &refuse)
			continue
		}
		if err := d.Accept(ctx, []string{o.GetId()}, ops, &refuse); err != nil {
			s.mu.Lock()
			for _, op := range ops {
				s.pending = append(s.pending, op.GetTasks())
				s.group = append(s.group, op.GetType() == agorav1.OperationType_OPERATION_TYPE_LAUNCH_GROUP)
			}
			s.mu.Unlock()
		}
	}
}

func (s *launcher) Rescind(framework.Driver, string) {}
func (s *launcher) Failure(framework.Driver, string) {}
func (s *launcher) Error(framework.Driver, string)   {}

func (s *launcher) Update(_ framework.Driver, st *agorav1.TaskStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates = append(s.updates, st)
}

// seen returns the updates with a uuid (not reconciliation answers) of
// task id received so far.
func (s *launcher) seen(id string) []agorav1.TaskState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []agorav1.TaskState
	for _, st := range s.updates {
		if st.GetTaskId() == id && st.GetUuid() != "" {
			out = append(out, st.GetState())
		}
	}
	return out
}

func (s *launcher) last(id string) agorav1.TaskState {
	states := s.seen(id)
	if len(states) == 0 {
		return agorav1.TaskState_TASK_STATE_UNSPECIFIED
	}
	return states[len(states)-1]
}

// lifeCluster is one master (a quick re-registration timeout when asked)
// and agent a1, on the local gossip profile.
type lifeCluster struct {
	*devcluster.Cluster
	agent devcluster.AgentOptions
}

func startLifeCluster(t testing.TB, reregister time.Duration) *lifeCluster {
	t.Helper()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to see the tasks' processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 1, DataDir: t.TempDir(), Logger: testLogger(),
		GossipProfile: gossip.ProfileLocal,
		MasterConfig: func(cfg *master.Config) {
			cfg.AgentReregisterTimeout = reregister
			cfg.RaftProfile = master.RaftProfileFast
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	lc := &lifeCluster{Cluster: c, agent: devcluster.AgentOptions{ID: "a1", Resources: "cpus:4;mem:2048;disk:100"}}
	if _, err := c.StartAgent(ctx, lc.agent); err != nil {
		t.Fatal(err)
	}
	return lc
}

// runFramework runs s as a framework (partition-aware or not) until the
// test ends.
func (c *lifeCluster) runFramework(t testing.TB, name string, aware bool, s framework.Scheduler) {
	info := &agorav1.FrameworkInfo{Name: name, Roles: []string{"*"}, FailoverTimeoutSeconds: 600}
	if aware {
		info.Capabilities = []agorav1.Capability{agorav1.Capability_CAPABILITY_PARTITION_AWARE}
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- framework.Run(ctx, framework.Config{Masters: c.Addrs(), Logger: testLogger(), Info: info,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}, s)
	}()
	t.Cleanup(func() { stop(); <-done })
}

func (c *lifeCluster) state() *fsmState {
	return &fsmState{c.Leader()}
}

// fsmState reads the leader's replicated state.
type fsmState struct{ m *master.Master }

func (s *fsmState) agent(id string) *agorav1.Agent {
	if s.m == nil {
		return nil
	}
	a, _ := s.m.State().Agent(id)
	return a
}

func (s *fsmState) task(fw, id string) *agorav1.Task {
	if s.m == nil {
		return nil
	}
	for _, t := range s.m.State().Tasks() {
		if t.GetId() == id && (fw == "" || t.GetFrameworkId() == fw) {
			return t
		}
	}
	return nil
}

func lifeTask(id, cmd string) *agorav1.TaskInfo {
	t := framework.Task(id, "", cmd, framework.Scalar("cpus", 0.1), framework.Scalar("mem", 16))
	t.KillGraceSeconds = 1
	return t
}

// taskPid waits for the pid a pidTask recorded in its sandbox on agent a1.
func (c *lifeCluster) taskPid(t testing.TB, fw, id string) int {
	t.Helper()
	path := filepath.Join(c.Dir(), "agents", "a1", "executor", "tasks", fw, id, "pid")
	var pid int
	poll(t, 20*time.Second, "pid of task "+id, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	// Whatever happens to the test, the task does not outlive it.
	pgid, err := syscall.Getpgid(pid)
	if err == nil {
		t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	}
	return pid
}

// alive reports whether pid runs (a zombie has ended).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func waitAgentState(t testing.TB, c *lifeCluster, d time.Duration, want agorav1.AgentState) *agorav1.Agent {
	t.Helper()
	var a *agorav1.Agent
	poll(t, d, "agent a1 "+want.String(), func() error {
		a = c.state().agent("a1")
		if a.GetState() != want {
			return fmt.Errorf("state %s", a.GetState())
		}
		return nil
	})
	return a
}

func waitSeen(t testing.TB, s *launcher, d time.Duration, id string, want agorav1.TaskState) {
	t.Helper()
	poll(t, d, "framework sees "+id+" "+want.String(), func() error {
		if got := s.last(id); got != want {
			return fmt.Errorf("last update %s (all: %v)", got, s.seen(id))
		}
		return nil
	})
}

// restartCase is the common body of the restart tests: two RUNNING tasks
// of a framework that is not partition-aware; stop the agent (gracefully
// or abruptly), start it again, and the same processes are RUNNING with
// no status update for the framework in between.
func restartCase(t *testing.T, stop func(c *lifeCluster) error, wantWhileAway agorav1.AgentState) {
	c := startLifeCluster(t, 10*time.Minute)
	s := &launcher{}
	c.runFramework(t, "plain", false, s)
	s.launch(false, lifeTask("t1", pidTask), lifeTask("t2", pidTask))
	waitSeen(t, s, 30*time.Second, "t1", agorav1.TaskState_TASK_STATE_RUNNING)
	waitSeen(t, s, 30*time.Second, "t2", agorav1.TaskState_TASK_STATE_RUNNING)
	fw := c.state().task("", "t1").GetFrameworkId()
	pids := map[string]int{"t1": c.taskPid(t, fw, "t1"), "t2": c.taskPid(t, fw, "t2")}
	uuids := map[string]string{}
	for id := range pids {
		uuids[id] = c.state().task(fw, id).GetStatus().GetUuid()
	}
	before := map[string]int{"t1": len(s.seen("t1")), "t2": len(s.seen("t2"))}
	since := c.state().agent("a1").GetStateSince().AsTime()

	if err := stop(c); err != nil {
		t.Fatalf("stop agent: %v", err)
	}
	if wantWhileAway != agorav1.AgentState_AGENT_STATE_UNSPECIFIED {
		waitAgentState(t, c, 10*time.Second, wantWhileAway)
	}
	for id, pid := range pids {
		if !alive(pid) {
			t.Fatalf("task %s (pid %d) died with its agent", id, pid)
		}
		if st := c.state().task(fw, id).GetState(); st != agorav1.TaskState_TASK_STATE_RUNNING {
			t.Fatalf("task %s is %s while its agent is away, want RUNNING", id, st)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := c.StartAgent(ctx, c.agent)
	if err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "agent a1 registered again", func() error {
		if !a.Registered() {
			return fmt.Errorf("not registered")
		}
		return nil
	})
	ag := waitAgentState(t, c, 10*time.Second, agorav1.AgentState_AGENT_STATE_ACTIVE)
	if wantWhileAway == agorav1.AgentState_AGENT_STATE_RESTARTING && !ag.GetStateSince().AsTime().After(since) {
		t.Fatalf("agent state_since %v not after its first registration %v", ag.GetStateSince().AsTime(), since)
	}

	// A barrier: t3's RUNNING comes after anything the re-registration
	// committed, on the same ordered stream.
	s.launch(false, lifeTask("t3", pidTask))
	waitSeen(t, s, 30*time.Second, "t3", agorav1.TaskState_TASK_STATE_RUNNING)
	c.taskPid(t, fw, "t3")
	for id, pid := range pids {
		if !alive(pid) {
			t.Fatalf("task %s (pid %d) died across the agent restart", id, pid)
		}
		if got := c.taskPid(t, fw, id); got != pid {
			t.Fatalf("task %s has pid %d after the restart, want %d", id, got, pid)
		}
		cur := c.state().task(fw, id)
		if cur.GetState() != agorav1.TaskState_TASK_STATE_RUNNING || cur.GetStatus().GetUuid() != uuids[id] {
			t.Fatalf("task %s after the restart: %s uuid %s, want RUNNING with the same status (uuid %s)",
				id, cur.GetState(), cur.GetStatus().GetUuid(), uuids[id])
		}
		if got := s.seen(id); len(got) != before[id] {
			t.Fatalf("framework saw updates of %s across the restart: %v (had %d before)", id, got, before[id])
		}
	}
}

// TestGracefulRestartKeepsTasks: SIGTERM-like stop (the agent says it
// stops for a restart) and a start again: same processes, RUNNING, and the
// framework (not partition-aware) sees nothing.
func TestGracefulRestartKeepsTasks(t *testing.T) {
	restartCase(t, func(c *lifeCluster) error { return c.StopAgent("a1") }, agorav1.AgentState_AGENT_STATE_RESTARTING)
}

// TestCrashRestartKeepsTasks: an abrupt stop (no goodbye, no gossip leave,
// as SIGKILL) and a start again before the unreachable path fires: same
// processes, RUNNING, and the framework sees nothing.
func TestCrashRestartKeepsTasks(t *testing.T) {
	restartCase(t, func(c *lifeCluster) error { return c.KillAgent("a1") }, agorav1.AgentState_AGENT_STATE_UNSPECIFIED)
}

// TestRestartPastReregisterTimeout: an agent that said it restarts but
// stays away past the re-registration timeout takes the usual path:
// UNREACHABLE, its tasks LOST for a framework that is not partition-aware
// and UNREACHABLE for one that is; when it comes back the LOST task is
// killed and the partition-aware one is RUNNING again.
func TestRestartPastReregisterTimeout(t *testing.T) {
	c := startLifeCluster(t, 2*time.Second)
	plain, aware := &launcher{}, &launcher{}
	c.runFramework(t, "plain", false, plain)
	c.runFramework(t, "aware", true, aware)
	plain.launch(false, lifeTask("p1", pidTask))
	aware.launch(false, lifeTask("w1", pidTask))
	waitSeen(t, plain, 30*time.Second, "p1", agorav1.TaskState_TASK_STATE_RUNNING)
	waitSeen(t, aware, 30*time.Second, "w1", agorav1.TaskState_TASK_STATE_RUNNING)
	pfw, wfw := c.state().task("", "p1").GetFrameworkId(), c.state().task("", "w1").GetFrameworkId()
	ppid, wpid := c.taskPid(t, pfw, "p1"), c.taskPid(t, wfw, "w1")

	if err := c.StopAgent("a1"); err != nil {
		t.Fatal(err)
	}
	waitAgentState(t, c, 10*time.Second, agorav1.AgentState_AGENT_STATE_RESTARTING)
	waitAgentState(t, c, 20*time.Second, agorav1.AgentState_AGENT_STATE_UNREACHABLE)
	waitSeen(t, plain, 10*time.Second, "p1", agorav1.TaskState_TASK_STATE_LOST)
	waitSeen(t, aware, 10*time.Second, "w1", agorav1.TaskState_TASK_STATE_UNREACHABLE)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.StartAgent(ctx, c.agent); err != nil {
		t.Fatal(err)
	}
	waitAgentState(t, c, 30*time.Second, agorav1.AgentState_AGENT_STATE_ACTIVE)
	waitSeen(t, aware, 20*time.Second, "w1", agorav1.TaskState_TASK_STATE_RUNNING)
	poll(t, 20*time.Second, "the LOST task's process is killed", func() error {
		if alive(ppid) {
			return fmt.Errorf("pid %d alive", ppid)
		}
		return nil
	})
	if !alive(wpid) {
		t.Fatalf("partition-aware task (pid %d) was killed", wpid)
	}
}

// TestDecommissionKillsTasks: a decommissioning agent kills its tasks (the
// framework sees KILLED) and the masters mark it GONE.
func TestDecommissionKillsTasks(t *testing.T) {
	c := startLifeCluster(t, 10*time.Minute)
	s := &launcher{}
	c.runFramework(t, "plain", false, s)
	s.launch(false, lifeTask("t1", pidTask))
	waitSeen(t, s, 30*time.Second, "t1", agorav1.TaskState_TASK_STATE_RUNNING)
	fw := c.state().task("", "t1").GetFrameworkId()
	pid := c.taskPid(t, fw, "t1")

	if err := c.DecommissionAgent("a1"); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("task (pid %d) survived the decommission", pid)
	}
	waitAgentState(t, c, 10*time.Second, agorav1.AgentState_AGENT_STATE_GONE)
	waitSeen(t, s, 10*time.Second, "t1", agorav1.TaskState_TASK_STATE_KILLED)
	// Acknowledged, the terminal task may be gone from the state already.
	if cur := c.state().task(fw, "t1"); cur != nil && cur.GetState() != agorav1.TaskState_TASK_STATE_KILLED {
		t.Fatalf("task t1 is %s, want KILLED", cur.GetState())
	}
}

// TestLaunchGroupFailsTogether: the tasks of a LAUNCH_GROUP start together;
// when one fails, the agent kills the others (Mesos task-group semantics),
// and a task launched alone beside them is left running.
func TestLaunchGroupFailsTogether(t *testing.T) {
	c := startLifeCluster(t, 10*time.Minute)
	s := &launcher{}
	c.runFramework(t, "plain", false, s)
	s.launch(false, lifeTask("solo", pidTask))
	waitSeen(t, s, 30*time.Second, "solo", agorav1.TaskState_TASK_STATE_RUNNING)
	s.launch(true, lifeTask("g1", pidTask), lifeTask("g2", pidTask),
		lifeTask("g3", `while [ ! -e go ]; do sleep 0.05; done; exit 3`))
	for _, id := range []string{"g1", "g2", "g3"} {
		waitSeen(t, s, 30*time.Second, id, agorav1.TaskState_TASK_STATE_RUNNING)
	}
	fw := c.state().task("", "g1").GetFrameworkId()
	for _, id := range []string{"g1", "g2", "g3"} {
		if g := c.state().task(fw, id).GetGroupId(); g == "" {
			t.Fatalf("task %s has no group id", id)
		}
	}
	p1, p2, solo := c.taskPid(t, fw, "g1"), c.taskPid(t, fw, "g2"), c.taskPid(t, fw, "solo")
	// g3 fails.
	goFile := filepath.Join(c.Dir(), "agents", "a1", "executor", "tasks", fw, "g3", "go")
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitSeen(t, s, 20*time.Second, "g3", agorav1.TaskState_TASK_STATE_FAILED)
	waitSeen(t, s, 20*time.Second, "g1", agorav1.TaskState_TASK_STATE_KILLED)
	waitSeen(t, s, 20*time.Second, "g2", agorav1.TaskState_TASK_STATE_KILLED)
	if alive(p1) || alive(p2) {
		t.Fatalf("group tasks still alive after their sibling failed: g1 %v g2 %v", alive(p1), alive(p2))
	}
	if !alive(solo) || s.last("solo") != agorav1.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("a task outside the group was touched: alive %v, last %s", alive(solo), s.last("solo"))
	}
}
