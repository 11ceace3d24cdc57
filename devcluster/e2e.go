package devcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// E2EOptions configures RunE2E.
type E2EOptions struct {
	// Masters are the masters' URLs.
	Masters []string
	// Agents is how many agents must be ACTIVE before the frameworks start.
	Agents int
	// Frameworks share the tasks (default 1); Tasks is the total.
	Frameworks, Tasks int
	// TasksPerAccept bounds the tasks launched by one Accept (default 100).
	TasksPerAccept int
	// CPUs and MemMiB are each task's resources (defaults 0.01 and 1).
	CPUs, MemMiB float64
	// Verify lists every task at the end and checks the outcome (all
	// RUNNING and acknowledged, one per id, no agent over capacity).
	Verify bool
	// Progress, when set, is called with the RUNNING updates delivered so
	// far (about ten times a second while the run lasts).
	Progress func(running, total int)
	// ClientOptions are given to the operator client (the frameworks use
	// plain HTTP/2).
	ClientOptions []client.Option
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// E2EResult is the outcome of RunE2E.
type E2EResult struct {
	Tasks      int `json:"tasks"`
	Agents     int `json:"agents"`
	Frameworks int `json:"frameworks"`
	// Seconds is from the first offer until every task is RUNNING at its
	// framework and every RUNNING update is acknowledged (committed).
	Seconds     float64 `json:"seconds"`
	TasksPerSec float64 `json:"tasks_per_sec"`
	// RaftEntries is how far the commit index moved from just before the
	// frameworks started to the end.
	RaftEntries uint64 `json:"raft_entries"`
	// P99LaunchToRunningMs: from the Accept that launched a task to its
	// RUNNING update at the framework.
	P99LaunchToRunningMs float64 `json:"p99_launch_to_running_ms"`
	// P50LaunchToRunningMs is the median of the same.
	P50LaunchToRunningMs float64 `json:"p50_launch_to_running_ms"`
	// AcceptP99Ms is the p99 latency of the Accept calls.
	AcceptP99Ms float64 `json:"accept_p99_ms"`
	// RunningSeconds is from the first offer until the last RUNNING update
	// arrived (acknowledgements may still be in flight then).
	RunningSeconds float64 `json:"running_seconds"`
	// Elections is how far the raft term moved from the first offer to the
	// end: each is a leader change (or a failed election) during the run,
	// which a 2-core machine loaded by masters, simulator and frameworks
	// at once can cause; a run with elections is slower for them.
	Elections uint64 `json:"elections"`
	// Timeline holds (seconds since the first offer, tasks RUNNING) about
	// every 50 ms, for plots.
	Timeline [][2]float64 `json:"-"`
}

// RunE2E runs Frameworks SDK frameworks against a cluster whose agents
// are registered, launching Tasks tasks in all, and times the first offer
// until all are RUNNING and acknowledged. It returns an error when the
// outcome is wrong (a task missing, refused, or, with Verify, any
// violated check); it never judges the time.
func RunE2E(ctx context.Context, o E2EOptions) (E2EResult, error) {
	if o.Frameworks < 1 {
		o.Frameworks = 1
	}
	if o.Tasks < 1 {
		return E2EResult{}, errors.New("e2e: tasks must be at least 1")
	}
	if o.TasksPerAccept < 1 {
		o.TasksPerAccept = 100
	}
	if o.CPUs <= 0 {
		o.CPUs = 0.01
	}
	if o.MemMiB <= 0 {
		o.MemMiB = 1
	}
	log := quiet(o.Logger)
	op := client.New(strings.Join(o.Masters, ","), o.ClientOptions...)
	defer op.CloseIdleConnections()
	if err := waitAgents(ctx, op, o.Agents); err != nil {
		return E2EResult{}, err
	}
	// Before the frameworks start: read at the first offer, a small run
	// could be over (and its entries uncounted) before the answer came.
	startIndex, startTerm, err := commitIndex(ctx, op)
	if err != nil {
		return E2EResult{}, err
	}
	if startIndex == 0 {
		return E2EResult{}, errors.New("e2e: no commit index from the masters")
	}
	// Indexed by task number, not maps by id: at 1M tasks, the maps'
	// lookups were a quarter of this process's CPU (a cache miss each) and
	// their 150 MB were pages the machine's masters could use.
	run := &e2eRun{o: o, launchedAt: make([]time.Time, o.Tasks), running: make([]bool, o.Tasks), allRunning: make(chan struct{})}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, o.Frameworks)
	var scheds []*e2eSched
	next := 0
	for f := 0; f < o.Frameworks; f++ {
		n := o.Tasks / o.Frameworks
		if f < o.Tasks%o.Frameworks {
			n++
		}
		run.base = append(run.base, next)
		next += n
		s := &e2eSched{run: run, name: fmt.Sprintf("bench-e2e-%d", f), ctx: rctx, accepts: make(chan struct{}, maxAcceptsInFlight),
			kick: make(chan struct{}, 1)}
		scheds = append(scheds, s)
		for i := 0; i < n; i++ {
			s.todo = append(s.todo, fmt.Sprintf("t%d-%07d", f, i))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := framework.Run(rctx, framework.Config{Masters: o.Masters, Logger: log,
				Info: &agorav1.FrameworkInfo{Name: s.name, FailoverTimeoutSeconds: 60,
					Capabilities: []agorav1.Capability{agorav1.Capability_CAPABILITY_PARTITION_AWARE}}}, s)
			if err != nil && rctx.Err() == nil {
				errs <- fmt.Errorf("e2e: framework %s: %w", s.name, err)
			}
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
		for _, s := range scheds {
			s.inflight.Wait() // each call is bounded by its own timeout
		}
	}()

	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var first time.Time
	var res E2EResult
	for {
		select {
		case <-ctx.Done():
			return E2EResult{}, fmt.Errorf("e2e: %d of %d tasks RUNNING: %w", run.count(), o.Tasks, ctx.Err())
		case err := <-errs:
			return E2EResult{}, err
		case <-tick.C:
		}
		if first.IsZero() {
			first = run.firstOffer()
			continue
		}
		n := run.count()
		res.Timeline = append(res.Timeline, [2]float64{time.Since(first).Seconds(), float64(n)})
		if o.Progress != nil {
			o.Progress(n, o.Tasks)
		}
		if n < o.Tasks {
			continue
		}
		if res.RunningSeconds == 0 {
			res.RunningSeconds = run.lastRunning().Sub(first).Seconds()
			// From here only the acknowledgements are awaited: look often,
			// but not so often that counting the tasks loads the leader.
			tick.Reset(10 * time.Millisecond)
		}
		asked := time.Now()
		st, err := op.Operator.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
		tick.Reset(max(10*time.Millisecond, 4*time.Since(asked)))
		if err != nil {
			log.Debug("e2e: status", "err", err)
			continue
		}
		c := st.Msg.GetCounts()
		if c.GetTasksUnacknowledged() != 0 || c.GetTasksByState()["running"] < uint64(o.Tasks) {
			continue
		}
		end := time.Now()
		res.Seconds = end.Sub(first).Seconds()
		res.RaftEntries = st.Msg.GetRaft().GetCommitIndex() - startIndex
		res.Elections = st.Msg.GetRaft().GetTerm() - min(startTerm, st.Msg.GetRaft().GetTerm())
		break
	}
	res.Tasks, res.Agents, res.Frameworks = o.Tasks, o.Agents, o.Frameworks
	res.TasksPerSec = float64(o.Tasks) / res.Seconds
	res.P99LaunchToRunningMs = float64(Percentile(run.latencies(), 99).Microseconds()) / 1000
	res.P50LaunchToRunningMs = float64(Percentile(run.latencies(), 50).Microseconds()) / 1000
	run.mu.Lock()
	res.AcceptP99Ms = float64(Percentile(run.acceptLat, 99).Microseconds()) / 1000
	run.mu.Unlock()
	if o.Verify {
		if err := verifyE2E(ctx, op, o); err != nil {
			return res, err
		}
	}
	return res, nil
}

// waitAgents waits until n agents are ACTIVE.
func waitAgents(ctx context.Context, op *client.Client, n int) error {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return pollUntil(wctx, fmt.Sprintf("%d agents ACTIVE", n), func() bool {
		st, err := op.Operator.GetStatus(wctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
		return err == nil && st.Msg.GetCounts().GetAgentsByState()["active"] >= uint64(n)
	})
}

func commitIndex(ctx context.Context, op *client.Client) (index, term uint64, err error) {
	st, err := op.Operator.GetStatus(ctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
	if err != nil {
		return 0, 0, fmt.Errorf("e2e: status: %w", err)
	}
	return st.Msg.GetRaft().GetCommitIndex(), st.Msg.GetRaft().GetTerm(), nil
}

// verifyE2E checks the final state: every task RUNNING and acknowledged,
// each id once, and no agent holding more than its capacity.
func verifyE2E(ctx context.Context, op *client.Client, o E2EOptions) error {
	tr, err := op.Operator.ListTasks(ctx, connect.NewRequest(&agorav1.ListTasksRequest{}))
	if err != nil {
		return fmt.Errorf("e2e: verify: list tasks: %w", err)
	}
	ar, err := op.Operator.ListAgents(ctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
	if err != nil {
		return fmt.Errorf("e2e: verify: list agents: %w", err)
	}
	capacity := map[string][2]float64{}
	for _, a := range ar.Msg.GetAgents() {
		ag := a.GetAgent()
		capacity[ag.GetId()] = [2]float64{framework.ScalarIn(ag.GetResources(), "cpus", ""), framework.ScalarIn(ag.GetResources(), "mem", "")}
	}
	used := map[string][2]float64{}
	seen := map[string]bool{}
	n := 0
	for _, t := range tr.Msg.GetTasks() {
		if !strings.HasPrefix(t.GetId(), "t") {
			continue
		}
		k := t.GetFrameworkId() + "/" + t.GetId()
		if seen[k] {
			return fmt.Errorf("e2e: verify: task %s listed twice", k)
		}
		seen[k] = true
		n++
		if t.GetState() != agorav1.TaskState_TASK_STATE_RUNNING || !t.GetAcknowledged() {
			return fmt.Errorf("e2e: verify: task %s is %v, acknowledged %v", k, t.GetState(), t.GetAcknowledged())
		}
		u := used[t.GetAgentId()]
		u[0] += framework.ScalarIn(t.GetResources(), "cpus", t.GetRole())
		u[1] += framework.ScalarIn(t.GetResources(), "mem", t.GetRole())
		used[t.GetAgentId()] = u
	}
	if n != o.Tasks {
		return fmt.Errorf("e2e: verify: %d tasks in the state, want %d", n, o.Tasks)
	}
	const eps = 1e-6
	for id, u := range used {
		c, ok := capacity[id]
		if !ok {
			return fmt.Errorf("e2e: verify: tasks on unknown agent %s", id)
		}
		if u[0] > c[0]+eps || u[1] > c[1]+eps {
			return fmt.Errorf("e2e: verify: agent %s holds cpus %.3f mem %.1f over its capacity cpus %.3f mem %.1f (double allocation)", id, u[0], u[1], c[0], c[1])
		}
	}
	return nil
}

// e2eRun is the shared bookkeeping of one run's frameworks.
type e2eRun struct {
	o E2EOptions

	mu    sync.Mutex
	first time.Time
	last  time.Time
	// launchedAt and running are by task number (taskIndex); nRunning
	// counts the tasks running.
	launchedAt []time.Time
	running    []bool
	nRunning   int
	// base is the number of each framework's first task.
	base       []int
	lat        []time.Duration
	acceptLat  []time.Duration
	allRunning chan struct{}
}

func (r *e2eRun) firstOffer() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first
}

func (r *e2eRun) lastRunning() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func (r *e2eRun) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nRunning
}

// taskIndex is the number of task id ("t<framework>-<n>", unique across
// the frameworks); false for an id the run did not make.
func (r *e2eRun) taskIndex(id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, "t")
	if !ok {
		return 0, false
	}
	f, n, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	fi, err1 := strconv.Atoi(f)
	ni, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil || fi < 0 || fi >= len(r.base) || ni < 0 {
		return 0, false
	}
	end := len(r.running)
	if fi+1 < len(r.base) {
		end = r.base[fi+1]
	}
	if i := r.base[fi] + ni; i < end {
		return i, true
	}
	return 0, false
}

func (r *e2eRun) latencies() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.lat...)
}

// e2eSched is one benchmark framework: it launches its tasks on the
// offers it gets, TasksPerAccept at most per Accept, then suppresses.
type e2eSched struct {
	run  *e2eRun
	name string
	ctx  context.Context // the run's; ends the offer control loop

	mu        sync.Mutex
	todo      []string       // task ids not launched yet
	revive    bool           // an Accept failed: clear the decline filters
	lastOffer time.Time      // when offers last came
	inflight  sync.WaitGroup // Accept, Decline and offer control calls
	// accepts bounds the Accept calls in flight (maxAcceptsInFlight): at
	// 10,000 agents a round offers thousands of agents at once, and as
	// many concurrent Accepts queue at the leader past their timeout,
	// each failure reviving the framework (offers of every agent again).
	accepts chan struct{}
	// kick wakes the offer control loop (control), started once.
	kick    chan struct{}
	control sync.Once
}

// maxAcceptsInFlight bounds one framework's concurrent Accept calls.
const maxAcceptsInFlight = 128

// offerControlTick is how often the offer control loop looks again on its
// own: it retries a failed Suppress or Revive, and revives a framework
// that has tasks to place but has had no offers for offerSilence (a
// Suppress whose outcome was unknown may have committed after all).
const (
	offerControlTick = time.Second
	offerSilence     = 3 * time.Second
)

// retry gives failed tasks back and asks for offers again.
func (s *e2eSched) retry(ids []string) {
	s.mu.Lock()
	s.todo = append(s.todo, ids...)
	s.revive = true
	s.mu.Unlock()
	s.wake()
}

// recover gives back, to be placed again, the tasks of a failed Accept
// that the master does not hold. An Accept that failed with an unknown
// outcome (a timeout, a leader change) may have committed, and launching
// a task again that the master holds is refused, taking every other task
// of the same Accept down with it, again at each retry: RELIABILITY open
// 16's 287 tasks never placed behind 12 launched ones. It asks the master
// (explicit reconciliation) until an answer comes or the run ends; a task
// the master holds will report RUNNING.
func (s *e2eSched) recover(d framework.Driver, ids []string) {
	rts := make([]*agorav1.ReconcileTask, len(ids))
	for i, id := range ids {
		rts[i] = &agorav1.ReconcileTask{TaskId: id}
	}
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		sts, err := d.Reconcile(ctx, rts)
		cancel()
		if err == nil {
			var again []string
			for _, st := range sts {
				// UNKNOWN: not in the master's state (the frameworks are
				// partition-aware, so nothing else answers UNKNOWN).
				if st.GetState() == agorav1.TaskState_TASK_STATE_UNKNOWN {
					again = append(again, st.GetTaskId())
				}
			}
			s.retry(again)
			return
		}
		if !client.Sleep(s.ctx, offerControlTick) {
			return
		}
	}
}

func (s *e2eSched) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// offerControl is the one place that suppresses and revives the
// framework, one call at a time, so that they commit in the order they are
// decided: a Suppress sent when the last tasks were placed and a Revive
// sent when one of those Accepts then failed could otherwise commit in the
// other order, leaving the framework suppressed with tasks to place (a
// 1M-task run stalled so at 892,900 tasks after leader changes).
func (s *e2eSched) offerControl(d framework.Driver) {
	defer s.inflight.Done()
	tick := time.NewTicker(offerControlTick)
	defer tick.Stop()
	suppressed := false
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-tick.C:
		}
		s.mu.Lock()
		done, revive, silent := len(s.todo) == 0, s.revive, time.Since(s.lastOffer) > offerSilence
		s.revive = false
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		switch {
		case !done && (suppressed || revive || silent):
			if err := d.Revive(ctx); err != nil {
				s.mu.Lock()
				s.revive = true // again at the next tick
				s.mu.Unlock()
			} else {
				suppressed = false
				s.mu.Lock()
				s.lastOffer = time.Now() // give the revived offers time to come
				s.mu.Unlock()
			}
		case done && !suppressed:
			suppressed = d.Suppress(ctx) == nil
		}
		cancel()
	}
}

// Subscribed implements framework.Scheduler.
func (s *e2eSched) Subscribed(framework.Driver, string, bool) {}

// take removes up to n task ids from todo, skipping those already RUNNING
// (an Accept that failed with an unknown outcome may have launched them).
func (s *e2eSched) take(n int) []string {
	r := s.run
	r.mu.Lock()
	defer r.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for len(ids) < n && len(s.todo) > 0 {
		id := s.todo[0]
		s.todo = s.todo[1:]
		if i, ok := r.taskIndex(id); !ok || !r.running[i] {
			ids = append(ids, id)
		}
	}
	return ids
}

// Offers implements framework.Scheduler: it places tasks on the offers
// and accepts them concurrently (one Accept per offer), declining the
// offers it has no use for in one call, so the event loop is not held.
func (s *e2eSched) Offers(d framework.Driver, offers []*agorav1.Offer) {
	s.control.Do(func() {
		s.inflight.Add(1)
		go s.offerControl(d)
	})
	r := s.run
	r.mu.Lock()
	if r.first.IsZero() {
		r.first = time.Now()
	}
	r.mu.Unlock()
	s.mu.Lock()
	s.lastOffer = time.Now()
	s.mu.Unlock()
	var unused []string
	for _, o := range offers {
		cpus, mem := framework.ScalarIn(o.GetResources(), "cpus", ""), framework.ScalarIn(o.GetResources(), "mem", "")
		fit := int(min(cpus/r.o.CPUs+1e-9, mem/r.o.MemMiB+1e-9))
		ids := s.take(min(fit, r.o.TasksPerAccept))
		if len(ids) == 0 {
			unused = append(unused, o.GetId())
			continue
		}
		tasks := make([]*agorav1.TaskInfo, len(ids))
		for i, id := range ids {
			tasks[i] = framework.Task(id, o.GetAgentId(), "true", framework.Scalar("cpus", r.o.CPUs), framework.Scalar("mem", r.o.MemMiB))
		}
		s.inflight.Add(1)
		go func() {
			defer s.inflight.Done()
			if err := s.accept(d, o.GetId(), ids, tasks); err != nil {
				s.recover(d, ids) // outside the Accept slot
			}
		}()
	}
	s.wake() // suppress once every task is placed
	if len(unused) == 0 {
		return
	}
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		refuse := 60.0
		_ = d.Decline(ctx, unused, &refuse)
	}()
}

// accept launches tasks (ids) on the offer, holding one of the Accept
// slots for the call.
func (s *e2eSched) accept(d framework.Driver, offerID string, ids []string, tasks []*agorav1.TaskInfo) error {
	s.accepts <- struct{}{}
	defer func() { <-s.accepts }()
	r := s.run
	now := time.Now()
	r.mu.Lock()
	for _, id := range ids {
		if i, ok := r.taskIndex(id); ok {
			r.launchedAt[i] = now
		}
	}
	r.mu.Unlock()
	refuse := 60.0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := d.Accept(ctx, []string{offerID}, []*agorav1.Operation{framework.Launch(tasks...)}, &refuse)
	r.mu.Lock()
	r.acceptLat = append(r.acceptLat, time.Since(now))
	r.mu.Unlock()
	return err
}

// Rescind implements framework.Scheduler.
func (s *e2eSched) Rescind(framework.Driver, string) {}

// Update implements framework.Scheduler; the SDK acknowledges.
func (s *e2eSched) Update(_ framework.Driver, st *agorav1.TaskStatus) {
	if st.GetState() != agorav1.TaskState_TASK_STATE_RUNNING || st.GetUuid() == "" {
		return
	}
	r := s.run
	i, ok := r.taskIndex(st.GetTaskId())
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running[i] {
		return
	}
	r.running[i] = true
	r.nRunning++
	now := time.Now()
	r.last = now
	if at := r.launchedAt[i]; !at.IsZero() {
		r.lat = append(r.lat, now.Sub(at))
	}
}

// Failure implements framework.Scheduler.
func (s *e2eSched) Failure(framework.Driver, string) {}

// Error implements framework.Scheduler.
func (s *e2eSched) Error(framework.Driver, string) {}
