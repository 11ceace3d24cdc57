package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/agent/executor"
	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
	"github.com/agora-sched/agora/rpc/rpcmetrics"
)

// Timings of the agent's loops.
const (
	assignmentWait = 10 * time.Second
	// fullAssignmentEvery bounds how long the agent goes without a full
	// GetAssignments answer (omit_unchanged is not asked for then).
	fullAssignmentEvery = time.Minute
	rpcTimeout          = 10 * time.Second
	sendBackoffMin      = 50 * time.Millisecond
	sendBackoffMax      = 2 * time.Second
	registerBackoff     = 5 * time.Second
	statusBatch         = 32
	noMasterPollTime    = 100 * time.Millisecond
)

// Agent is one agent process: it joins the gossip pool, registers with the
// masters, runs the tasks assigned to it and reports their status.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	res      resources.Resources
	exec     *executor.Process
	out      *outbox
	launched *launchedSet
	pool     *gossip.Pool
	httpLn   net.Listener
	httpSrv  *http.Server
	metrics  *agentMetrics
	hostname string

	ctx    context.Context // cancelled by Kill or when Run ends
	cancel context.CancelFunc

	started    atomic.Bool
	killed     atomic.Bool
	registered atomic.Bool
	done       chan struct{} // closed when Run returns
	closeOnce  sync.Once
	reregister chan struct{} // capacity 1: the masters want a registration

	// stopping is set when a graceful stop begins (nothing new launches);
	// decommission makes that stop kill the tasks (see lifecycle.go).
	stopping     atomic.Bool
	decommission atomic.Bool
	// registering is set before the first registration is sent: a stop
	// while it is in flight still says goodbye, as it may have committed.
	registering atomic.Bool

	masters *client.Client // leader discovery, redirects and retries

	mu          sync.Mutex
	latest      map[executor.TaskKey]*agorav1.TaskStatus
	killing     map[executor.TaskKey]bool
	seenMasters map[string]bool // HTTP addresses of every master seen in gossip
	lastIndex   uint64          // highest state index seen from the masters
	// volumeSizes is volume directory -> size in bytes, as last assigned;
	// volumeFailed is task -> why it was killed for an oversized volume.
	volumeSizes  map[string]int64
	volumeFailed map[executor.TaskKey]string
	groups       map[executor.TaskKey]groupKey
}

// New checks cfg, opens the data dir, its checkpoints and the executor,
// and binds the gossip and HTTP listeners. Run starts the agent.
func New(cfg Config) (*Agent, error) {
	if !ValidID(cfg.ID) {
		return nil, fmt.Errorf("agent: invalid id %q: want ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$", cfg.ID)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("agent: data dir is required")
	}
	if cfg.GossipAddr == "" {
		return nil, errors.New("agent: gossip address is required")
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "agora"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.checkTLS(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("agent", cfg.ID)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("agent: data dir: %w", err)
	}
	res := cfg.Resources
	if res.IsEmpty() {
		var err error
		if res, err = DefaultResources(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	if len(resourcepb.ToProto("", res)) == 0 {
		return nil, errors.New("agent: resources are empty")
	}
	hostname, err := os.Hostname()
	if err != nil || hostname == "" {
		hostname = "localhost"
	}
	out, err := openOutbox(filepath.Join(cfg.DataDir, "outbox.json"))
	if err != nil {
		return nil, err
	}
	launched, err := openLaunched(filepath.Join(cfg.DataDir, "launched.json"))
	if err != nil {
		return nil, err
	}
	rpcm := rpcmetrics.New(rpcmetrics.Client, nil)
	a := &Agent{
		cfg: cfg, log: log, res: res, out: out, launched: launched, hostname: hostname,
		done:        make(chan struct{}),
		reregister:  make(chan struct{}, 1),
		masters:     client.New("", cfg.clientOptions(client.WithCallTimeout(rpcTimeout), client.WithLogger(log), client.WithClientOptions(connect.WithInterceptors(rpcm)))...),
		latest:      map[executor.TaskKey]*agorav1.TaskStatus{},
		killing:     map[executor.TaskKey]bool{},
		seenMasters: map[string]bool{},
		groups:      map[executor.TaskKey]groupKey{},
	}
	a.decommission.Store(cfg.Decommission)
	a.ctx, a.cancel = context.WithCancel(context.Background())

	httpAddr := ""
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("agent: http listener: %w", err)
		}
		a.httpLn = cfg.secureListener(ln)
		httpAddr = ln.Addr().String()
	}
	a.metrics = newAgentMetrics(a, rpcm)
	if a.httpLn != nil {
		a.httpSrv = &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	}

	ex, err := executor.NewProcess(filepath.Join(cfg.DataDir, "executor"), log)
	if err != nil {
		a.closeListeners()
		return nil, fmt.Errorf("agent: executor: %w", err)
	}
	a.exec = ex

	pool, err := gossip.New(gossip.Config{
		NodeName: "agent/" + cfg.ID,
		BindAddr: cfg.GossipAddr,
		Tags:     gossip.Tags{Role: gossip.RoleAgent, ID: cfg.ID, HTTPAddr: httpAddr},
		Profile:  cfg.GossipProfile,
		Keyring:  cfg.GossipKeyring,
		Logger:   log,
	})
	if err != nil {
		a.closeListeners()
		_ = ex.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.pool = pool
	return a, nil
}

// ID returns the agent's id.
func (a *Agent) ID() string { return a.cfg.ID }

// GossipAddr returns the bound gossip host:port.
func (a *Agent) GossipAddr() string { return a.pool.Addr() }

// HTTPAddr returns the bound HTTP host:port, or "" without a listener.
func (a *Agent) HTTPAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

// Resources returns what the agent offers.
func (a *Agent) Resources() resources.Resources { return a.res }

// Registered reports whether a registration has been committed since the
// agent started.
func (a *Agent) Registered() bool { return a.registered.Load() }

// PendingUpdates returns how many status updates wait for delivery.
func (a *Agent) PendingUpdates() int { return a.out.Len() }

// Run runs the agent until ctx ends (or Kill) and returns nil then. It
// returns an error when the masters refuse the agent for good (wrong
// cluster, invalid registration). Tasks keep running after Run returns;
// a restarted agent with the same DataDir re-attaches to them.
//
// When ctx ends the agent stops gracefully: it tells the masters it stops
// for a restart (StopAgent), so they keep its tasks RUNNING and wait for
// it, then leaves the gossip pool. With Config.Decommission (or after
// Decommission) it kills its tasks first, waits for their final updates
// to be delivered and tells the masters it is gone for good.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	defer close(a.done)
	var stopWG sync.WaitGroup
	callerCtx := ctx
	stopWG.Go(func() { a.watchStop(callerCtx) })
	defer stopWG.Wait()
	ctx = a.ctx

	var wg sync.WaitGroup
	if a.httpSrv != nil {
		srv, ln := a.httpSrv, a.httpLn
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("agent http server stopped", "err", err)
			}
		})
	}
	wg.Go(func() {
		if err := a.pool.JoinRetry(ctx, a.cfg.Join); err != nil && ctx.Err() == nil {
			a.log.Error("gossip join failed", "err", err)
		}
	})

	var runErr error
	if err := a.recoverTasks(); err != nil {
		runErr = err
		a.cancel()
	} else {
		wg.Go(func() { a.consumeUpdates(ctx) })
		wg.Go(func() { a.sendLoop(ctx) })
		wg.Go(a.volumeUsageLoop)
		runErr = a.mainLoop(ctx)
		a.cancel()
	}
	if !a.killed.Load() {
		if a.stopping.Load() {
			a.goodbye()
		}
		if err := a.pool.Leave(); err != nil {
			a.log.Warn("gossip leave failed", "err", err)
		}
	}
	a.closeAll()
	wg.Wait()
	return runErr
}

// Kill stops the agent abruptly, as a SIGKILL would: no gossip leave, no
// further RPCs; its tasks keep running. It waits for Run to return.
func (a *Agent) Kill() {
	a.killed.Store(true)
	_ = a.pool.Shutdown()
	a.closeListeners()
	a.cancel()
	if a.started.Load() {
		<-a.done
	} else {
		a.closeAll()
	}
}

func (a *Agent) closeListeners() {
	if a.httpSrv != nil {
		_ = a.httpSrv.Close()
	}
	if a.httpLn != nil {
		_ = a.httpLn.Close() // Close does not know the listener before Serve
	}
}

func (a *Agent) closeAll() {
	a.closeOnce.Do(func() {
		_ = a.pool.Shutdown()
		a.closeListeners()
		if err := a.exec.Close(); err != nil {
			a.log.Warn("closing executor", "err", err)
		}
		a.masters.CloseIdleConnections()
	})
}

// recoverTasks re-attaches to the tasks of a previous run. Tasks that died
// meanwhile are reported (their terminal updates go to the outbox); all are
// reported at the next registration.
func (a *Agent) recoverTasks() error {
	ups, err := a.exec.Recover()
	if err != nil {
		return fmt.Errorf("agent: recover tasks: %w", err)
	}
	// Tasks that ended before a crash let us queue their final update.
	ended, err := a.exec.Terminal()
	if err != nil {
		return fmt.Errorf("agent: recover tasks: %w", err)
	}
	ups = append(ups, ended...)
	var terminal []*agorav1.TaskStatus
	a.mu.Lock()
	for _, u := range ups {
		st := a.statusFromUpdate(u)
		a.latest[u.Key()] = st
		if fsm.IsTerminal(st.GetState()) {
			terminal = append(terminal, st)
		}
		a.log.Info("recovered task", "task", u.TaskID, "framework", u.FrameworkID, "state", u.State, "reason", u.Reason)
	}
	a.mu.Unlock()
	if len(terminal) > 0 {
		if err := a.out.Append(terminal...); err != nil {
			return err
		}
	}
	for _, st := range terminal {
		a.forget(executor.TaskKey{FrameworkID: st.GetFrameworkId(), TaskID: st.GetTaskId()})
	}
	return nil
}

// consumeUpdates turns executor updates into queued status updates.
func (a *Agent) consumeUpdates(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-a.exec.Updates():
			if !ok {
				return
			}
			st := a.statusFromUpdate(u)
			a.volumeFailure(st)
			terminal := fsm.IsTerminal(st.GetState())
			a.mu.Lock()
			if terminal {
				delete(a.latest, u.Key())
			} else {
				a.latest[u.Key()] = st
			}
			a.mu.Unlock()
			if err := a.out.Append(st); err != nil {
				// Without the outbox the update would be lost on a crash; keep
				// trying, the executor has it checkpointed meanwhile.
				a.log.Error("cannot queue status update", "task", u.TaskID, "err", err)
				continue
			}
			if terminal {
				// Only once the final update is in the outbox: a
				// decommission waits for no task in killing and an empty
				// outbox, so between the two it must see one or the other.
				a.mu.Lock()
				delete(a.killing, u.Key())
				a.mu.Unlock()
			}
			a.log.Info("task status", "task", u.TaskID, "framework", u.FrameworkID, "state", u.State, "exit_code", u.ExitCode, "reason", u.Reason)
			if terminal {
				a.forget(u.Key())
				a.groupEnded(u.Key(), st.GetState(), u.Reason)
			}
		}
	}
}

// forget drops the executor's checkpoint of an ended task whose final
// update is safe in the outbox.
func (a *Agent) forget(key executor.TaskKey) {
	if err := a.exec.Forget(key); err != nil && !errors.Is(err, executor.ErrUnknownTask) {
		a.log.Warn("forgetting ended task", "task", key.TaskID, "framework", key.FrameworkID, "err", err)
	}
}

var taskStates = map[string]agorav1.TaskState{
	"STAGING":  agorav1.TaskState_TASK_STATE_STAGING,
	"STARTING": agorav1.TaskState_TASK_STATE_STARTING,
	"RUNNING":  agorav1.TaskState_TASK_STATE_RUNNING,
	"KILLING":  agorav1.TaskState_TASK_STATE_KILLING,
	"FINISHED": agorav1.TaskState_TASK_STATE_FINISHED,
	"FAILED":   agorav1.TaskState_TASK_STATE_FAILED,
	"KILLED":   agorav1.TaskState_TASK_STATE_KILLED,
	"ERROR":    agorav1.TaskState_TASK_STATE_ERROR,
	"LOST":     agorav1.TaskState_TASK_STATE_LOST,
}

func (a *Agent) statusFromUpdate(u executor.Update) *agorav1.TaskStatus {
	state, ok := taskStates[strings.ToUpper(string(u.State))]
	if !ok {
		state = agorav1.TaskState_TASK_STATE_FAILED
	}
	return &agorav1.TaskStatus{
		TaskId:      u.TaskID,
		FrameworkId: u.FrameworkID,
		AgentId:     a.cfg.ID,
		State:       state,
		Uuid:        newUUID(),
		Reason:      u.Reason,
		Message:     u.Message,
		Source:      agorav1.StatusSource_STATUS_SOURCE_EXECUTOR,
		Timestamp:   timestamppb.Now(),
		ExitCode:    int32(u.ExitCode),
	}
}

func (a *Agent) agentStatus(t *agorav1.Task, state agorav1.TaskState, reason, msg string) *agorav1.TaskStatus {
	return &agorav1.TaskStatus{
		TaskId:      t.GetId(),
		FrameworkId: t.GetFrameworkId(),
		AgentId:     a.cfg.ID,
		State:       state,
		Uuid:        newUUID(),
		Reason:      reason,
		Message:     msg,
		Source:      agorav1.StatusSource_STATUS_SOURCE_AGENT,
		Timestamp:   timestamppb.Now(),
	}
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// --- masters ---------------------------------------------------------------

// masterAddrs lists the HTTP addresses of the masters to talk to: those
// alive in our gossip view or, when gossip shows none alive (a busy or
// partitioned pool may suspect healthy masters), every master we have ever
// seen: RPC does not depend on gossip's verdict.
func (a *Agent) masterAddrs() []string {
	var alive, all []string
	for _, m := range a.pool.Members() {
		if m.Tags.Role != gossip.RoleMaster || m.Tags.HTTPAddr == "" {
			continue
		}
		all = append(all, m.Tags.HTTPAddr)
		if m.Status == gossip.StatusAlive {
			alive = append(alive, m.Tags.HTTPAddr)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, addr := range all {
		a.seenMasters[addr] = true
	}
	out := alive
	if len(out) == 0 {
		for addr := range a.seenMasters {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out
}

// master returns the client for the masters, once gossip has found one;
// it learns every master gossip shows.
func (a *Agent) master(ctx context.Context) (*client.Client, error) {
	for {
		if addrs := a.masterAddrs(); len(addrs) > 0 {
			a.masters.AddMasters(addrs...)
			return a.masters, nil
		}
		t := time.NewTimer(noMasterPollTime)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// --- registration and assignments -------------------------------------------

func (a *Agent) mainLoop(ctx context.Context) error {
	for ctx.Err() == nil {
		index, err := a.register(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		a.assignLoop(ctx, index)
	}
	return nil
}

// registerRequest describes the agent and the latest state of its tasks.
// The reported statuses carry no uuid: the masters record (and give a uuid
// to) only those that differ from the state, so an unchanged task does not
// make a framework acknowledge a new update at every re-registration.
func (a *Agent) registerRequest() *agorav1.RegisterAgentRequest {
	a.mu.Lock()
	tasks := make([]*agorav1.TaskStatus, 0, len(a.latest))
	for _, st := range a.latest {
		c := &agorav1.TaskStatus{
			TaskId: st.GetTaskId(), FrameworkId: st.GetFrameworkId(), AgentId: a.cfg.ID,
			State: st.GetState(), Reason: st.GetReason(), Message: st.GetMessage(),
			Source: agorav1.StatusSource_STATUS_SOURCE_AGENT, Timestamp: timestamppb.Now(), ExitCode: st.GetExitCode(),
		}
		tasks = append(tasks, c)
	}
	a.mu.Unlock()
	slices.SortFunc(tasks, func(x, y *agorav1.TaskStatus) int {
		return strings.Compare(taskKey(x.GetFrameworkId(), x.GetTaskId()), taskKey(y.GetFrameworkId(), y.GetTaskId()))
	})
	return &agorav1.RegisterAgentRequest{
		AgentId:       a.cfg.ID,
		Address:       a.HTTPAddr(),
		GossipAddress: a.pool.Addr(),
		Hostname:      a.hostname,
		Resources:     resourcepb.ToProto("", a.res),
		Attributes:    a.cfg.Attributes,
		Version:       a.cfg.Version,
		Cluster:       a.cfg.Cluster,
		Tasks:         tasks,
	}
}

// register registers until a master commits it and returns the commit
// index. Refusals that cannot change by retrying end the agent.
func (a *Agent) register(ctx context.Context) (uint64, error) {
	backoff := 100 * time.Millisecond
	for {
		c, err := a.master(ctx)
		if err != nil {
			return 0, err
		}
		req := a.registerRequest()
		a.registering.Store(true)
		resp, err := c.Agent.RegisterAgent(ctx, connect.NewRequest(req))
		if err == nil {
			a.registered.Store(true)
			a.metrics.registrations.Inc()
			a.mu.Lock()
			for id, st := range a.latest {
				if fsm.IsTerminal(st.GetState()) {
					delete(a.latest, id)
				}
			}
			a.mu.Unlock()
			select { // a registration answers any pending request for one
			case <-a.reregister:
			default:
			}
			a.log.Info("registered", "master", resp.Msg.GetMasterId(), "index", resp.Msg.GetIndex(), "tasks", len(req.Tasks))
			return resp.Msg.GetIndex(), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		switch connect.CodeOf(err) {
		case connect.CodeInvalidArgument, connect.CodeFailedPrecondition:
			return 0, fmt.Errorf("agent: registration refused: %w", err)
		case connect.CodeAlreadyExists:
			a.log.Warn("registration refused; retrying", "err", err)
		default:
			a.log.Debug("registration failed; retrying", "err", err)
		}
		if !client.Sleep(ctx, backoff) {
			return 0, ctx.Err()
		}
		backoff = min(2*backoff, registerBackoff)
	}
}

// requestRegistration asks the main loop to register again.
func (a *Agent) requestRegistration() {
	select {
	case a.reregister <- struct{}{}:
	default:
	}
}

// assignLoop follows the agent's assignments with blocking queries until
// the masters ask for a new registration or ctx ends.
func (a *Agent) assignLoop(ctx context.Context, regIndex uint64) {
	a.mu.Lock()
	a.lastIndex = max(a.lastIndex, regIndex)
	a.mu.Unlock()
	// The first query waits until the master has applied our registration.
	minIndex := regIndex - min(regIndex, 1)
	backoff := sendBackoffMin
	var lastFull time.Time // when the last full answer came (zero: none yet)
	for ctx.Err() == nil {
		c, err := a.master(ctx)
		if err != nil {
			return
		}
		callCtx, cancel := context.WithCancel(ctx)
		var rereg atomic.Bool
		go func() {
			select {
			case <-a.reregister:
				rereg.Store(true)
				cancel()
			case <-callCtx.Done():
			}
		}()
		resp, err := c.Agent.GetAssignments(callCtx, connect.NewRequest(&agorav1.GetAssignmentsRequest{
			AgentId: a.cfg.ID, MinIndex: minIndex, WaitSeconds: assignmentWait.Seconds(),
			// A wait that ends with nothing new is answered in a few bytes;
			// a full answer at least every fullAssignmentEvery re-runs
			// reconcile against the whole list (a launch that failed to
			// checkpoint is retried then).
			OmitUnchanged: !lastFull.IsZero() && time.Since(lastFull) < fullAssignmentEvery,
		}))
		cancel()
		if rereg.Load() {
			return
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Debug("get assignments failed", "err", err)
			if !client.Sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, sendBackoffMax)
			continue
		}
		backoff = sendBackoffMin
		msg := resp.Msg
		a.mu.Lock()
		stale := msg.GetIndex() < a.lastIndex
		a.mu.Unlock()
		if stale {
			// A master behind what we already saw; ask another.
			c.Skip(c.Target())
			continue
		}
		if !msg.GetKnown() {
			a.log.Info("masters do not know this agent as active; registering again", "index", msg.GetIndex())
			return
		}
		a.mu.Lock()
		a.lastIndex = msg.GetIndex()
		a.mu.Unlock()
		minIndex = msg.GetIndex()
		if msg.GetUnchanged() {
			continue // the assignment we reconciled last still stands
		}
		lastFull = time.Now()
		a.reconcile(msg)
	}
}

// reconcile launches new assigned tasks, kills those the masters want
// killed and those they no longer assign, and prunes the launch record.
func (a *Agent) reconcile(msg *agorav1.GetAssignmentsResponse) {
	volumes := map[string]*agorav1.Volume{}
	for _, v := range msg.GetVolumes() {
		volumes[v.GetId()] = v
	}
	a.rememberVolumeSizes(msg.GetVolumes())
	a.noteGroups(msg.GetTasks())
	stopping := a.stopping.Load()
	groups := map[groupKey][]*agorav1.Task{}
	var groupOrder []groupKey
	assigned := map[string]bool{}
	running := map[string]executor.TaskKey{} // by taskKey
	for _, k := range a.exec.Running() {
		running[taskKey(k.FrameworkID, k.TaskID)] = k
	}
	for _, t := range msg.GetTasks() {
		if t.GetAgentId() != "" && t.GetAgentId() != a.cfg.ID {
			continue
		}
		key := taskKey(t.GetFrameworkId(), t.GetId())
		assigned[key] = true
		if fsm.IsTerminal(t.GetState()) {
			continue
		}
		if t.GetKillRequested() {
			_, isRunning := running[key]
			a.killTask(t, isRunning)
			continue
		}
		if a.launched.Has(key) || stopping {
			continue
		}
		if stale := a.staleVolumeUsers(t); len(stale) > 0 {
			a.launchAfterStale(t, volumes, stale)
			continue
		}
		if g := t.GetGroupId(); g != "" {
			gk := groupKey{t.GetFrameworkId(), g}
			if _, seen := groups[gk]; !seen {
				groupOrder = append(groupOrder, gk)
			}
			groups[gk] = append(groups[gk], t)
			continue
		}
		a.launch(t, volumes)
	}
	for _, gk := range groupOrder {
		a.launchGroup(groups[gk], volumes)
	}
	// A task we run that the masters no longer assign to us was ended by
	// them (killed while we were away, agent gone): stop it.
	for key, k := range running {
		if !assigned[key] {
			a.mu.Lock()
			already := a.killing[k]
			a.killing[k] = true
			a.mu.Unlock()
			if !already {
				a.log.Warn("killing task the masters no longer assign to this agent", "task", k.TaskID, "framework", k.FrameworkID, "index", msg.GetIndex())
				go a.killExec(k, 0)
			}
		}
	}
	if err := a.launched.Retain(func(key string) bool {
		_, isRunning := running[key]
		return assigned[key] || isRunning
	}); err != nil {
		a.log.Warn("pruning launch checkpoint", "err", err)
	}
	a.pruneVolumes(msg.GetVolumes())
}

func (a *Agent) launch(t *agorav1.Task, volumes map[string]*agorav1.Volume) {
	key := taskKey(t.GetFrameworkId(), t.GetId())
	// Record the launch before it happens: a crash in between must not lead
	// to a second launch.
	if err := a.launched.Add(key); err != nil {
		a.log.Error("cannot checkpoint launch; not launching", "task", t.GetId(), "err", err)
		return
	}
	a.start(t, volumes)
}

// start runs a task whose launch is checkpointed.
func (a *Agent) start(t *agorav1.Task, volumes map[string]*agorav1.Volume) {
	spec, err := a.taskSpec(t, volumes)
	if err == nil {
		err = a.exec.Launch(spec)
	}
	if err != nil {
		a.log.Error("task launch failed", "task", t.GetId(), "framework", t.GetFrameworkId(), "err", err)
		st := a.agentStatus(t, agorav1.TaskState_TASK_STATE_FAILED, "launch failed", err.Error())
		if err := a.out.Append(st); err != nil {
			a.log.Error("cannot queue status update", "task", t.GetId(), "err", err)
		}
		return
	}
	a.metrics.launched.Inc()
	a.log.Info("launched task", "task", t.GetId(), "framework", t.GetFrameworkId(), "name", t.GetName())
}

func (a *Agent) killTask(t *agorav1.Task, running bool) {
	key := taskKey(t.GetFrameworkId(), t.GetId())
	if running {
		k := executor.TaskKey{FrameworkID: t.GetFrameworkId(), TaskID: t.GetId()}
		a.mu.Lock()
		already := a.killing[k]
		a.killing[k] = true
		a.mu.Unlock()
		if !already {
			grace := time.Duration(t.GetKillGraceSeconds() * float64(time.Second))
			a.log.Info("killing task on request", "task", t.GetId(), "framework", t.GetFrameworkId(), "grace", grace)
			go a.killExec(k, grace)
		}
		return
	}
	if a.launched.Has(key) {
		return // it ran and ended; its terminal update is on its way
	}
	if err := a.launched.Add(key); err != nil {
		a.log.Error("cannot checkpoint kill", "task", t.GetId(), "err", err)
		return
	}
	st := a.agentStatus(t, agorav1.TaskState_TASK_STATE_KILLED, "killed before launch", "")
	if err := a.out.Append(st); err != nil {
		a.log.Error("cannot queue status update", "task", t.GetId(), "err", err)
	}
}

func (a *Agent) killExec(key executor.TaskKey, grace time.Duration) {
	if err := a.exec.Kill(key, grace); err != nil {
		a.log.Warn("kill task", "task", key.TaskID, "framework", key.FrameworkID, "err", err)
		a.mu.Lock()
		delete(a.killing, key)
		a.mu.Unlock()
	}
}

// taskSpec turns an assigned task into what the executor runs.
func (a *Agent) taskSpec(t *agorav1.Task, volumes map[string]*agorav1.Volume) (executor.TaskSpec, error) {
	pools, err := resourcepb.FromProto(t.GetResources())
	if err != nil {
		return executor.TaskSpec{}, fmt.Errorf("task resources: %w", err)
	}
	total := pools.Total()
	var ports []uint64
	for _, g := range total.Ranges["ports"] {
		for p := g.Begin; p <= g.End && len(ports) < 65536; p++ {
			ports = append(ports, p)
		}
	}
	env := map[string]string{}
	for k, v := range t.GetCommand().GetEnvironment() {
		env[k] = v
	}
	var vols []executor.Volume
	for _, vid := range t.GetVolumeIds() {
		v := volumes[vid]
		if v == nil {
			return executor.TaskSpec{}, fmt.Errorf("volume %s is not assigned to this agent", vid)
		}
		dir, err := a.prepareVolume(v)
		if err != nil {
			return executor.TaskSpec{}, err
		}
		vols = append(vols, executor.Volume{ID: vid, HostPath: dir, ContainerPath: v.GetContainerPath()})
		env["AGORA_VOLUME_"+envName(vid)] = dir
		env["AGORA_VOLUME_PATH_"+envName(v.GetContainerPath())] = dir
	}
	return executor.TaskSpec{
		TaskID:      t.GetId(),
		FrameworkID: t.GetFrameworkId(),
		Name:        t.GetName(),
		Command:     t.GetCommand().GetValue(),
		Env:         env,
		CPUs:        total.Scalar("cpus"),
		MemMiB:      int64(math.Ceil(total.Scalar("mem"))),
		Ports:       ports,
		KillGrace:   time.Duration(t.GetKillGraceSeconds() * float64(time.Second)),
		Volumes:     vols,
	}, nil
}

// envName upper-cases s and replaces every character outside [A-Z0-9_].
func envName(s string) string {
	b := []byte(strings.ToUpper(s))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// --- status updates ----------------------------------------------------------

// sendLoop delivers the outbox in order, one batch at a time, until each
// update is committed (or refused for good).
func (a *Agent) sendLoop(ctx context.Context) {
	backoff := sendBackoffMin
	batchSize := statusBatch
	for ctx.Err() == nil {
		batch := a.out.Peek(batchSize)
		if len(batch) == 0 || !a.registered.Load() {
			wait := time.Second
			if !a.registered.Load() {
				wait = noMasterPollTime // deliver as soon as the first registration lands
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
			case <-a.out.Notify():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		c, err := a.master(ctx)
		if err != nil {
			return
		}
		_, err = c.Agent.UpdateStatus(ctx, connect.NewRequest(&agorav1.UpdateStatusRequest{AgentId: a.cfg.ID, Statuses: batch}))
		uuids := make([]string, len(batch))
		for i, st := range batch {
			uuids[i] = st.GetUuid()
		}
		if err == nil {
			a.metrics.sent.Add(float64(len(batch)))
			if err := a.out.Remove(uuids...); err != nil {
				a.log.Error("cannot remove delivered updates from the outbox", "err", err)
			}
			backoff, batchSize = sendBackoffMin, statusBatch
			continue
		}
		if ctx.Err() != nil {
			return
		}
		switch connect.CodeOf(err) {
		case connect.CodeNotFound, connect.CodePermissionDenied, connect.CodeInvalidArgument:
			if len(batch) > 1 {
				batchSize = 1 // find the update that is refused
				continue
			}
			a.log.Warn("masters refused status update; dropping it", "task", batch[0].GetTaskId(), "state", batch[0].GetState(), "err", err)
			a.metrics.dropped.Inc()
			if err := a.out.Remove(uuids...); err != nil {
				a.log.Error("cannot remove refused update from the outbox", "err", err)
			}
			batchSize = statusBatch
			continue
		case connect.CodeFailedPrecondition:
			a.log.Info("masters want a registration before status updates", "err", err)
			a.requestRegistration()
		default:
			a.log.Debug("status update failed; retrying", "err", err, "in", backoff)
		}
		if !client.Sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, sendBackoffMax)
	}
}
