package story

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/devcluster"
	"github.com/agora-sched/agora/examples/batch"
	"github.com/agora-sched/agora/examples/kvservice"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service"
)

// Options configures a run of the story.
type Options struct {
	// Bin is the agora binary the tasks run (kvservice pods, batch units).
	Bin string
	// Short is the CI form: fewer keys and units, shorter work.
	Short bool
	// Out receives the narration; Logger the cluster's logs (nil: none);
	// JobOut the batch job's own progress lines (nil: none).
	JobOut io.Writer
	Out    io.Writer
	Logger *slog.Logger
}

// Summary is the story's last line.
type Summary struct {
	Demo            string  `json:"demo"`
	KVKeysWritten   int     `json:"kv_keys_written"`
	KVKeysLost      int     `json:"kv_keys_lost"`
	Preemptions     int     `json:"preemptions"`
	PriorityWaitMS  int64   `json:"priority_wait_ms"`
	ScaleMS         int64   `json:"scale_ms"`
	LeaderFailovers int     `json:"leader_failovers"`
	DrainedAgents   int     `json:"drained_agents"`
	BatchExact      bool    `json:"batch_exact"`
	MaxBatchUtil    float64 `json:"max_task_utilization_with_batch"`
}

// Sizes of the story.
type sizes struct {
	keys, units, lines int
	work               time.Duration
	webPods            int
}

func sizesOf(short bool) sizes {
	if short {
		return sizes{keys: 50, units: 60, lines: 2000, work: 8 * time.Second, webPods: 2}
	}
	return sizes{keys: 500, units: 200, lines: 20000, work: 20 * time.Second, webPods: 3}
}

// Agents of the story: 6 agents of 2 cpus (5 kv pods go one per agent, and
// one must move on a drain); the batch job's units take a
// quarter cpu each, so it can hold most of the cluster.
const (
	agentRes    = "cpus:2;mem:2048;disk:4096"
	agentCount  = 6
	unitCPUs    = 0.25
	unitMem     = 32
	batchCap    = 0.9
	stepTimeout = 90 * time.Second
)

type story struct {
	o   Options
	sz  sizes
	c   *devcluster.Cluster
	cl  *client.Client
	out io.Writer
	mu  sync.Mutex
	sum Summary
	t0  time.Time
}

func (s *story) say(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "[%6.1fs] %s\n", time.Since(s.t0).Seconds(), fmt.Sprintf(format, args...))
}

// Run tells the story and returns its summary; the error says what was
// lost or wrong.
func Run(ctx context.Context, o Options) (Summary, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Bin == "" {
		return Summary{}, errors.New("story: no agora binary for the tasks")
	}
	s := &story{o: o, sz: sizesOf(o.Short), out: o.Out, t0: time.Now(), sum: Summary{Demo: "failed"}}
	err := s.run(ctx)
	if err == nil {
		s.sum.Demo = "ok"
	}
	return s.sum, err
}

func (s *story) run(ctx context.Context) error {
	s.say("starting 3 masters and %d agents (%s each) on loopback", agentCount, agentRes)
	c, err := devcluster.Start(ctx, devcluster.Options{Masters: 3, Logger: s.o.Logger})
	if err != nil {
		return fmt.Errorf("story: %w", err)
	}
	s.c = c
	defer func() {
		c.DecommissionAgents() // kills the tasks: nothing outlives the story
		c.Stop()
	}()
	if _, err := c.WaitLeader(ctx); err != nil {
		return err
	}
	s.cl = client.New(strings.Join(c.Addrs(), ","))
	for i := 1; i <= agentCount; i++ {
		base, err := devcluster.FreeTCPPorts(20)
		if err != nil {
			return err
		}
		res := fmt.Sprintf("%s;ports:[%d-%d]", agentRes, base, base+19)
		if _, err := c.StartAgent(ctx, devcluster.AgentOptions{ID: fmt.Sprintf("a%d", i), Resources: res}); err != nil {
			return err
		}
	}
	if err := s.setRoles(ctx); err != nil {
		return err
	}

	// 1. The stateful service and its keys.
	kvStart := time.Now()
	if _, err := s.cl.Operator.RunService(ctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: s.kvSpec("kv", "kv", 3)})); err != nil {
		return fmt.Errorf("step 1: deploying kv: %w", err)
	}
	st, err := s.waitComplete(ctx, "kv", 3)
	if err != nil {
		return fmt.Errorf("step 1: %w", err)
	}
	s.say("1. kv: 3 pods ready in %s (role kv, priority 10, each on a reservation and a persistent volume)", time.Since(kvStart).Round(time.Millisecond))
	primary := st.Pods[0].Address
	for i := range s.sz.keys {
		if err := kvPut(ctx, primary, fmt.Sprintf("key%05d", i), fmt.Sprintf("value%05d", i)); err != nil {
			return fmt.Errorf("step 1: writing keys: %w", err)
		}
	}
	s.sum.KVKeysWritten = s.sz.keys
	s.say("1. wrote %d keys to kv (every write on a quorum of pods before it is acknowledged)", s.sz.keys)

	// 2. The batch job on the slack.
	job, err := batch.New(batch.Config{
		Masters: c.Addrs(), Role: "batch", Revocable: true, Units: s.sz.units, Lines: s.sz.lines, Out: s.o.JobOut,
		CPUs: unitCPUs, Mem: unitMem, Work: s.sz.work, Logger: s.o.Logger,
		Command: func(unit, lines int, url string, work time.Duration) string {
			return fmt.Sprintf("exec %s batch unit --unit %d --lines %d --report %s --work %s", s.o.Bin, unit, lines, url, work)
		},
	})
	if err != nil {
		return err
	}
	type jobEnd struct {
		res batch.Result
		err error
	}
	jobCtx, stopJob := context.WithCancel(ctx)
	defer stopJob()
	jobDone := make(chan jobEnd, 1)
	go func() { res, err := job.Run(jobCtx); jobDone <- jobEnd{res, err} }()
	var util utilWatch
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go util.run(watchCtx, s.cl)
	if err := poll(ctx, stepTimeout, "batch fills the slack", func() (bool, error) {
		p := job.Progress()
		return p.Running >= 8 && util.current() >= 0.6, nil
	}); err != nil {
		return fmt.Errorf("step 2: %w (utilization %.2f, %+v)", err, util.current(), job.Progress())
	}
	s.say("2. batch: %d units running on the slack (role batch, priority 0, max utilization %.0f%%); tasks hold %.0f%% of the cluster",
		job.Progress().Running, batchCap*100, util.current()*100)

	// Let the batch job hold the slack for a while: its tasks never take
	// the cluster past its cap.
	hold := 2 * time.Second
	if !s.o.Short {
		hold = 10 * time.Second
	}
	select {
	case <-time.After(hold): // the demo's pacing: an observation window, not synchronisation
	case <-ctx.Done():
		return ctx.Err()
	}
	s.sum.MaxBatchUtil = util.maxSeen()
	s.say("2. over %s the most the tasks held of any resource kind was %.1f%% (cap %.0f%%)", hold, s.sum.MaxBatchUtil*100, batchCap*100)
	if s.sum.MaxBatchUtil > batchCap+1e-9 {
		return fmt.Errorf("step 2: tasks held %.3f of the cluster with batch capped at %.2f", s.sum.MaxBatchUtil, batchCap)
	}

	// 3. Priority work on a full cluster.
	p0 := job.Progress()
	webStart := time.Now()
	if _, err := s.cl.Operator.RunService(ctx, connect.NewRequest(&agorav1.RunServiceRequest{Spec: s.webSpec(s.sz.webPods)})); err != nil {
		return fmt.Errorf("step 3: deploying web: %w", err)
	}
	if _, err := s.waitComplete(ctx, "web", s.sz.webPods); err != nil {
		return fmt.Errorf("step 3: %w", err)
	}
	s.sum.PriorityWaitMS = time.Since(webStart).Milliseconds()
	p1 := job.Progress()
	s.say("3. web (priority 10, %d pods of 1 cpu) running %d ms after it was deployed on a full cluster; batch tasks preempted meanwhile: %d",
		s.sz.webPods, s.sum.PriorityWaitMS, p1.Preemptions-p0.Preemptions)

	// 4. Scale kv 3 -> 5 with one command.
	before, err := s.status(ctx, "kv")
	if err != nil {
		return err
	}
	scaleStart := time.Now()
	if _, err := s.cl.Operator.ScaleService(ctx, connect.NewRequest(&agorav1.ScaleServiceRequest{Name: "kv", Count: 5})); err != nil {
		return fmt.Errorf("step 4: %w", err)
	}
	st, err = s.waitComplete(ctx, "kv", 5)
	if err != nil {
		return fmt.Errorf("step 4: %w", err)
	}
	s.sum.ScaleMS = time.Since(scaleStart).Milliseconds()
	for _, p := range before.Pods {
		if st.Pods[p.Index].TaskID != p.TaskID {
			return fmt.Errorf("step 4: the scale restarted %s (task %s -> %s)", p.Name, p.TaskID, st.Pods[p.Index].TaskID)
		}
	}
	s.say("4. kv scaled 3 -> 5 in %d ms with one command; the first 3 pods kept their tasks", s.sum.ScaleMS)

	// 5. An agent of a kv pod crashes with the pod's process, and returns.
	victim := st.Pods[1]
	if err := c.KillAgent(victim.AgentID); err != nil {
		return fmt.Errorf("step 5: %w", err)
	}
	killProcs("AGORA_TASK_ID=" + victim.TaskID)
	crash := time.Now()
	if _, err := c.RestartAgent(ctx, victim.AgentID); err != nil {
		return fmt.Errorf("step 5: %w", err)
	}
	if err := poll(ctx, stepTimeout, victim.Name+" relaunched in place", func() (bool, error) {
		cur, err := s.status(ctx, "kv")
		if err != nil || len(cur.Pods) <= victim.Index {
			return false, nil
		}
		p := cur.Pods[victim.Index]
		if p.AgentID != victim.AgentID || p.VolumeID != victim.VolumeID {
			return false, fmt.Errorf("%s moved to %s/%s", p.Name, p.AgentID, p.VolumeID)
		}
		return p.TaskID != victim.TaskID && p.Ready, nil
	}); err != nil {
		return fmt.Errorf("step 5: %w", err)
	}
	lost := s.checkKeys(ctx, victim.Address)
	s.say("5. agent %s crashed with %s's process and came back: the pod runs again in place %s later, on its volume; keys missing there: %d",
		victim.AgentID, victim.Name, time.Since(crash).Round(time.Millisecond), lost)
	if lost > 0 {
		s.sum.KVKeysLost = lost
		return fmt.Errorf("step 5: %d keys lost on %s", lost, victim.Name)
	}

	// 6. The leader master is killed.
	resBefore, err := s.reservations(ctx)
	if err != nil {
		return err
	}
	doneBefore := job.Progress().Done
	old := c.LeaderIndex()
	if old < 0 {
		return errors.New("step 6: no leader")
	}
	kill := time.Now()
	c.Kill(old)
	if _, err := c.WaitLeader(ctx); err != nil {
		return fmt.Errorf("step 6: %w", err)
	}
	s.sum.LeaderFailovers++
	resAfter, err := s.reservations(ctx)
	if err != nil {
		return err
	}
	if resAfter.reservations < resBefore.reservations || resAfter.volumes < resBefore.volumes {
		return fmt.Errorf("step 6: reservations %d -> %d, volumes %d -> %d across the failover",
			resBefore.reservations, resAfter.reservations, resBefore.volumes, resAfter.volumes)
	}
	if _, err := s.waitComplete(ctx, "kv", 5); err != nil {
		return fmt.Errorf("step 6: %w", err)
	}
	s.say("6. leader master killed; a new leader in %s with %d reservations and %d volumes (%d and %d before); kv complete; batch progress %d units, %d before",
		time.Since(kill).Round(time.Millisecond), resAfter.reservations, resAfter.volumes, resBefore.reservations, resBefore.volumes,
		job.Progress().Done, doneBefore)

	// 7. Drain.
	if err := s.drain(ctx, job); err != nil {
		return fmt.Errorf("step 7: %w", err)
	}

	// 8. The end: the batch job's exact answer, every key.
	var end jobEnd
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case end = <-jobDone:
			break wait
		case <-tick.C:
			p := job.Progress()
			s.say("8. batch: %d/%d units done, %d running, %d preempted, %d reruns", p.Done, p.Units, p.Running, p.Preemptions, p.Reruns)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if end.err != nil {
		return fmt.Errorf("step 8: batch job: %w", end.err)
	}
	want := batch.Expected(s.sz.units, s.sz.lines)
	s.sum.BatchExact = end.res.Total == want && end.res.Units == s.sz.units
	s.sum.Preemptions = end.res.Preemptions
	s.say("8. batch job done: %d ERROR lines over %d units (exact answer %d: %v), %d tasks, %d preempted, %d reruns",
		end.res.Total, end.res.Units, want, s.sum.BatchExact, end.res.Launched, end.res.Preemptions, end.res.Reruns)
	st, err = s.status(ctx, "kv")
	if err != nil {
		return err
	}
	s.sum.KVKeysLost = s.checkKeys(ctx, st.Pods[0].Address)
	s.say("8. kv: %d of %d keys read back from the primary", s.sz.keys-s.sum.KVKeysLost, s.sz.keys)
	switch {
	case s.sum.KVKeysLost > 0:
		return fmt.Errorf("%d kv keys lost", s.sum.KVKeysLost)
	case !s.sum.BatchExact:
		return fmt.Errorf("batch answered %d over %d units, want %d over %d", end.res.Total, end.res.Units, want, s.sz.units)
	}
	return nil
}

// setRoles gives kv and web priority over batch, and caps batch.
func (s *story) setRoles(ctx context.Context) error {
	for _, r := range []*agorav1.Role{
		{Name: "kv", Weight: 1, Priority: 10},
		{Name: "web", Weight: 1, Priority: 10},
		{Name: "batch", Weight: 1, Priority: 0, MaxUtilization: batchCap},
	} {
		if _, err := s.cl.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: r})); err != nil {
			return fmt.Errorf("role %s: %w", r.GetName(), err)
		}
	}
	return nil
}

func (s *story) kvSpec(name, role string, count int) []byte {
	return fmt.Appendf(nil, `{
  "name": %q, "role": %q,
  "pods": [{
    "name": "kv", "count": %d,
    "resources": {"cpus": 0.2, "mem": 64, "disk": 256, "ports": ["http"]},
    "volume": {"size": 128, "path": "data"},
    "command": "exec %s kvservice",
    "env": {"KV_INDEX": "{{.Index}}", "KV_LISTEN": ":{{port \"http\"}}", "KV_DATA": "{{.Volume}}", "KV_PEERS": "{{peers \"http\"}}"},
    "readiness": {"http": {"port": "http", "path": "/health"}, "interval_seconds": 0.2, "timeout_seconds": 1, "deadline_seconds": 60},
    "placement": {"one_per": "agent"},
    "kill_grace_seconds": 2
  }]
}`, name, role, count, s.o.Bin)
}

// webSpec is the priority work: stateless pods of a whole cpu each.
func (s *story) webSpec(count int) []byte {
	return fmt.Appendf(nil, `{
  "name": "web", "role": "web",
  "pods": [{
    "name": "server", "count": %d,
    "resources": {"cpus": 1, "mem": 128},
    "command": "exec %s sleep 1h",
    "kill_grace_seconds": 1
  }]
}`, count, s.o.Bin)
}

func (s *story) status(ctx context.Context, name string) (service.Status, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := s.cl.Operator.GetService(cctx, connect.NewRequest(&agorav1.GetServiceRequest{Name: name}))
	if err != nil {
		return service.Status{}, err
	}
	var st service.Status
	if err := json.Unmarshal(res.Msg.GetService().GetStatus(), &st); err != nil {
		return service.Status{}, fmt.Errorf("service %s status: %w", name, err)
	}
	return st, nil
}

// waitComplete waits for name's plan to be COMPLETE with n ready pods.
func (s *story) waitComplete(ctx context.Context, name string, n int) (service.Status, error) {
	var st service.Status
	err := poll(ctx, stepTimeout, fmt.Sprintf("%s complete with %d ready pods", name, n), func() (bool, error) {
		var err error
		st, err = s.status(ctx, name)
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, p := range st.Pods {
			if p.Ready && p.State == "RUNNING" {
				ready++
			}
		}
		return st.Plan.State == service.PlanComplete && ready == n && len(st.Pods) == n, nil
	})
	return st, err
}

type resCount struct{ reservations, volumes int }

func (s *story) reservations(ctx context.Context) (resCount, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := s.cl.Operator.ListReservations(cctx, connect.NewRequest(&agorav1.ListReservationsRequest{}))
	if err != nil {
		return resCount{}, err
	}
	return resCount{len(res.Msg.GetReservations()), len(res.Msg.GetVolumes())}, nil
}

// checkKeys counts the keys that addr does not serve with their value.
func (s *story) checkKeys(ctx context.Context, addr string) int {
	missing := 0
	for i := range s.sz.keys {
		k, want := fmt.Sprintf("key%05d", i), fmt.Sprintf("value%05d", i)
		var got string
		_ = poll(ctx, 10*time.Second, "get "+k, func() (bool, error) {
			v, ok, err := kvservice.Get(ctx, httpClient, addr, k, false) // addr's own data
			if err != nil {
				return false, nil
			}
			got = v
			return ok, nil
		})
		if got != want {
			missing++
		}
	}
	return missing
}

func kvPut(ctx context.Context, addr, key, value string) error {
	return poll(ctx, 30*time.Second, "put "+key, func() (bool, error) {
		return kvservice.Put(ctx, httpClient, addr, key, value) == nil, nil
	})
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// poll calls cond until it holds, cond fails, ctx ends or d passes.
func poll(ctx context.Context, d time.Duration, what string, cond func() (bool, error)) error {
	end := time.Now().Add(d)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s: not within %s", what, d)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// killProcs SIGKILLs the processes whose environment holds kv.
func killProcs(kv string) {
	for _, pid := range devcluster.PIDsWithEnv(kv) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// drain is step 7: drain an agent that runs a kv pod (not the primary,
// whose address the other pods were given) and batch units, with a
// deadline; its pods move to other agents one at a time, its batch units
// yield and run again elsewhere, and it ends DRAINED with no task.
func (s *story) drain(ctx context.Context, job *batch.Job) error {
	st, err := s.status(ctx, "kv")
	if err != nil {
		return err
	}
	primaryAgent := st.Pods[0].AgentID
	var victim service.PodStatus
	for _, p := range st.Pods[1:] {
		if p.AgentID != primaryAgent {
			victim = p
			break
		}
	}
	if victim.Name == "" {
		return fmt.Errorf("every kv pod runs on the primary's agent %s", primaryAgent)
	}
	agent := victim.AgentID
	deadline := 20 * time.Second
	if !s.o.Short {
		deadline = 60 * time.Second
	}
	units := job.RunningOn(agent)
	p0 := job.Progress()
	start := time.Now()
	if _, err := s.cl.Operator.DrainAgent(ctx, connect.NewRequest(&agorav1.DrainAgentRequest{
		AgentId: agent, Deadline: timestamppb.New(start.Add(deadline)),
	})); err != nil {
		return fmt.Errorf("draining %s: %w", agent, err)
	}
	s.say("7. agent %s (runs %s and %d batch units) drains with a %s deadline", agent, victim.Name, units, deadline)
	if err := poll(ctx, deadline+stepTimeout, agent+" DRAINED", func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		res, err := s.cl.Operator.ListAgents(cctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
		if err != nil {
			return false, nil
		}
		for _, av := range res.Msg.GetAgents() {
			if av.GetAgent().GetId() == agent {
				return av.GetAgent().GetState() == agorav1.AgentState_AGENT_STATE_DRAINED, nil
			}
		}
		return false, fmt.Errorf("agent %s is gone from the list", agent)
	}); err != nil {
		return err
	}
	emptied := time.Since(start)
	st, err = s.waitComplete(ctx, "kv", len(st.Pods))
	if err != nil {
		return err
	}
	moved := st.Pods[victim.Index]
	if moved.AgentID == agent {
		return fmt.Errorf("%s is still on the drained agent %s", moved.Name, agent)
	}
	lost := s.checkKeys(ctx, moved.Address)
	if lost > 0 {
		s.sum.KVKeysLost = lost
		return fmt.Errorf("%d keys missing on the moved %s", lost, moved.Name)
	}
	s.sum.DrainedAgents++
	s.say("7. agent %s DRAINED in %s: %s moved to %s with every key, the kv plan complete; batch units that yielded to the drain and ran again: %d",
		agent, emptied.Round(time.Millisecond), victim.Name, moved.AgentID, job.Progress().Reruns-p0.Reruns)
	return nil
}
