package framework_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/master"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// fillSched launches queued tasks on whatever it is offered (batch) or
// demands what it cannot place and launches it when offered (prod).
type fillSched struct {
	name  string
	shape []*agorav1.Resource
	grace float64
	cmd   string

	mu       sync.Mutex
	d        framework.Driver
	queue    []string
	statuses map[string][]*agorav1.TaskStatus // task -> updates with a uuid, in order
	errs     []string
}

func newFillSched(name, cmd string, grace float64, cpus, mem float64, tasks ...string) *fillSched {
	return &fillSched{name: name, cmd: cmd, grace: grace, queue: tasks, statuses: map[string][]*agorav1.TaskStatus{},
		shape: []*agorav1.Resource{framework.Scalar("cpus", cpus), framework.Scalar("mem", mem)}}
}

func (s *fillSched) Subscribed(d framework.Driver, _ string, _ bool) {
	s.mu.Lock()
	s.d = d
	s.mu.Unlock()
	s.demand(context.Background(), d)
}

// demand says what is queued (prod only: batch never demands).
func (s *fillSched) demand(ctx context.Context, d framework.Driver) {
	if s.name != "prod" {
		return
	}
	s.mu.Lock()
	n := len(s.queue)
	s.mu.Unlock()
	var ds []*agorav1.Demand
	if n > 0 {
		ds = append(ds, &agorav1.Demand{Role: "prod", Resources: s.shape, Count: uint32(n)})
	}
	if err := d.Demand(ctx, ds...); err != nil {
		s.mu.Lock()
		s.errs = append(s.errs, "demand: "+err.Error())
		s.mu.Unlock()
	}
}

func (s *fillSched) fits(o *agorav1.Offer) int {
	have := map[string]float64{}
	for _, r := range o.GetResources() {
		if r.GetRole() == "" {
			have[r.GetName()] += r.GetScalar()
		}
	}
	n := 1 << 30
	for _, r := range s.shape {
		n = min(n, int(have[r.GetName()]/r.GetScalar()+1e-9))
	}
	return n
}

func (s *fillSched) Offers(d framework.Driver, offers []*agorav1.Offer) {
	ctx := context.Background()
	for _, o := range offers {
		s.mu.Lock()
		n := min(s.fits(o), len(s.queue))
		take := slices.Clone(s.queue[:n])
		s.queue = s.queue[n:]
		s.mu.Unlock()
		refuse := 0.5
		if len(take) == 0 {
			_ = d.Decline(ctx, []string{o.GetId()}, &refuse)
			continue
		}
		var tasks []*agorav1.TaskInfo
		for _, id := range take {
			ti := framework.Task(id, o.GetAgentId(), s.cmd, s.shape...)
			ti.KillGraceSeconds = s.grace
			tasks = append(tasks, ti)
		}
		if err := d.Accept(ctx, []string{o.GetId()}, []*agorav1.Operation{framework.Launch(tasks...)}, &refuse); err != nil {
			s.mu.Lock()
			s.queue = append(take, s.queue...)
			s.errs = append(s.errs, "accept: "+err.Error())
			s.mu.Unlock()
			continue
		}
		s.demand(ctx, d)
	}
}

func (s *fillSched) Rescind(framework.Driver, string) {}

func (s *fillSched) Update(_ framework.Driver, st *agorav1.TaskStatus) {
	if st.GetUuid() == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statuses[st.GetTaskId()] = append(s.statuses[st.GetTaskId()], st)
}

func (s *fillSched) Failure(framework.Driver, string) {}

func (s *fillSched) Error(_ framework.Driver, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, "error event: "+msg)
}

func (s *fillSched) enqueue(ctx context.Context, tasks ...string) {
	s.mu.Lock()
	s.queue = append(s.queue, tasks...)
	d := s.d
	s.mu.Unlock()
	s.demand(ctx, d)
}

// last returns the newest update of a task the framework saw.
func (s *fillSched) last(task string) *agorav1.TaskStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	ups := s.statuses[task]
	if len(ups) == 0 {
		return nil
	}
	return ups[len(ups)-1]
}

// distinct counts the distinct status uuids of a task in state st.
func (s *fillSched) distinct(task string, st agorav1.TaskState) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, u := range s.statuses[task] {
		if u.GetState() == st {
			seen[u.GetUuid()] = true
		}
	}
	return len(seen)
}

func (s *fillSched) errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errs)
}

// TestPreemptionEndToEnd drives 3 masters and one real agent: a batch
// framework with the revocable capability fills the agent with revocable
// tasks; a prod framework (higher priority) demands room; the fewest
// batch tasks needed are preempted (KILLING, then KILLED with reason
// PREEMPTED) and the prod task runs. Then the leader is killed while the
// next preemption's victims are still dying: no task is killed twice, none
// is lost, and the second prod task runs.
func TestPreemptionEndToEnd(t *testing.T) {
	log := e2eLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{
		Masters: 3, DataDir: t.TempDir(), Logger: log,
		MasterConfig: func(mc *master.Config) {
			mc.HeartbeatInterval = time.Second
			mc.PreemptionWindow = 30 * time.Second
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	l, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*agorav1.Role{{Name: "prod", Priority: 10}, {Name: "batch", Priority: 0}} {
		if _, err := l.Apply(ctx, fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: r}); err != nil {
			t.Fatalf("set role %s: %v", r.GetName(), err)
		}
	}
	if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: "a1", Resources: "cpus:2;mem:2048;disk:1000"}); err != nil {
		t.Fatal(err)
	}
	masters := c.Addrs()

	// Batch ignores SIGTERM, so its victims stay KILLING for their 3 s
	// grace: long enough to kill the leader in the middle.
	const batchCmd = "trap '' TERM; sleep 300"
	batch := newFillSched("batch", batchCmd, 3, 0.5, 512, "b1", "b2", "b3", "b4")
	runFramework2(t, masters, &agorav1.FrameworkInfo{Name: "batch", Roles: []string{"batch"}, FailoverTimeoutSeconds: 3600,
		Capabilities: []agorav1.Capability{agorav1.Capability_CAPABILITY_REVOCABLE_RESOURCES}}, batch, log)
	var bfid string
	waitFor(t, 60*time.Second, "batch tasks RUNNING and revocable", func() error {
		if d := batch.d0(); d != nil {
			bfid = d.FrameworkID()
		}
		for _, id := range []string{"b1", "b2", "b3", "b4"} {
			tk, err := taskIn(c, bfid, id)
			if err != nil {
				return err
			}
			if tk.GetState() != agorav1.TaskState_TASK_STATE_RUNNING || !tk.GetRevocable() {
				return fmt.Errorf("%s is %v revocable=%v", id, tk.GetState(), tk.GetRevocable())
			}
		}
		return nil
	})

	// Prod demands one task of 1 cpu: two batch tasks must go, no more.
	prod := newFillSched("prod", "sleep 300", 0, 1, 1024, "p1")
	runFramework2(t, masters, &agorav1.FrameworkInfo{Name: "prod", Roles: []string{"prod"}, FailoverTimeoutSeconds: 3600}, prod, log)
	var pfid string
	waitFor(t, 90*time.Second, "p1 RUNNING after preemption", func() error {
		if d := prod.d0(); d != nil {
			pfid = d.FrameworkID()
		}
		tk, err := taskIn(c, pfid, "p1")
		if err != nil {
			return err
		}
		if tk.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
			return fmt.Errorf("p1 is %v", tk.GetState())
		}
		return nil
	})
	victims := preempted(t, c, batch, bfid, 2)

	// The next demand: the two other batch tasks must go. Kill the leader
	// as soon as the decision is in the log, while they are dying.
	prod.enqueue(ctx, "p2")
	var rest []string
	for _, id := range []string{"b1", "b2", "b3", "b4"} {
		if !slices.Contains(victims, id) {
			rest = append(rest, id)
		}
	}
	waitFor(t, 60*time.Second, "second preemption decided", func() error {
		for _, id := range rest {
			tk, err := taskIn(c, bfid, id)
			if err != nil {
				return err
			}
			if tk.GetKillReason() != fsm.KillReasonPreempted {
				return fmt.Errorf("%s not preempted yet (%v)", id, tk.GetState())
			}
		}
		return nil
	})
	old := c.LeaderIndex()
	c.Kill(old)
	waitFor(t, 60*time.Second, "a new leader", func() error {
		if i := c.LeaderIndex(); i < 0 || i == old {
			return errors.New("no new leader yet")
		}
		return nil
	})
	waitFor(t, 90*time.Second, "p2 RUNNING after the failover", func() error {
		tk, err := taskIn(c, pfid, "p2")
		if err != nil {
			return err
		}
		if tk.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
			return fmt.Errorf("p2 is %v", tk.GetState())
		}
		return nil
	})
	preempted(t, c, batch, bfid, 4)
	if errs := append(batch.errors(), prod.errors()...); len(errs) > 0 {
		t.Errorf("scheduler errors: %v", errs)
	}
}

// preempted waits until exactly want batch tasks were preempted, each
// seen by the framework once KILLING and once KILLED, both with reason
// PREEMPTED, and the others still RUNNING; it returns the preempted ids.
func preempted(t *testing.T, c *devcluster.Cluster, batch *fillSched, bfid string, want int) []string {
	t.Helper()
	var got []string
	waitFor(t, 60*time.Second, fmt.Sprintf("%d batch tasks KILLED with reason PREEMPTED", want), func() error {
		got = got[:0]
		for _, id := range []string{"b1", "b2", "b3", "b4"} {
			last := batch.last(id)
			switch {
			case last == nil:
				return fmt.Errorf("%s: no update yet", id)
			case last.GetState() == agorav1.TaskState_TASK_STATE_KILLED:
				if last.GetReason() != fsm.KillReasonPreempted {
					return fmt.Errorf("%s KILLED with reason %q", id, last.GetReason())
				}
				got = append(got, id)
			case last.GetState() == agorav1.TaskState_TASK_STATE_RUNNING:
			default:
				return fmt.Errorf("%s is %v (%s)", id, last.GetState(), last.GetReason())
			}
		}
		if len(got) != want {
			return fmt.Errorf("preempted %v, want %d", got, want)
		}
		return nil
	})
	for _, id := range got {
		if n := batch.distinct(id, agorav1.TaskState_TASK_STATE_KILLING); n != 1 {
			t.Errorf("%s: %d distinct KILLING updates, want 1 (killed twice?)", id, n)
		}
		if n := batch.distinct(id, agorav1.TaskState_TASK_STATE_KILLED); n != 1 {
			t.Errorf("%s: %d distinct KILLED updates, want 1", id, n)
		}
	}
	for _, id := range []string{"b1", "b2", "b3", "b4"} {
		if slices.Contains(got, id) {
			continue
		}
		if tk, err := taskIn(c, bfid, id); err != nil || tk.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
			t.Errorf("%s should still run: %v %v", id, tk.GetState(), err)
		}
	}
	return got
}

func (s *fillSched) d0() framework.Driver {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d
}

func runFramework2(t testing.TB, masters []string, info *agorav1.FrameworkInfo, s framework.Scheduler, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- framework.Run(ctx, framework.Config{Masters: masters, Info: info, Logger: log,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}, s)
	}()
	t.Cleanup(func() { cancel(); <-done })
}
