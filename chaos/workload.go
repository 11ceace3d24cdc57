package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/chaos/check"
	"github.com/agora-sched/agora/framework"
	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// roleKeys are the roles whose configuration the operator clients write
// and read as registers.
var roleKeys = []string{"chaos-r0", "chaos-r1", "chaos-r2"}

// callTimeout bounds one client call; an answer later than this is an
// unknown outcome.
const callTimeout = 5 * time.Second

// workload drives operator clients and frameworks against a cluster.
type workload struct {
	c     Cluster
	h     *History
	log   *slog.Logger
	seed  uint64
	ops   atomic.Int64
	value atomic.Int64 // unique role weights

	mu    sync.Mutex
	fws   []*fwState
	wg    sync.WaitGroup
	taskN atomic.Int64

	// simTasks counts tasks accepted onto simulated agents, simStatuses
	// the statuses from simulated agents the frameworks received.
	simTasks, simStatuses atomic.Int64

	// paused: frameworks stay subscribed and keep acknowledging, but
	// launch, kill, reserve and create nothing more (the settle phase).
	paused atomic.Bool
}

// fwKind is what a workload framework does with its offers.
type fwKind int

const (
	// kindMixed launches, kills, reserves, unreserves, creates and
	// destroys volumes and declines, at random (no revocable capability).
	kindMixed fwKind = iota
	// kindBatch fills revocable offers with small long-running tasks
	// (preemption.go).
	kindBatch
	// kindProd demands room for a task now and then and launches it when
	// offered (preemption.go).
	kindProd
)

// fwState is one framework of the workload.
type fwState struct {
	w      *workload
	idx    int
	kind   fwKind
	name   string
	role   string
	rng    *rand.Rand
	rngMu  sync.Mutex
	drv    framework.Driver
	ended  atomic.Bool // Run returned
	runErr error

	mu      sync.Mutex
	running map[string]string // task id -> agent id, tasks seen RUNNING
	volumes map[string]string // volume id -> agent id, acknowledged creates

	// Batch and prod frameworks (preemption.go), under mu.
	live     map[string]liveTask // task id -> where and since when, until it ends
	want     []*agorav1.Resource // prod: the shape of the queued task, nil when none
	wantAt   time.Time           // prod: when want was queued
	synced   bool                // prod: the master has the demand want implies
	demandMu sync.Mutex          // prod: one demand sync at a time
}

func (w *workload) opsDone() int64 { return w.ops.Load() }

// operators runs n operator clients writing and reading role configuration
// until ctx ends.
func (w *workload) operators(ctx context.Context, n int) {
	for i := 0; i < n; i++ {
		w.wg.Add(1)
		go func(id int) {
			defer w.wg.Done()
			w.operator(ctx, id)
		}(i)
	}
}

func (w *workload) operator(ctx context.Context, id int) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(1000+id)))
	urls := w.c.MasterURLs()
	cl := newClient(w.c, urls[id%len(urls)])
	rotate := func(k int) { cl = newClient(w.c, urls[(id+k)%len(urls)]) }
	attempt := 0
	for ctx.Err() == nil {
		key := roleKeys[rng.IntN(len(roleKeys))]
		var err error
		switch p := rng.IntN(100); {
		case p < 45:
			v := float64(w.value.Add(1))
			err = w.setRole(ctx, cl, id, key, v)
		case p < 50:
			err = w.deleteRole(ctx, cl, id, key)
		default:
			err = w.listRoles(ctx, cl, id)
		}
		if err != nil && ctx.Err() == nil {
			attempt++
			rotate(attempt)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(20+rng.IntN(60)) * time.Millisecond):
		}
	}
}

func (w *workload) record(client int, kind, in string, call int64, out string, err error, pendingOnErr bool) {
	ret := w.h.Now()
	if err != nil {
		out = connect.CodeOf(err).String() + ": " + err.Error()
		if pendingOnErr {
			ret = check.Pending
		}
	}
	w.h.Add(Op{Client: client, Kind: kind, Input: in, Output: out, Call: call, Return: ret, OK: err == nil})
	w.ops.Add(1)
}

func (w *workload) setRole(ctx context.Context, cl *client.Client, id int, key string, v float64) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	call := w.h.Now()
	_, err := cl.Operator.SetRole(cctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: &agorav1.Role{Name: key, Weight: v}}))
	w.record(id, "set-role", fmt.Sprintf("%s=%g", key, v), call, "", err, true)
	op := check.RegisterOp{Client: id, Key: key, Write: true, Value: v, Call: call, Return: w.h.Now()}
	if err != nil {
		if definitelyRejected(err) {
			return err
		}
		op.Return = check.Pending
	}
	w.h.AddRegister(op)
	return err
}

func (w *workload) deleteRole(ctx context.Context, cl *client.Client, id int, key string) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	call := w.h.Now()
	_, err := cl.Operator.DeleteRole(cctx, connect.NewRequest(&agorav1.DeleteRoleRequest{Name: key}))
	w.record(id, "delete-role", key, call, "", err, true)
	op := check.RegisterOp{Client: id, Key: key, Write: true, Value: check.Absent, Call: call, Return: w.h.Now()}
	if err != nil {
		if definitelyRejected(err) {
			return err // NotFound: nothing deleted
		}
		op.Return = check.Pending
	}
	w.h.AddRegister(op)
	return err
}

func (w *workload) listRoles(ctx context.Context, cl *client.Client, id int) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	call := w.h.Now()
	resp, err := cl.Operator.ListRoles(cctx, connect.NewRequest(&agorav1.ListRolesRequest{}))
	ret := w.h.Now()
	if err != nil {
		w.record(id, "list-roles", "", call, "", err, false)
		return err
	}
	got := map[string]float64{}
	for _, r := range resp.Msg.GetRoles() {
		got[r.GetName()] = r.GetWeight()
	}
	var parts []string
	for _, k := range roleKeys {
		w.h.AddRegister(check.RegisterOp{Client: id, Key: k, Value: got[k], Call: call, Return: ret})
		parts = append(parts, fmt.Sprintf("%s=%g", k, got[k]))
	}
	w.record(id, "list-roles", "", call, strings.Join(parts, " "), nil, false)
	return nil
}

// definitelyRejected reports errors that prove the command was not applied:
// the FSM's rejections and the server's validation.
func definitelyRejected(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodeFailedPrecondition,
		connect.CodeAlreadyExists, connect.CodePermissionDenied, connect.CodeResourceExhausted:
		return true
	}
	return false
}

// frameworks starts n mixed frameworks through the SDK.
func (w *workload) frameworks(ctx context.Context, n int) {
	for i := 0; i < n; i++ {
		f := w.newFramework(i, kindMixed, fmt.Sprintf("chaos-%d", i), fmt.Sprintf("chaos-fw%d", i))
		w.run(ctx, f)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			f.killer(ctx)
		}()
	}
}

func (w *workload) newFramework(idx int, kind fwKind, name, role string) *fwState {
	f := &fwState{w: w, idx: idx, kind: kind, name: name, role: role,
		rng:     rand.New(rand.NewPCG(w.seed, uint64(2000+idx))),
		running: map[string]string{}, volumes: map[string]string{}, live: map[string]liveTask{}}
	w.mu.Lock()
	w.fws = append(w.fws, f)
	w.mu.Unlock()
	return f
}

// run runs framework f through the SDK until ctx ends, in the workload's
// WaitGroup.
func (w *workload) run(ctx context.Context, f *fwState, caps ...agorav1.Capability) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		cfg := framework.Config{
			Masters: w.c.MasterURLs(),
			Info: &agorav1.FrameworkInfo{Name: f.name, Roles: []string{f.role}, FailoverTimeoutSeconds: 3600,
				Capabilities: caps},
			HTTPClient: client.DefaultHTTPClient(),
			MaxBackoff: time.Second,
			Logger:     w.log.With("framework", f.name),
		}
		secureFramework(w.c, &cfg)
		f.runErr = framework.Run(ctx, cfg, f)
		f.ended.Store(true)
		if f.runErr != nil && ctx.Err() == nil {
			w.log.Warn("framework ended", "framework", f.name, "err", f.runErr)
		}
	}()
}

func (f *fwState) intn(n int) int {
	f.rngMu.Lock()
	defer f.rngMu.Unlock()
	return f.rng.IntN(n)
}

// killer kills a running task now and then.
func (f *fwState) killer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(500+f.intn(1500)) * time.Millisecond):
		}
		if f.w.paused.Load() {
			continue
		}
		f.mu.Lock()
		drv := f.drv
		var tid, aid string
		for t, a := range f.running {
			tid, aid = t, a
			break
		}
		if tid != "" {
			delete(f.running, tid)
		}
		f.mu.Unlock()
		if drv == nil || tid == "" {
			continue
		}
		f.w.h.mu.Lock()
		f.w.h.tasksRemoved[drv.FrameworkID()+"/"+tid] = true
		f.w.h.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		call := f.w.h.Now()
		err := drv.Kill(cctx, tid, aid)
		cancel()
		f.w.record(100+f.idx, "kill", tid, call, "", err, true)
	}
}

// Subscribed implements framework.Scheduler.
func (f *fwState) Subscribed(d framework.Driver, id string, resubscribed bool) {
	f.mu.Lock()
	f.drv = d
	f.synced = false // a new subscription: say the demand again
	f.mu.Unlock()
	f.w.h.Add(Op{Client: 100 + f.idx, Kind: "subscribed", Input: id, Output: fmt.Sprint("resubscribed=", resubscribed), Call: f.w.h.Now(), Return: f.w.h.Now(), OK: true})
}

// Offers implements framework.Scheduler: each offer is launched on,
// reserved, used for a volume, unreserved or declined, at random.
func (f *fwState) Offers(d framework.Driver, offers []*agorav1.Offer) {
	for _, o := range offers {
		ops, kind := f.plan(d, o)
		f.w.wg.Add(1)
		go func() {
			defer f.w.wg.Done()
			f.answer(d, o, ops, kind)
		}()
	}
}

func (f *fwState) plan(d framework.Driver, o *agorav1.Offer) ([]*agorav1.Operation, string) {
	if f.w.paused.Load() {
		return nil, "decline"
	}
	switch f.kind {
	case kindBatch:
		return f.planBatch(o)
	case kindProd:
		return f.planProd(o)
	}
	cpus := framework.ScalarIn(o.GetResources(), "cpus", "")
	mem := framework.ScalarIn(o.GetResources(), "mem", "")
	disk := framework.ScalarIn(o.GetResources(), "disk", "")
	rcpus := framework.ScalarIn(o.GetResources(), "cpus", f.role)
	rmem := framework.ScalarIn(o.GetResources(), "mem", f.role)
	rdisk := framework.ScalarIn(o.GetResources(), "disk", f.role)
	p := f.intn(100)
	task := func(role string) *agorav1.Operation {
		id := fmt.Sprintf("t%d-%d", f.idx, f.w.taskN.Add(1))
		c, m := 0.1*float64(1+f.intn(3)), float64(16*(1+f.intn(4)))
		res := []*agorav1.Resource{{Name: "cpus", Scalar: c, Role: role}, {Name: "mem", Scalar: m, Role: role}}
		ti := framework.Task(id, o.GetAgentId(), f.w.c.TaskCommand(5+f.intn(25)), res...)
		return framework.Launch(ti)
	}
	switch {
	case rcpus >= 0.3 && rmem >= 64 && p < 30:
		return []*agorav1.Operation{task(f.role)}, "launch-reserved"
	case rdisk >= 16 && p < 50:
		id := fmt.Sprintf("v%d-%d", f.idx, f.w.taskN.Add(1))
		return []*agorav1.Operation{framework.CreateVolume(&agorav1.VolumeInfo{Id: id, SizeMib: 16, ContainerPath: "data", Role: f.role})}, "create-volume"
	case p < 60 && f.volumeOn(o.GetAgentId()) != "":
		vid := f.volumeOn(o.GetAgentId())
		return []*agorav1.Operation{framework.DestroyVolume(&agorav1.VolumeInfo{Id: vid, SizeMib: 16, ContainerPath: "data", Role: f.role})}, "destroy-volume"
	case rcpus > 0 && p < 70:
		var rs []*agorav1.Resource
		for _, r := range o.GetResources() {
			if r.GetRole() == f.role && r.GetName() != "disk" {
				rs = append(rs, r)
			}
		}
		if rdisk > 0 && f.volumeOn(o.GetAgentId()) == "" {
			rs = append(rs, &agorav1.Resource{Name: "disk", Scalar: rdisk, Role: f.role})
		}
		return []*agorav1.Operation{framework.Unreserve(rs)}, "unreserve"
	case cpus >= 0.5 && mem >= 128 && disk >= 64 && p < 80:
		return []*agorav1.Operation{framework.Reserve(f.role, []*agorav1.Resource{
			framework.Scalar("cpus", 0.5), framework.Scalar("mem", 128), framework.Scalar("disk", 64)}, map[string]string{"by": "chaos"})}, "reserve"
	case cpus >= 0.3 && mem >= 64 && p < 95:
		return []*agorav1.Operation{task("")}, "launch"
	}
	return nil, "decline"
}

func (f *fwState) volumeOn(agent string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for v, a := range f.volumes {
		if a == agent {
			return v
		}
	}
	return ""
}

func (f *fwState) answer(d framework.Driver, o *agorav1.Offer, ops []*agorav1.Operation, kind string) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	refuse := 0.2
	if f.kind == kindProd {
		// A filter would keep the agent out of the leader's preemption
		// pass for the prod demand (Demand.Excluded).
		refuse = 0
	}
	call := f.w.h.Now()
	if ops == nil {
		err := d.Decline(ctx, []string{o.GetId()}, &refuse)
		f.w.record(100+f.idx, "decline", o.GetId(), call, "", err, true)
		return
	}
	if kind == "destroy-volume" {
		f.w.h.mu.Lock()
		f.w.h.volumesRemoved[ops[0].GetVolumes()[0].GetId()] = true
		f.w.h.mu.Unlock()
		f.mu.Lock()
		delete(f.volumes, ops[0].GetVolumes()[0].GetId())
		f.mu.Unlock()
	}
	err := d.Accept(ctx, []string{o.GetId()}, ops, &refuse)
	f.w.record(100+f.idx, "accept-"+kind, o.GetId(), call, "", err, true)
	if f.kind != kindMixed {
		f.launched(ops, err)
	}
	if err != nil {
		if !errors.Is(err, context.Canceled) && !definitelyRejected(err) {
			f.w.log.Debug("accept failed", "offer", o.GetId(), "err", err)
		}
		return
	}
	fid := d.FrameworkID()
	f.w.h.mu.Lock()
	f.w.h.accepted[o.GetId()]++
	for _, op := range ops {
		for _, t := range op.GetTasks() {
			f.w.h.tasksAcked[fid+"/"+t.GetTaskId()] = true
			if strings.HasPrefix(o.GetAgentId(), SimAgentPrefix) {
				f.w.simTasks.Add(1)
			}
		}
		if op.GetType() == agorav1.OperationType_OPERATION_TYPE_CREATE {
			for _, v := range op.GetVolumes() {
				f.w.h.volumesAcked[v.GetId()] = true
			}
		}
	}
	f.w.h.mu.Unlock()
	if kind == "create-volume" {
		f.mu.Lock()
		f.volumes[ops[0].GetVolumes()[0].GetId()] = o.GetAgentId()
		f.mu.Unlock()
	}
}

// Rescind implements framework.Scheduler.
func (f *fwState) Rescind(_ framework.Driver, offerID string) {
	f.w.h.Add(Op{Client: 100 + f.idx, Kind: "rescinded", Input: offerID, Call: f.w.h.Now(), Return: f.w.h.Now(), OK: true})
}

// Update implements framework.Scheduler.
func (f *fwState) Update(d framework.Driver, st *agorav1.TaskStatus) {
	f.w.h.Seen(st.GetFrameworkId(), check.StatusKey(st))
	if strings.HasPrefix(st.GetAgentId(), SimAgentPrefix) {
		f.w.simStatuses.Add(1)
	}
	if framework.IsTerminal(st.GetState()) {
		f.w.h.mu.Lock()
		f.w.h.tasksEnded[st.GetFrameworkId()+"/"+st.GetTaskId()] = true
		f.w.h.mu.Unlock()
	}
	f.mu.Lock()
	if st.GetState() == agorav1.TaskState_TASK_STATE_RUNNING {
		f.running[st.GetTaskId()] = st.GetAgentId()
	} else if framework.IsTerminal(st.GetState()) {
		delete(f.running, st.GetTaskId())
	}
	if framework.IsTerminal(st.GetState()) {
		delete(f.live, st.GetTaskId())
	} else if lt, ok := f.live[st.GetTaskId()]; ok {
		lt.seen = true
		f.live[st.GetTaskId()] = lt
	}
	f.mu.Unlock()
}

// Failure implements framework.Scheduler.
func (f *fwState) Failure(_ framework.Driver, agentID string) {
	f.w.h.Add(Op{Client: 100 + f.idx, Kind: "agent-failure", Input: agentID, Call: f.w.h.Now(), Return: f.w.h.Now(), OK: true})
}

// Error implements framework.Scheduler.
func (f *fwState) Error(_ framework.Driver, message string) {
	f.w.log.Warn("framework error event", "framework", f.name, "message", message)
	f.w.h.Add(Op{Client: 100 + f.idx, Kind: "error", Input: message, Call: f.w.h.Now(), Return: f.w.h.Now()})
}
