package simagent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/agent/executor"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// Config configures a simulator.
type Config struct {
	// Masters are the masters' URLs ("http://127.0.0.1:7100").
	Masters []string
	// Count is the number of agents to simulate.
	Count int
	// IDPrefix starts each agent's id; agent i is IDPrefix + i, zero
	// padded ("sim-00042"). Default "sim-".
	IDPrefix string
	// Resources are each agent's resources.
	Resources resources.Resources
	// TaskDuration, when positive, finishes each task (FINISHED) that long
	// after it was reported RUNNING; zero runs tasks until they are killed.
	TaskDuration time.Duration
	// KillGrace is the kill grace of a task that sets none; default
	// executor.DefaultKillGrace, as on a real agent. A simulated task
	// ignores SIGTERM: a kill ends it (KILLED) only when its grace is over,
	// the longest a real agent's kill can take.
	KillGrace time.Duration
	// Cluster must match the masters' cluster name; default "agora".
	Cluster string
	// Version is reported at registration.
	Version string
	// PollWait is the wait of each GetAssignments long poll; default 10s.
	PollWait time.Duration
	// Decommission, when set, decommissions the agents when Run ends (they
	// may not register again); otherwise they stop for a restart.
	Decommission bool
	// ClientOptions are passed to the one rpc/client all agents share
	// (TLS, HTTP client).
	ClientOptions []client.Option
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// Stats counts what the simulated agents did.
type Stats struct {
	// Registered is the number of agents registered at least once.
	Registered int64
	// Launched counts tasks the agents took from their assignments.
	Launched int64
	// Running counts RUNNING updates committed by the masters.
	Running int64
	// Finished counts FINISHED and KILLED updates committed.
	Finished int64
	// Killed counts the KILLED updates committed (also in Finished).
	Killed int64
	// Dropped counts updates the masters refused for good.
	Dropped int64
}

// Sim is a set of simulated agents.
type Sim struct {
	cfg Config
	// cs are the clients, one per agentsPerClient agents: each has its
	// own HTTP/2 connections, so no connection carries more long polls
	// than a master lets one connection have streams (250 by default);
	// beyond that, status updates would queue behind long polls.
	cs  []*client.Client
	log *slog.Logger

	registered, launched, running, finished, killed, dropped atomic.Int64
}

// New validates cfg and returns a simulator.
func New(cfg Config) (*Sim, error) {
	if cfg.Count < 1 {
		return nil, errors.New("simagent: count must be at least 1")
	}
	if len(cfg.Masters) == 0 {
		return nil, errors.New("simagent: no masters")
	}
	if cfg.Resources.IsEmpty() {
		return nil, errors.New("simagent: agents need resources")
	}
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = "sim-"
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "agora"
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = 10 * time.Second
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = executor.DefaultKillGrace
	}
	if !fsm.ValidAgentID(cfg.agentID(cfg.Count - 1)) {
		return nil, fmt.Errorf("simagent: %q makes invalid agent ids", cfg.IDPrefix)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "simagent")
	s := &Sim{cfg: cfg, log: log}
	// The simulator runs beside the masters (loopback, one machine):
	// gzip of the assignment answers would only move CPU from the
	// masters to here and back, so the clients do not accept it.
	// Answers are decoded with answerCodec.
	noGzip := client.WithClientOptions(connect.WithAcceptCompression("gzip", nil, nil), connect.WithCodec(answerCodec{}))
	for i := 0; i < cfg.Count; i += agentsPerClient {
		s.cs = append(s.cs, client.New(joinAddrs(cfg.Masters), append([]client.Option{client.WithLogger(log), noGzip}, cfg.ClientOptions...)...))
	}
	return s, nil
}

// agentsPerClient is how many simulated agents share one client (each
// with a long poll and at most one status call in flight).
const agentsPerClient = 100

func joinAddrs(as []string) string {
	out := ""
	for i, a := range as {
		if i > 0 {
			out += ","
		}
		out += a
	}
	return out
}

// agentID is the id of agent i.
func (cfg Config) agentID(i int) string {
	return fmt.Sprintf("%s%05d", cfg.IDPrefix, i)
}

// AgentIDs returns the ids of the simulated agents.
func (s *Sim) AgentIDs() []string {
	out := make([]string, s.cfg.Count)
	for i := range out {
		out[i] = s.cfg.agentID(i)
	}
	return out
}

// Stats returns the counts so far.
func (s *Sim) Stats() Stats {
	return Stats{Registered: s.registered.Load(), Launched: s.launched.Load(), Running: s.running.Load(),
		Finished: s.finished.Load(), Killed: s.killed.Load(), Dropped: s.dropped.Load()}
}

// Run runs the agents until ctx ends, then says goodbye for each (StopAgent,
// bounded by a few seconds) and returns nil.
func (s *Sim) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	agents := make([]*simAgent, s.cfg.Count)
	for i := range agents {
		a := &simAgent{s: s, c: s.cs[i/agentsPerClient], id: s.cfg.agentID(i), tasks: map[string]*simTask{}, wake: make(chan struct{}, 1)}
		agents[i] = a
		wg.Add(2)
		go func() { defer wg.Done(); a.assignLoop(ctx) }()
		go func() { defer wg.Done(); a.sendLoop(ctx) }()
	}
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sem := make(chan struct{}, 64)
	for _, a := range agents {
		if !a.everRegistered.Load() {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := a.c.Agent.StopAgent(sctx, connect.NewRequest(&agorav1.StopAgentRequest{AgentId: a.id, Decommission: s.cfg.Decommission}))
			if err != nil && sctx.Err() == nil {
				s.log.Warn("goodbye of a simulated agent failed", "agent", a.id, "err", err)
			}
		}()
	}
	wg.Wait()
	for _, c := range s.cs {
		c.CloseIdleConnections()
	}
	return nil
}

// simTask is a task a simulated agent runs.
type simTask struct {
	fid, id string
	// reported is the last state sent (or queued).
	reported agorav1.TaskState
	// killing is set once the masters asked for a kill: the task ends
	// KILLED when its kill grace is over (or when it would have finished
	// before that), never FINISHED.
	killing bool
}

// simAgent is one simulated agent.
type simAgent struct {
	s  *Sim
	c  *client.Client
	id string

	everRegistered atomic.Bool
	registered     atomic.Bool

	mu      sync.Mutex
	tasks   map[string]*simTask // by framework id + "/" + task id
	pending []*agorav1.TaskStatus
	wake    chan struct{} // capacity 1: pending grew or a registration is needed
	rereg   bool
}

func taskKey(fid, tid string) string { return fid + "/" + tid }

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	s := hex.EncodeToString(b[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// register registers until a master commits it.
func (a *simAgent) register(ctx context.Context) (uint64, error) {
	backoff := 50 * time.Millisecond
	for {
		a.mu.Lock()
		reported := make([]*agorav1.TaskStatus, 0, len(a.tasks))
		for _, t := range a.tasks {
			reported = append(reported, &agorav1.TaskStatus{TaskId: t.id, FrameworkId: t.fid, AgentId: a.id, State: t.reported,
				Source: agorav1.StatusSource_STATUS_SOURCE_AGENT})
		}
		a.mu.Unlock()
		resp, err := a.c.Agent.RegisterAgent(ctx, connect.NewRequest(&agorav1.RegisterAgentRequest{
			AgentId: a.id, Hostname: "simulated", Resources: resourcepb.ToProto("", a.s.cfg.Resources),
			Version: a.s.cfg.Version, Cluster: a.s.cfg.Cluster, Tasks: reported, Simulated: true,
		}))
		if err == nil {
			if !a.everRegistered.Swap(true) {
				a.s.registered.Add(1)
			}
			a.registered.Store(true)
			a.kick()
			return resp.Msg.GetIndex(), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		switch connect.CodeOf(err) {
		case connect.CodeInvalidArgument, connect.CodeFailedPrecondition:
			return 0, fmt.Errorf("simagent: agent %s: registration refused: %w", a.id, err)
		}
		a.s.log.Debug("registration failed; retrying", "agent", a.id, "err", err)
		if !client.Sleep(ctx, backoff) {
			return 0, ctx.Err()
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (a *simAgent) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// assignLoop registers, then follows the agent's assignments.
func (a *simAgent) assignLoop(ctx context.Context) {
	for ctx.Err() == nil {
		a.registered.Store(false)
		index, err := a.register(ctx)
		if err != nil {
			if ctx.Err() == nil {
				a.s.log.Error("simulated agent stops", "agent", a.id, "err", err)
			}
			return
		}
		a.follow(ctx, index-min(index, 1))
	}
}

// follow long-polls the assignments until the masters want a registration.
func (a *simAgent) follow(ctx context.Context, minIndex uint64) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		a.mu.Lock()
		rereg := a.rereg
		a.rereg = false
		a.mu.Unlock()
		if rereg {
			return
		}
		resp, err := a.c.Agent.GetAssignments(ctx, connect.NewRequest(&agorav1.GetAssignmentsRequest{
			AgentId: a.id, MinIndex: minIndex, WaitSeconds: a.s.cfg.PollWait.Seconds(), OmitUnchanged: true,
		}))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.s.log.Debug("get assignments failed", "agent", a.id, "err", err)
			if !client.Sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if !resp.Msg.GetKnown() {
			return
		}
		minIndex = max(minIndex, resp.Msg.GetIndex())
		if resp.Msg.GetUnchanged() {
			// What we hold is still the assignment (omit_unchanged).
			continue
		}
		a.reconcile(ctx, resp.Msg.GetTasks())
	}
}

// reconcile takes new tasks (reporting them RUNNING), kills those the
// masters want killed and forgets those no longer assigned.
//
// Kills follow the real agent (package agent): a task killed before it
// ran ends KILLED at once ("killed before launch"); a running one gets no
// KILLING of its own (the master set KILLING when it asked) and ends
// KILLED after its kill grace (its kill_grace_seconds, else
// Config.KillGrace), as a process that ignores SIGTERM does, with the
// executor's reason for it; the master then records its kill_reason
// (PREEMPTED, DRAINED) as the update's reason. A task whose TaskDuration
// ends while it is being killed ends KILLED then, as a real process that
// exits during its grace does.
func (a *simAgent) reconcile(ctx context.Context, assigned []*agorav1.Task) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[string]bool, len(assigned))
	grew := false
	for _, t := range assigned {
		k := taskKey(t.GetFrameworkId(), t.GetId())
		seen[k] = true
		st, ok := a.tasks[k]
		if !ok {
			st = &simTask{fid: t.GetFrameworkId(), id: t.GetId()}
			a.tasks[k] = st
			if t.GetKillRequested() {
				// Never ran here: the real agent reports it killed
				// without launching it.
				st.killing = true
				a.endLocked(st, agorav1.TaskState_TASK_STATE_KILLED, "killed before launch", "", 0)
				grew = true
				continue
			}
			st.reported = agorav1.TaskState_TASK_STATE_RUNNING
			a.s.launched.Add(1)
			a.queueLocked(st, agorav1.TaskState_TASK_STATE_RUNNING, "", "", 0)
			grew = true
			if d := a.s.cfg.TaskDuration; d > 0 {
				time.AfterFunc(d, func() { a.taskEnded(ctx, k, st) })
			}
		}
		if t.GetKillRequested() && !st.killing && !fsm.IsTerminal(st.reported) {
			st.killing = true
			grace := time.Duration(t.GetKillGraceSeconds() * float64(time.Second))
			if grace <= 0 {
				grace = a.s.cfg.KillGrace
			}
			time.AfterFunc(grace, func() { a.graceOver(ctx, k, st) })
		}
	}
	for k := range a.tasks {
		// A task the masters no longer assign ended there (they list the
		// live tasks only): a real agent kills what may still run of it;
		// here there is nothing left to run, and its final update, if
		// queued, is sent all the same.
		if !seen[k] {
			delete(a.tasks, k)
		}
	}
	if grew {
		a.kick()
	}
}

// taskEnded ends st when its TaskDuration is over: FINISHED, or KILLED if
// a kill is under way (the real executor's decision for a process that
// exits 0 after a kill request).
func (a *simAgent) taskEnded(ctx context.Context, k string, st *simTask) {
	if ctx.Err() != nil {
		return
	}
	a.mu.Lock()
	if cur, ok := a.tasks[k]; ok && cur == st && !fsm.IsTerminal(st.reported) {
		if st.killing {
			a.endLocked(st, agorav1.TaskState_TASK_STATE_KILLED, "killed on request: exited with code 0", "simulated task ended during its kill grace", 0)
		} else {
			a.endLocked(st, agorav1.TaskState_TASK_STATE_FINISHED, "exited with code 0", "simulated task done", 0)
		}
	}
	a.mu.Unlock()
	a.kick()
}

// graceOver ends a killed task whose kill grace is over: KILLED by
// SIGKILL, as the real executor reports a process that outlived SIGTERM.
func (a *simAgent) graceOver(ctx context.Context, k string, st *simTask) {
	if ctx.Err() != nil {
		return
	}
	a.mu.Lock()
	if cur, ok := a.tasks[k]; ok && cur == st && !fsm.IsTerminal(st.reported) {
		a.endLocked(st, agorav1.TaskState_TASK_STATE_KILLED, "killed on request: killed by signal 9 (SIGKILL)",
			"simulated task outlived its kill grace", 128+9)
	}
	a.mu.Unlock()
	a.kick()
}

// endLocked queues st's final update. a.mu must be held.
func (a *simAgent) endLocked(st *simTask, state agorav1.TaskState, reason, msg string, exitCode int32) {
	st.reported = state
	a.queueLocked(st, state, reason, msg, exitCode)
}

func (a *simAgent) queueLocked(t *simTask, state agorav1.TaskState, reason, msg string, exitCode int32) {
	a.pending = append(a.pending, &agorav1.TaskStatus{
		TaskId: t.id, FrameworkId: t.fid, AgentId: a.id, State: state, Reason: reason, Message: msg, Uuid: newUUID(),
		Source: agorav1.StatusSource_STATUS_SOURCE_AGENT, ExitCode: exitCode,
	})
}

// maxStatusesPerCall stays under the masters' limit of one call.
const maxStatusesPerCall = 1000

// maxNotFoundRetries is how many times an update of a task the masters do
// not know is sent again (with backoff, about 10 s in all) before it is
// dropped, unless the task is still assigned to the agent (assigned): the
// agent may have learnt the task from a master whose state is ahead of the
// leader's, and an election can take longer than 10 s on a loaded machine
// (a 1M-task run kept 12 tasks STAGING for good when their RUNNING updates
// were dropped so; RELIABILITY open 16).
const maxNotFoundRetries = 12

// assigned reports whether the task of st is in the agent's latest
// assignment. A task the masters removed leaves the assignment (its
// removal changes it, so the next answer is a full one), so an update
// retried while this holds is retried only until the masters know the
// task or drop it.
func (a *simAgent) assigned(st *agorav1.TaskStatus) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.tasks[taskKey(st.GetFrameworkId(), st.GetTaskId())]
	return ok
}

// sendLoop sends the queued updates in order, a batch per call, until
// each is committed or refused for good.
func (a *simAgent) sendLoop(ctx context.Context) {
	backoff := 50 * time.Millisecond
	batchSize := maxStatusesPerCall
	notFound := 0 // NotFound answers to the update at the head of pending
	for {
		a.mu.Lock()
		n := min(len(a.pending), batchSize)
		batch := a.pending[:n:n]
		a.mu.Unlock()
		if n == 0 || !a.registered.Load() {
			select {
			case <-ctx.Done():
				return
			case <-a.wake:
				continue
			}
		}
		_, err := a.c.Agent.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: a.id, Statuses: batch}))
		if ctx.Err() != nil {
			return
		}
		code := connect.CodeOf(err)
		switch {
		case err == nil:
			a.count(batch)
		case code == connect.CodeNotFound || code == connect.CodePermissionDenied || code == connect.CodeInvalidArgument:
			if n > 1 {
				batchSize = 1 // find the refused update
				continue
			}
			if code == connect.CodeNotFound && (notFound < maxNotFoundRetries || a.assigned(batch[0])) {
				// The task came from a master whose state is ahead of the
				// leader's applied state: retry before giving up on it.
				notFound++
				if !client.Sleep(ctx, backoff) {
					return
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			a.s.log.Warn("masters refused a status update; dropping it", "agent", a.id, "task", batch[0].GetTaskId(), "err", err)
			a.s.dropped.Add(1)
		case code == connect.CodeFailedPrecondition:
			a.mu.Lock()
			a.rereg = true
			a.mu.Unlock()
			a.registered.Store(false)
			fallthrough
		default:
			a.s.log.Debug("status update failed; retrying", "agent", a.id, "err", err)
			if !client.Sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff, batchSize, notFound = 50*time.Millisecond, maxStatusesPerCall, 0
		a.mu.Lock()
		a.pending = a.pending[n:]
		a.mu.Unlock()
	}
}

func (a *simAgent) count(batch []*agorav1.TaskStatus) {
	for _, st := range batch {
		switch st.GetState() {
		case agorav1.TaskState_TASK_STATE_RUNNING:
			a.s.running.Add(1)
		case agorav1.TaskState_TASK_STATE_KILLED:
			a.s.killed.Add(1)
			a.s.finished.Add(1)
		default:
			a.s.finished.Add(1)
		}
	}
}
