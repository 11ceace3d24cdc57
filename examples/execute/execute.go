package execute

import (
	"github.com/agora-sched/agora/tlsconf"

	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/agora-sched/agora/framework"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// MaxAttempts is how many times one instance is launched before the run
// gives up on it.
const MaxAttempts = 5

// declineSeconds filters agents whose offers were not needed; short, so
// that relaunches find resources quickly.
const declineSeconds = 5.0

// Options configure Run; the `agora run` flags map onto them.
type Options struct {
	// Masters are any masters' addresses; the SDK finds the leader.
	Masters []string
	// Name names the framework and prefixes task ids.
	Name string
	// Cmd is run with /bin/sh -c by every task.
	Cmd string
	// Instances is the number of tasks (default 1).
	Instances int
	// CPUs and MemMiB are each task's resources (defaults 0.1 and 32).
	CPUs, MemMiB float64
	// Role is the framework's role (default "*").
	Role string
	// FailoverTimeout is how long tasks survive a disconnected framework
	// (0: the master's default).
	FailoverTimeout time.Duration
	// Detach returns once every task is RUNNING, leaving the framework
	// registered until its failover timeout.
	Detach bool
	// Principal is the framework's principal.
	Principal string
	// Out receives one line per event (nil discards them).
	Out io.Writer
	// Logger receives the SDK's connection logs; nil means slog.Default().
	Logger *slog.Logger
	// TLS, Cluster and Token, optional, are the framework's credentials
	// (see framework.Config).
	TLS     tlsconf.Files
	Cluster string
	Token   string
}

// Run runs the framework until ctx ends (then tears it down), until every
// task is RUNNING with Detach, or until a fatal error.
func Run(ctx context.Context, o Options) error {
	if err := o.validate(); err != nil {
		return err
	}
	e := newExecutor(o)
	cfg := framework.Config{
		Masters: o.Masters,
		Info: &agorav1.FrameworkInfo{
			Name:                   o.Name,
			Principal:              o.Principal,
			Roles:                  []string{o.Role},
			FailoverTimeoutSeconds: o.FailoverTimeout.Seconds(),
		},
		// Acknowledged by hand, before a detach ends the run.
		DisableAutoAck: true,
		Logger:         o.Logger,
		TLS:            o.TLS,
		Cluster:        o.Cluster,
		Token:          o.Token,
	}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- framework.Run(runCtx, cfg, e) }()

	teardown := func() error {
		d := e.driver()
		if d == nil {
			return nil
		}
		tctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := d.Teardown(tctx); err != nil {
			return fmt.Errorf("tear down framework %s: %w", d.FrameworkID(), err)
		}
		e.printf("framework %s torn down\n", d.FrameworkID())
		return nil
	}
	finish := func(err error) error {
		stop()
		<-done
		return err
	}

	select {
	case err := <-done:
		if errors.Is(err, framework.ErrTornDown) {
			return fmt.Errorf("framework %s was torn down", e.frameworkID())
		}
		if err != nil {
			return fmt.Errorf("framework %s: %w", o.Name, err)
		}
		return nil
	case err := <-e.failed:
		return finish(errors.Join(err, teardown()))
	case <-e.detached:
		e.printf("framework %s detached; tasks keep running until the failover timeout\n", e.frameworkID())
		return finish(nil)
	case <-e.ended:
		e.printf("all tasks ended\n")
		return finish(teardown())
	case <-ctx.Done():
		if o.Detach {
			running, total := e.progress()
			return finish(fmt.Errorf("interrupted with %d of %d tasks running: %w", running, total, ctx.Err()))
		}
		return finish(teardown())
	}
}

func (o *Options) validate() error {
	if o.Name == "" {
		return errors.New("a framework name is required (--name)")
	}
	if o.Cmd == "" {
		return errors.New("a command is required (--cmd)")
	}
	if len(o.Masters) == 0 {
		return errors.New("a master address is required (--addr)")
	}
	if o.Instances == 0 {
		o.Instances = 1
	}
	if o.CPUs == 0 {
		o.CPUs = 0.1
	}
	if o.MemMiB == 0 {
		o.MemMiB = 32
	}
	if o.Role == "" {
		o.Role = "*"
	}
	switch {
	case o.Instances < 0:
		return fmt.Errorf("--instances %d must be positive", o.Instances)
	case o.CPUs < 0 || math.IsNaN(o.CPUs) || math.IsInf(o.CPUs, 0):
		return fmt.Errorf("--cpus %g must be a positive number", o.CPUs)
	case o.MemMiB < 0 || math.IsNaN(o.MemMiB) || math.IsInf(o.MemMiB, 0):
		return fmt.Errorf("--mem %g must be a positive number of MiB", o.MemMiB)
	case o.FailoverTimeout < 0:
		return fmt.Errorf("--failover-timeout %s must not be negative", o.FailoverTimeout)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return nil
}

// instance is one of the N tasks to keep running.
type instance struct {
	n        int
	taskID   string // current attempt's task id
	attempt  int
	launched bool // accepted and not yet ended
	state    agorav1.TaskState
	agent    string
	ended    bool // FINISHED or KILLED: not relaunched
}

// executor is the framework.Scheduler of a run. Its methods run on the SDK's
// event goroutine; mu guards what Run reads from its own goroutine.
type executor struct {
	o        Options
	mu       sync.Mutex
	d        framework.Driver
	inst     []*instance
	byTask   map[string]*instance
	printed  map[string]agorav1.TaskState
	suppress bool

	failed   chan error
	detached chan struct{}
	ended    chan struct{}
	signaled bool
}

func newExecutor(o Options) *executor {
	e := &executor{
		o: o, byTask: map[string]*instance{}, printed: map[string]agorav1.TaskState{},
		failed: make(chan error, 1), detached: make(chan struct{}), ended: make(chan struct{}),
	}
	for n := 1; n <= o.Instances; n++ {
		in := &instance{n: n, attempt: 1, taskID: fmt.Sprintf("%s-%d", o.Name, n)}
		e.inst = append(e.inst, in)
		e.byTask[in.taskID] = in
	}
	return e
}

func (e *executor) printf(format string, args ...any) { fmt.Fprintf(e.o.Out, format, args...) }

func (e *executor) driver() framework.Driver {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.d
}

func (e *executor) frameworkID() string {
	if d := e.driver(); d != nil {
		return d.FrameworkID()
	}
	return ""
}

func (e *executor) progress() (running, total int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, in := range e.inst {
		if in.state == agorav1.TaskState_TASK_STATE_RUNNING {
			running++
		}
	}
	return running, len(e.inst)
}

// Subscribed implements framework.Scheduler.
func (e *executor) Subscribed(d framework.Driver, id string, resubscribed bool) {
	e.mu.Lock()
	e.d = d
	e.mu.Unlock()
	if resubscribed {
		e.printf("framework %s resubscribed\n", id)
		return
	}
	e.printf("framework %s registered as %s\n", e.o.Name, id)
}

// pool is what is left of one role's resources in an offer.
type pool struct {
	role      string
	cpus, mem float64
}

const eps = 1e-9

// Offers implements framework.Scheduler: it packs pending instances into
// each offer and declines the rest.
func (e *executor) Offers(d framework.Driver, offers []*agorav1.Offer) {
	ctx := context.Background()
	for _, o := range offers {
		pools := []*pool{}
		if o.GetRole() != "" && o.GetRole() != "*" {
			pools = append(pools, &pool{role: o.GetRole(),
				cpus: framework.ScalarIn(o.GetResources(), "cpus", o.GetRole()),
				mem:  framework.ScalarIn(o.GetResources(), "mem", o.GetRole())})
		}
		pools = append(pools, &pool{cpus: framework.ScalarIn(o.GetResources(), "cpus", ""), mem: framework.ScalarIn(o.GetResources(), "mem", "")})

		var tasks []*agorav1.TaskInfo
		var placed []*instance
		for _, in := range e.pending() {
			for _, p := range pools {
				if p.cpus+eps < e.o.CPUs || p.mem+eps < e.o.MemMiB {
					continue
				}
				p.cpus -= e.o.CPUs
				p.mem -= e.o.MemMiB
				tasks = append(tasks, e.taskInfo(in, o.GetAgentId(), p.role))
				placed = append(placed, in)
				break
			}
		}
		if len(tasks) == 0 {
			refuse := declineSeconds
			if err := d.Decline(ctx, []string{o.GetId()}, &refuse); err != nil {
				slogOr(e.o.Logger).Debug("decline failed", "offer", o.GetId(), "err", err)
			}
			continue
		}
		e.setLaunched(placed, o.GetAgentId(), true)
		if err := d.Accept(ctx, []string{o.GetId()}, []*agorav1.Operation{framework.Launch(tasks...)}, nil); err != nil {
			e.printf("launch on agent %s failed: %v\n", o.GetAgentId(), err)
			e.setLaunched(placed, "", false)
		}
	}
	e.adjustOffers(d)
}

func (e *executor) taskInfo(in *instance, agentID, role string) *agorav1.TaskInfo {
	cpus, mem := framework.Scalar("cpus", e.o.CPUs), framework.Scalar("mem", e.o.MemMiB)
	cpus.Role, mem.Role = role, role
	t := framework.Task(in.taskID, agentID, e.o.Cmd, cpus, mem)
	t.Name = fmt.Sprintf("%s-%d", e.o.Name, in.n)
	return t
}

func (e *executor) pending() []*instance {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*instance
	for _, in := range e.inst {
		if !in.launched && !in.ended {
			out = append(out, in)
		}
	}
	return out
}

func (e *executor) setLaunched(ins []*instance, agent string, launched bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, in := range ins {
		in.launched, in.agent = launched, agent
		if launched {
			in.state = agorav1.TaskState_TASK_STATE_STAGING
		}
	}
}

// adjustOffers suppresses offers while nothing is pending and revives them
// when something is.
func (e *executor) adjustOffers(d framework.Driver) {
	want := len(e.pending()) == 0
	if want == e.suppress {
		return
	}
	ctx := context.Background()
	var err error
	if want {
		err = d.Suppress(ctx, e.o.Role)
	} else {
		err = d.Revive(ctx, e.o.Role)
	}
	if err != nil {
		slogOr(e.o.Logger).Warn("changing offer suppression failed", "suppress", want, "err", err)
		return
	}
	e.suppress = want
}

// Rescind implements framework.Scheduler; the executor holds no offers.
func (e *executor) Rescind(framework.Driver, string) {}

// Update implements framework.Scheduler.
func (e *executor) Update(d framework.Driver, st *agorav1.TaskStatus) {
	e.track(d, st)
	if st.GetUuid() != "" {
		if err := d.Acknowledge(context.Background(), st); err != nil {
			slogOr(e.o.Logger).Warn("acknowledgement failed", "task", st.GetTaskId(), "err", err)
		}
	}
	e.adjustOffers(d)
	e.checkDone()
}

func (e *executor) track(d framework.Driver, st *agorav1.TaskStatus) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, state := st.GetTaskId(), st.GetState()
	if e.printed[id] != state {
		e.printed[id] = state
		line := fmt.Sprintf("task %s %s", id, framework.StateName(state))
		if a := st.GetAgentId(); a != "" {
			line += " on agent " + a
		}
		if m := st.GetMessage(); m != "" && framework.IsTerminal(state) {
			line += ": " + m
		} else if r := st.GetReason(); r != "" && framework.IsTerminal(state) {
			line += ": " + r
		}
		e.printf("%s\n", line)
	}
	in, ok := e.byTask[id]
	if !ok || in.taskID != id {
		return // an earlier attempt, or not ours
	}
	in.state = state
	if a := st.GetAgentId(); a != "" {
		in.agent = a
	}
	switch state {
	case agorav1.TaskState_TASK_STATE_FINISHED, agorav1.TaskState_TASK_STATE_KILLED:
		in.launched, in.ended = false, true
	case agorav1.TaskState_TASK_STATE_FAILED, agorav1.TaskState_TASK_STATE_LOST,
		agorav1.TaskState_TASK_STATE_ERROR, agorav1.TaskState_TASK_STATE_DROPPED,
		agorav1.TaskState_TASK_STATE_GONE, agorav1.TaskState_TASK_STATE_GONE_BY_OPERATOR,
		agorav1.TaskState_TASK_STATE_UNKNOWN:
		if in.attempt >= MaxAttempts {
			e.fail(fmt.Errorf("task %s-%d failed %d times; last: %s %s", e.o.Name, in.n, in.attempt,
				framework.StateName(state), firstNonEmpty(st.GetMessage(), st.GetReason())))
			return
		}
		in.attempt++
		in.launched = false
		in.taskID = fmt.Sprintf("%s-%d.%d", e.o.Name, in.n, in.attempt)
		e.byTask[in.taskID] = in
		e.printf("relaunching %s-%d as %s\n", e.o.Name, in.n, in.taskID)
	}
}

// checkDone signals Run when every task is RUNNING (with Detach) or every
// task has ended.
func (e *executor) checkDone() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.signaled {
		return
	}
	running, ended := 0, 0
	for _, in := range e.inst {
		switch {
		case in.ended:
			ended++
		case in.launched && in.state == agorav1.TaskState_TASK_STATE_RUNNING:
			running++
		}
	}
	switch {
	case ended == len(e.inst):
		e.signaled = true
		close(e.ended)
	case e.o.Detach && running+ended == len(e.inst):
		e.signaled = true
		close(e.detached)
	}
}

func (e *executor) fail(err error) {
	if !e.signaled {
		e.signaled = true
		e.failed <- err
	}
}

// Failure implements framework.Scheduler.
func (e *executor) Failure(_ framework.Driver, agentID string) {
	e.printf("agent %s lost\n", agentID)
}

// Error implements framework.Scheduler.
func (e *executor) Error(_ framework.Driver, message string) {
	e.printf("error: %s\n", message)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func slogOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
