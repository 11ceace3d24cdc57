package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/chaos/check"
	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Options configure a chaos run.
type Options struct {
	// Tier is "process" (default) or "docker".
	Tier string
	// Binary is the agora binary the nodes run (the process tier runs it;
	// the docker tier copies it, statically linked, into an image).
	Binary string
	// Masters (3 or 5, default 3) and Agents (default 2).
	Masters, Agents int
	// Seed fixes the fault schedule and the workload's choices.
	Seed uint64
	// Duration of the faulty part of the run (default 30s); the run then
	// heals, quiesces and checks.
	Duration time.Duration
	// Faults lists the fault kinds (nil = all the tier supports).
	Faults []Kind
	// Frameworks (default 3) and Operators (default 2) are the workload's
	// concurrent clients.
	Frameworks, Operators int
	// Out is the output directory: node data and logs, history.jsonl,
	// faults.log, summary.json and, on a linearizability failure,
	// linearizability.html. Required.
	Out string
	// Progress receives a progress line every few seconds and the fault
	// log; nil discards.
	Progress io.Writer
	// Logger receives the SDK's and the driver's logs; nil discards.
	Logger *slog.Logger
	// Secure runs the cluster with TLS, a gossip key, authentication,
	// ACLs and audit logs (process tier only; see secure.go).
	Secure bool
	// SimAgents, when positive, also runs one `agora agent --simulate
	// SimAgents` process (process tier only, not with Secure): the
	// workload's frameworks get offers on simulated agents too and launch
	// tasks there, whose statuses reach the masters through the simulator's
	// batched UpdateStatus calls. The fault injector never kills the
	// simulator (kill-agent and kill-all spare it): a simulated agent is
	// outside gossip liveness, so a killed simulator would leave its agents
	// ACTIVE with tasks nobody runs (simagent/doc.go). Every checker runs
	// unchanged; they judge the replicated state, which holds simulated
	// agents like real ones.
	SimAgents int
}

// Report is the outcome of a run.
type Report struct {
	Tier      string  `json:"tier"`
	Seed      uint64  `json:"seed"`
	DurationS float64 `json:"duration_s"`
	Faults    int     `json:"faults"`
	Ops       int     `json:"ops"`
	// ViolationCount is len(Violations).
	ViolationCount    int  `json:"violations"`
	Linearizable      bool `json:"linearizable"`
	LostWrites        int  `json:"lost_writes"`
	DoubleAllocations int  `json:"double_allocations"`
	// SharedVolumes counts volume-exclusive violations: a volume used by
	// two live tasks at some committed index.
	SharedVolumes int `json:"shared_volumes"`
	// KVAcked counts the kv service's acknowledged writes; KVLost those
	// read back absent or with another value (kv-lost-write violations).
	KVAcked int `json:"kv_acked"`
	KVLost  int `json:"kv_lost"`
	// Preemptions counts the preemption decisions applied and
	// PreemptedTasks their victims (the most any master's replay saw: a
	// replay from a snapshot misses the decisions before it);
	// PreemptionViolations the preemption checker's violations.
	Preemptions          int `json:"preemptions"`
	PreemptedTasks       int `json:"preempted_tasks"`
	PreemptionViolations int `json:"preemption_violations"`
	// SimAgents is Options.SimAgents; SimTasks counts the tasks the
	// workload launched on simulated agents (accepted), SimStatuses the
	// statuses from simulated agents its frameworks received.
	SimAgents   int `json:"sim_agents"`
	SimTasks    int `json:"sim_tasks"`
	SimStatuses int `json:"sim_statuses"`
	// StatusBatches and AckBatches count the StatusUpdateBatch and
	// AcknowledgeBatch entries in the longest replayed log.
	StatusBatches int `json:"status_batches"`
	AckBatches    int `json:"ack_batches"`

	// Details, not in the one-line JSON summary.
	FaultLog        []string          `json:"-"`
	Violations      []check.Violation `json:"-"`
	EntriesReplayed int               `json:"-"`
	OffersReplayed  int               `json:"-"`
	TasksAcked      int               `json:"-"`
	// PreemptedKills counts victims whose KILLED update (reason PREEMPTED)
	// was committed.
	PreemptedKills int    `json:"-"`
	LinResult      string `json:"-"`
	// KVSent counts the PUTs sent to the kv service, KVRead the
	// acknowledged keys read back after the run, KVUnread those whose read
	// failed.
	KVSent, KVRead, KVUnread int      `json:"-"`
	Notes                    []string `json:"-"`
}

// JSON is the one-line summary.
func (r *Report) JSON() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// Summary is the human summary.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos %s tier, seed %d, %.0fs: %d faults, %d ops, %d tasks acknowledged, %d log entries and %d offers replayed\n",
		r.Tier, r.Seed, r.DurationS, r.Faults, r.Ops, r.TasksAcked, r.EntriesReplayed, r.OffersReplayed)
	fmt.Fprintf(&b, "  kv service: %d writes sent, %d acknowledged, %d read back, %d unread, %d lost\n",
		r.KVSent, r.KVAcked, r.KVRead, r.KVUnread, r.KVLost)
	if r.SimAgents > 0 {
		fmt.Fprintf(&b, "  simulated agents: %d, %d tasks launched on them, %d of their statuses received\n", r.SimAgents, r.SimTasks, r.SimStatuses)
	}
	fmt.Fprintf(&b, "  batched entries replayed: %d StatusUpdateBatch, %d AcknowledgeBatch\n", r.StatusBatches, r.AckBatches)
	fmt.Fprintf(&b, "  preemption: %d decisions, %d victims, %d PREEMPTED kills, %d violations\n",
		r.Preemptions, r.PreemptedTasks, r.PreemptedKills, r.PreemptionViolations)
	fmt.Fprintf(&b, "  linearizable: %v (%s)  lost writes: %d  double allocations: %d  shared volumes: %d  violations: %d\n",
		r.Linearizable, r.LinResult, r.LostWrites, r.DoubleAllocations, r.SharedVolumes, r.ViolationCount)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	for i, v := range r.Violations {
		if i == 20 {
			fmt.Fprintf(&b, "  ... %d more\n", len(r.Violations)-20)
			break
		}
		fmt.Fprintf(&b, "  VIOLATION %s\n", v)
	}
	return b.String()
}

func (o *Options) defaults() error {
	if o.Tier == "" {
		o.Tier = "process"
	}
	if o.Masters == 0 {
		o.Masters = 3
	}
	if o.Agents == 0 {
		o.Agents = 2
	}
	if o.Duration == 0 {
		o.Duration = 30 * time.Second
	}
	if o.Frameworks == 0 {
		o.Frameworks = 3
	}
	if o.Operators == 0 {
		o.Operators = 2
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Out == "" {
		return errors.New("chaos: Options.Out is required")
	}
	if o.Masters != 3 && o.Masters != 5 {
		return fmt.Errorf("chaos: --masters must be 3 or 5, not %d", o.Masters)
	}
	allowed := ProcessKinds
	if o.Tier == "docker" {
		allowed = DockerKinds
	} else if o.Tier != "process" {
		return fmt.Errorf("chaos: unknown tier %q", o.Tier)
	}
	if o.Faults == nil {
		o.Faults = allowed
	}
	if o.SimAgents < 0 {
		return fmt.Errorf("chaos: --sim-agents must not be negative, not %d", o.SimAgents)
	}
	if o.SimAgents > 0 && o.Tier != "process" {
		return errors.New("chaos: --sim-agents runs on the process tier only")
	}
	if o.SimAgents > 0 && o.Secure {
		return errors.New("chaos: --sim-agents does not support --secure (the simulator speaks no TLS yet)")
	}
	for _, k := range o.Faults {
		found := false
		for _, a := range allowed {
			found = found || a == k
		}
		if !found {
			return fmt.Errorf("chaos: fault %s not supported by the %s tier", k, o.Tier)
		}
	}
	return nil
}

// Run starts a cluster of the chosen tier, runs the workload while
// injecting the seed's faults, heals, lets the cluster settle, stops it and
// runs every checker. It returns the report; an error means the run itself
// could not be carried out (the cluster never came up, ...), not that a
// checker failed.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	// The clients' own log (SDK, operators, driver) at info level, beside
	// the nodes' logs: what a framework did around a fault is often the
	// question.
	if lf, err := os.Create(filepath.Join(o.Out, "clients.log")); err == nil {
		defer lf.Close()
		o.Logger = slog.New(slog.NewMultiHandler(o.Logger.Handler(), slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	}
	var c Cluster
	var err error
	switch o.Tier {
	case "process":
		c, err = NewProcessCluster(ProcessOptions{Binary: o.Binary, Dir: o.Out, Masters: o.Masters, Agents: o.Agents, Secure: o.Secure, SimAgents: o.SimAgents})
	case "docker":
		if o.Secure {
			return nil, errors.New("chaos: --secure runs on the process tier only")
		}
		c, err = NewDockerCluster(ctx, DockerOptions{Binary: o.Binary, Dir: o.Out, Masters: o.Masters, Agents: o.Agents, Seed: o.Seed, Logger: o.Logger})
	}
	if err != nil {
		return nil, err
	}
	closed := false
	defer func() {
		if !closed {
			_ = c.Close()
		}
	}()
	r := &runner{o: o, c: c, h: NewHistory(), rep: &Report{Tier: o.Tier, Seed: o.Seed, DurationS: o.Duration.Seconds(), SimAgents: o.SimAgents}}
	if err := r.startAll(ctx); err != nil {
		return nil, err
	}
	if err := r.waitReady(ctx, 60*time.Second); err != nil {
		return nil, fmt.Errorf("chaos: cluster did not come up: %w", err)
	}
	r.progressf("cluster up: %d masters, %d agents, %d simulated agents (%s tier)", c.Masters(), c.Agents(), simAgents(c), c.Tier())

	w := &workload{c: c, h: r.h, log: o.Logger, seed: o.Seed}
	r.w = w
	wctx, stopWork := context.WithCancel(ctx)
	kv := r.startKV(wctx)
	w.operators(wctx, o.Operators)
	w.frameworks(wctx, o.Frameworks)
	if err := w.preemptionFrameworks(wctx, o.Frameworks); err != nil {
		r.violation("availability", "%v", err)
	}

	faults := Schedule(ScheduleConfig{Seed: o.Seed, Duration: o.Duration, Kinds: o.Faults})
	r.inject(ctx, faults)
	if ctx.Err() != nil {
		stopWork()
		return nil, ctx.Err()
	}
	// Heal: every node up, then let redelivery and acknowledgements settle.
	_ = c.Heal()
	if err := r.startAll(ctx); err != nil {
		r.note("restarting nodes after the faults: %v", err)
	}
	if err := r.waitReady(ctx, 60*time.Second); err != nil {
		r.violation("availability", "cluster did not recover within 60s after the last fault: %v", err)
	}
	// Settle: the frameworks stop launching and killing but stay
	// subscribed; every status is acknowledged, then the delivery cut is
	// taken and the frameworks get a fair chance to receive every status
	// committed up to it before they stop listening.
	w.paused.Store(true)
	r.quiesce(ctx, 20*time.Second)
	cut := r.cut(ctx)
	r.settleDelivery(ctx, 15*time.Second)
	live := r.liveFrameworks()
	// Stop every client before the final read: a write still in flight
	// would otherwise commit after the read and look lost.
	stopWork()
	w.wg.Wait()
	finalRoles, rolesErr := r.finalRoles(ctx)
	r.finalKV(ctx, kv)
	closed = true
	if err := c.Close(); errors.Is(err, ErrSlowStop) {
		r.violation("shutdown", "stopping the cluster: %v", err)
	} else if err != nil {
		r.note("stopping the cluster: %v", err)
	}
	r.check(finalRoles, rolesErr, live, cut)
	r.write()
	return r.rep, nil
}

// runner holds one run's state.
type runner struct {
	o   Options
	c   Cluster
	h   *History
	w   *workload
	rep *Report
}

func (r *runner) progressf(format string, args ...any) {
	fmt.Fprintf(r.o.Progress, "[%6.1fs] %s\n", time.Duration(r.h.Now()).Seconds(), fmt.Sprintf(format, args...))
}

func (r *runner) note(format string, args ...any) {
	r.rep.Notes = append(r.rep.Notes, fmt.Sprintf(format, args...))
}

func (r *runner) violation(checker, format string, args ...any) {
	r.rep.Violations = append(r.rep.Violations, check.Violation{Checker: checker, Detail: fmt.Sprintf(format, args...)})
}

func (r *runner) startAll(ctx context.Context) error {
	var errs []error
	for i := 0; i < r.c.Masters(); i++ {
		errs = append(errs, r.c.StartMaster(ctx, i))
	}
	for i := 0; i < r.c.Agents(); i++ {
		errs = append(errs, r.c.StartAgent(ctx, i))
	}
	if s, ok := r.c.(simCluster); ok {
		errs = append(errs, s.StartSim(ctx))
	}
	return errors.Join(errs...)
}

// simCluster is a Cluster that can also run simulated agents (the process
// tier).
type simCluster interface {
	// SimAgents is the number of simulated agents (0 when none).
	SimAgents() int
	// StartSim starts their process unless it runs.
	StartSim(ctx context.Context) error
}

// simAgents is c's number of simulated agents.
func simAgents(c Cluster) int {
	if s, ok := c.(simCluster); ok {
		return s.SimAgents()
	}
	return 0
}

// status asks each master in turn for the cluster status.
func (r *runner) status(ctx context.Context) (*agorav1.GetStatusResponse, error) {
	var last error
	for _, u := range r.c.MasterURLs() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := newClient(r.c, u).Operator.GetStatus(cctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
		cancel()
		if err == nil && resp.Msg.GetLeader().GetId() != "" {
			return resp.Msg, nil
		}
		if err == nil {
			err = errors.New("no leader")
		}
		last = err
	}
	return nil, last
}

// leader returns the index of the current leader, or -1.
func (r *runner) leader(ctx context.Context) int {
	st, err := r.status(ctx)
	if err != nil {
		return -1
	}
	for i := 0; i < r.c.Masters(); i++ {
		if r.c.MasterID(i) == st.GetLeader().GetId() {
			return i
		}
	}
	return -1
}

// waitReady waits for a leader and every agent, real and simulated,
// active.
func (r *runner) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		st, err := r.status(ctx)
		if err == nil {
			var active uint64
			for state, n := range st.GetCounts().GetAgentsByState() {
				if strings.EqualFold(strings.TrimPrefix(state, "AGENT_STATE_"), "active") {
					active += n
				}
			}
			want := r.c.Agents() + simAgents(r.c)
			if int(active) >= want {
				return nil
			}
			err = fmt.Errorf("%d of %d agents active (%v)", active, want, st.GetCounts().GetAgentsByState())
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return last
}

// inject runs the fault schedule, with a progress line every 5s.
func (r *runner) inject(ctx context.Context, faults []Fault) {
	f, _ := os.Create(filepath.Join(r.o.Out, "faults.log"))
	if f != nil {
		defer f.Close()
	}
	start := time.Now()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	logf := func(format string, args ...any) {
		line := fmt.Sprintf("%8.3fs %s", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
		r.rep.FaultLog = append(r.rep.FaultLog, line)
		if f != nil {
			fmt.Fprintln(f, line)
		}
		r.progressf("%s", fmt.Sprintf(format, args...))
	}
	wait := func(until time.Duration) bool {
		for {
			left := until - time.Since(start)
			if left <= 0 {
				return true
			}
			select {
			case <-ctx.Done():
				return false
			case <-tick.C:
				r.progressf("faults %d, ops %d", r.rep.Faults, r.w.opsDone())
			case <-time.After(left):
			}
		}
	}
	// lag shifts the rest of the schedule when injecting or healing took
	// longer than planned (a slow graceful stop, a full restart), so every
	// fault keeps its hold and its gap to the previous one.
	var lag time.Duration
	for _, ft := range faults {
		if !wait(ft.At + lag) {
			return
		}
		heal, desc, err := r.apply(ctx, ft)
		if err != nil {
			logf("fault %s failed to inject: %v", ft.Kind, err)
			continue
		}
		r.rep.Faults++
		logf("inject %s: %s (hold %s)", ft.Kind, desc, ft.Hold.Round(time.Millisecond))
		healAt := time.Since(start) + ft.Hold
		if !wait(healAt) {
			heal()
			return
		}
		heal()
		logf("heal %s: %s", ft.Kind, desc)
		if over := time.Since(start) - (ft.At + ft.Hold + lag); over > 0 {
			lag += over
		}
	}
	wait(r.o.Duration + lag)
}

// apply injects one fault and returns how to heal it.
func (r *runner) apply(ctx context.Context, ft Fault) (heal func(), desc string, err error) {
	c := r.c
	pick := func(n int) int { return int(ft.Pick % uint64(n)) }
	leader := r.leader(ctx)
	follower := func() int {
		var fs []int
		for i := 0; i < c.Masters(); i++ {
			if i != leader {
				fs = append(fs, i)
			}
		}
		return fs[pick(len(fs))]
	}
	restartMaster := func(i int) func() {
		return func() {
			if err := c.StartMaster(ctx, i); err != nil {
				r.note("restart %s: %v", c.MasterID(i), err)
			}
		}
	}
	switch ft.Kind {
	case KillLeader:
		if leader < 0 {
			return nil, "", errors.New("no leader to kill")
		}
		return restartMaster(leader), "SIGKILL leader " + c.MasterID(leader), c.KillMaster(leader)
	case KillFollower:
		i := follower()
		return restartMaster(i), "SIGKILL follower " + c.MasterID(i), c.KillMaster(i)
	case RestartMaster:
		i := pick(c.Masters())
		if err := c.StopMaster(i); errors.Is(err, ErrSlowStop) {
			r.violation("shutdown", "graceful stop of %s: %v", c.MasterID(i), err)
		} else if err != nil {
			r.note("graceful stop of %s: %v", c.MasterID(i), err)
		}
		return restartMaster(i), "SIGTERM " + c.MasterID(i), nil
	case PauseMaster:
		i := pick(c.Masters())
		if ft.Pick%2 == 0 && leader >= 0 {
			i = leader
		}
		return func() { _ = c.ResumeMaster(i) }, "SIGSTOP " + c.MasterID(i), c.PauseMaster(i)
	case KillAgent:
		i := pick(c.Agents())
		return func() {
			if err := c.StartAgent(ctx, i); err != nil {
				r.note("restart agent %d: %v", i, err)
			}
		}, fmt.Sprintf("SIGKILL agent a%d", i), c.KillAgent(i)
	case KillAll:
		for i := 0; i < c.Agents(); i++ {
			_ = c.KillAgent(i)
		}
		for i := 0; i < c.Masters(); i++ {
			_ = c.KillMaster(i)
		}
		// The simulated agents' process is spared (Options.SimAgents).
		return func() { _ = r.startAll(ctx) }, "SIGKILL every master and agent", nil
	case RemoveMaster:
		if leader < 0 {
			return nil, "", errors.New("no leader to remove a master through")
		}
		i := follower()
		if err := c.KillMaster(i); err != nil {
			return nil, "", err
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := newClient(c, c.MasterURLs()[leader]).Operator.RemovePeer(cctx, connect.NewRequest(&agorav1.RemovePeerRequest{Id: c.MasterID(i)}))
		cancel()
		if err != nil {
			// Not removed: bring it back with its data.
			restartMaster(i)()
			return nil, "", fmt.Errorf("remove peer %s: %w", c.MasterID(i), err)
		}
		if err := c.WipeMaster(i); err != nil {
			return nil, "", err
		}
		return restartMaster(i), "SIGKILL, RemovePeer, wipe and re-add " + c.MasterID(i), nil
	case PartitionLeader:
		if leader < 0 {
			return nil, "", errors.New("no leader to isolate")
		}
		return func() { _ = c.Heal() }, "isolate leader " + c.MasterID(leader), c.Isolate(leader, false)
	case PartitionMinority:
		n := (c.Masters() - 1) / 2
		var ids []string
		for k := 0; k < n; k++ {
			i := (pick(c.Masters()) + k) % c.Masters()
			if err := c.Isolate(i, false); err != nil {
				return func() { _ = c.Heal() }, "", err
			}
			ids = append(ids, c.MasterID(i))
		}
		return func() { _ = c.Heal() }, "isolate minority " + strings.Join(ids, ","), nil
	case PartitionAgent:
		i := pick(c.Agents())
		return func() { _ = c.Heal() }, fmt.Sprintf("isolate agent a%d", i), c.Isolate(i, true)
	}
	return nil, "", fmt.Errorf("unknown fault %s", ft.Kind)
}

// quiesce waits until every task's latest status is acknowledged, or limit.
func (r *runner) quiesce(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	cl := newClient(r.c, r.c.MasterURLs()[0])
	quiet := 0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := cl.Operator.ListTasks(cctx, connect.NewRequest(&agorav1.ListTasksRequest{}))
		cancel()
		if err == nil {
			pending := 0
			for _, t := range resp.Msg.GetTasks() {
				if !t.GetAcknowledged() && t.GetStatus().GetUuid() != "" {
					pending++
				}
			}
			if pending == 0 {
				quiet++
				if quiet >= 3 { // quiet for a few polls: nothing left in flight
					return
				}
			} else {
				quiet = 0
			}
		} else {
			cl = newClient(r.c, r.c.MasterURLs()[int(time.Now().UnixNano())%r.c.Masters()])
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	r.note("some task statuses were still unacknowledged %s after the last fault", limit)
}

// cut returns the leader's commit index: the delivery checker judges the
// state at this index. 0 when no leader answered.
func (r *runner) cut(ctx context.Context) uint64 {
	for _, u := range r.c.MasterURLs() {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := newClient(r.c, u).Operator.GetStatus(cctx, connect.NewRequest(&agorav1.GetStatusRequest{}))
		cancel()
		if err == nil && strings.EqualFold(resp.Msg.GetRaft().GetState(), "leader") {
			return resp.Msg.GetRaft().GetCommitIndex()
		}
	}
	r.note("no leader answered when the delivery cut was taken")
	return 0
}

// settleDelivery waits, up to limit, until every live framework has
// received the latest status of each of its tasks as the leader lists
// them: the fair chance the delivery checker presumes.
func (r *runner) settleDelivery(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		live := r.liveFrameworks()
		pending := -1
		for _, u := range r.c.MasterURLs() {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := newClient(r.c, u).Operator.ListTasks(cctx, connect.NewRequest(&agorav1.ListTasksRequest{}))
			cancel()
			if err != nil {
				continue
			}
			pending = 0
			r.h.mu.Lock()
			for _, t := range resp.Msg.GetTasks() {
				if live[t.GetFrameworkId()] && t.GetStatus() != nil && !r.h.seen[t.GetFrameworkId()][check.StatusKey(t.GetStatus())] {
					pending++
				}
			}
			r.h.mu.Unlock()
			break
		}
		if pending == 0 {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	r.note("some task statuses had not reached their frameworks %s after the delivery cut", limit)
}

func (r *runner) liveFrameworks() map[string]bool {
	live := map[string]bool{}
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	for _, f := range r.w.fws {
		f.mu.Lock()
		drv := f.drv
		f.mu.Unlock()
		if drv != nil && !f.ended.Load() && drv.FrameworkID() != "" {
			live[drv.FrameworkID()] = true
		}
	}
	return live
}

// startKV deploys the kv service and starts its writer (in the workload's
// WaitGroup, so it stops with the other clients); nil when the service
// could not be deployed, which is an availability violation.
func (r *runner) startKV(ctx context.Context) *kvWorkload {
	kv := newKVWorkload(r.w)
	fid, err := kv.deploy(ctx, 30*time.Second)
	if err != nil {
		r.violation("availability", "%v", err)
		return nil
	}
	r.progressf("kv service %s deployed (framework %s), %d pods", kvName, fid, kvPods)
	r.w.wg.Add(1)
	go func() {
		defer r.w.wg.Done()
		kv.writer(ctx)
	}()
	return kv
}

// finalKV waits, up to 60 s, for the kv service's plan to be COMPLETE
// (every pod relaunched and ready after the faults), then reads every
// acknowledged write back from the primary (check.KVLost). A service that
// does not recover, or keys that cannot be read, are availability
// violations: the faults are healed by now.
func (r *runner) finalKV(ctx context.Context, kv *kvWorkload) {
	if kv == nil {
		return
	}
	start := time.Now()
	if err := kv.waitComplete(ctx, 60*time.Second); err != nil {
		r.violation("availability", "%v", err)
	}
	complete := time.Since(start)
	res := kv.readBack(ctx, 30*time.Second)
	r.rep.KVSent, _ = kv.counts()
	r.rep.KVAcked, r.rep.KVRead, r.rep.KVUnread = res.Acked, res.Read, res.Unread
	r.rep.Violations = append(r.rep.Violations, res.Violations...)
	if res.Unread > 0 {
		r.violation("availability", "%d of %d acknowledged kv writes could not be read back: %v", res.Unread, res.Acked, res.FirstErr)
	}
	r.progressf("kv service: %d writes acknowledged, %d read back, %d lost (COMPLETE after %s, read in %s)",
		res.Acked, res.Read, len(res.Violations), complete.Round(time.Millisecond), (time.Since(start) - complete).Round(time.Millisecond))
}

// finalRoles reads the role configuration with a linearizable read.
func (r *runner) finalRoles(ctx context.Context) (map[string]float64, error) {
	var last error
	for attempt := 0; attempt < 10; attempt++ {
		u := r.c.MasterURLs()[attempt%r.c.Masters()]
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := newClient(r.c, u).Operator.ListRoles(cctx, connect.NewRequest(&agorav1.ListRolesRequest{}))
		cancel()
		if err == nil {
			m := map[string]float64{}
			for _, ro := range resp.Msg.GetRoles() {
				m[ro.GetName()] = ro.GetWeight()
			}
			return m, nil
		}
		last = err
		time.Sleep(300 * time.Millisecond)
	}
	return nil, last
}

// check runs every checker and fills the report.
func (r *runner) check(finalRoles map[string]float64, rolesErr error, live map[string]bool, cut uint64) {
	regs := r.h.Registers()
	lin := check.Roles(regs, time.Minute)
	r.rep.Linearizable = lin.Linearizable()
	r.rep.LinResult = fmt.Sprintf("%s; %d ops, %d pending writes nobody could observe pruned, %d kept", lin.Result, lin.Ops, lin.Pruned, lin.Pending)
	r.rep.Violations = append(r.rep.Violations, lin.Violations()...)
	if !lin.Linearizable() {
		path := filepath.Join(r.o.Out, "linearizability.html")
		if err := lin.Visualize(path); err != nil {
			r.note("%v", err)
		} else {
			r.note("linearizability visualisation: %s", path)
		}
	}
	if rolesErr != nil {
		r.violation("availability", "final role read failed: %v", rolesErr)
	} else {
		r.rep.Violations = append(r.rep.Violations, check.LostWrites(regs, finalRoles)...)
	}

	// Replay every master's log; the longest gives the final state.
	var finals []*fsm.State
	var best *check.ReplayResult
	for i := 0; i < r.c.Masters(); i++ {
		res, err := check.Replay(r.c.MasterDataDir(i), check.ReplayOptions{At: cut})
		if err != nil {
			r.note("replay %s: %v", r.c.MasterID(i), err)
			continue
		}
		r.rep.Violations = append(r.rep.Violations, res.Violations...)
		finals = append(finals, res.Final)
		if best == nil || res.Final.Index() > best.Final.Index() {
			best = res
		}
		r.rep.EntriesReplayed += res.Entries
		if best == res {
			r.rep.StatusBatches, r.rep.AckBatches = res.Commands[fsm.CmdStatusUpdateBatch], res.Commands[fsm.CmdAcknowledgeBatch]
		}
		if p := res.Preemptions; p.Decisions > r.rep.Preemptions {
			r.rep.Preemptions, r.rep.PreemptedTasks, r.rep.PreemptedKills = p.Decisions, p.VictimCount, p.Kills
		}
		if res.SnapshotIndex > 0 {
			r.note("%s: replayed from snapshot at index %d (entries before it checked only on replicas that still hold them)", r.c.MasterID(i), res.SnapshotIndex)
		}
	}
	if best == nil {
		r.violation("replay", "no master's raft log could be replayed")
	} else {
		r.rep.OffersReplayed = best.Offers
		r.rep.Violations = append(r.rep.Violations, check.Converged(finals)...)
		st := best.Final
		h := r.h
		h.mu.Lock()
		presentTasks, presentVols := map[string]bool{}, map[string]bool{}
		for _, t := range st.Tasks() {
			presentTasks[t.GetFrameworkId()+"/"+t.GetId()] = true
		}
		for _, v := range st.Volumes() {
			presentVols[v.GetId()] = true
		}
		r.rep.TasksAcked = len(h.tasksAcked)
		r.rep.Violations = append(r.rep.Violations, check.LostObjects("task", h.tasksAcked, h.tasksEnded, presentTasks)...)
		r.rep.Violations = append(r.rep.Violations, check.LostObjects("volume", h.volumesAcked, h.volumesRemoved, presentVols)...)
		r.rep.Violations = append(r.rep.Violations, check.OfferTokens(h.accepted)...)
		seen := h.seen
		h.mu.Unlock()
		// Delivery is judged at the cut: statuses committed later (the
		// cluster keeps running while the frameworks stop) had no chance.
		at := best.AtState
		if at == nil || cut == 0 {
			r.note("no state at the delivery cut (index %d); delivery checked against the final state", cut)
			at = st
		}
		r.rep.Violations = append(r.rep.Violations, check.Delivery(at, seen, live)...)
	}
	// A framework whose Run ended on its own (not because the run stopped
	// it) was lost to its operator: the SDK gave up on the cluster.
	for _, f := range r.w.fws {
		if f.runErr != nil {
			r.violation("framework-ended", "framework %s stopped: %v", f.name, f.runErr)
		}
	}
	r.rep.Ops = len(r.h.Ops())
	r.rep.SimTasks, r.rep.SimStatuses = int(r.w.simTasks.Load()), int(r.w.simStatuses.Load())
	for _, v := range r.rep.Violations {
		switch v.Checker {
		case "lost-write":
			r.rep.LostWrites++
		case "double-allocation":
			r.rep.DoubleAllocations++
		case "volume-exclusive":
			r.rep.SharedVolumes++
		case "kv-lost-write":
			r.rep.KVLost++
		case "preemption":
			r.rep.PreemptionViolations++
		}
	}
	r.rep.ViolationCount = len(r.rep.Violations)
}

// write saves the history, the violations and the summary to Out.
func (r *runner) write() {
	if f, err := os.Create(filepath.Join(r.o.Out, "history.jsonl")); err == nil {
		enc := json.NewEncoder(f)
		ops := r.h.Ops()
		sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
		for _, op := range ops {
			_ = enc.Encode(op)
		}
		f.Close()
	}
	_ = os.WriteFile(filepath.Join(r.o.Out, "summary.txt"), []byte(r.rep.Summary()), 0o644)
	_ = os.WriteFile(filepath.Join(r.o.Out, "summary.json"), []byte(r.rep.JSON()+"\n"), 0o644)
}
