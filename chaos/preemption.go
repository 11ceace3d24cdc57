package chaos

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/framework"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// The preemption part of the workload. Two roles are configured at the
// start of a run, apart from the operators' register roles: chaos-batch
// (priority 0) and chaos-prod (priority 10). chaos-prod is then the top
// priority band, so every other role's offers are revocable for a
// framework with CAPABILITY_REVOCABLE_RESOURCES; the mixed frameworks and
// the kv service have no such capability, so their tasks are never
// revocable and must never be preempted (check.Preemptions).
//
// The batch framework (chaos-batch, with the capability) launches small
// long-running tasks on revocable offers, up to batchPerAgent live tasks on
// each agent: most of an agent's memory, so a prod task does not fit beside
// them. The prod framework (chaos-prod, without it) queues one task of a
// prodShapes shape now and then, revives its role and sends Demand; the
// leader rescinds lower-priority offers and preempts batch tasks to make
// room; prod launches its task on the offer that fits and clears its
// demand (Demand() and Suppress) once placed. Prod tasks are short, so
// the batch framework refills the room and the next demand preempts again.
const (
	batchRole     = "chaos-batch"
	prodRole      = "chaos-prod"
	prodPriority  = 10
	batchPerAgent = 12
	batchCPUs     = 0.05
	batchMem      = 256
	// prodLive bounds the prod tasks alive at once; prodGiveUp drops a
	// queued prod task nobody could place.
	prodLive   = 2
	prodGiveUp = 15 * time.Second
	prodFirst  = 3 * time.Second
	// unseenFor: a launch with no status this long after its accept (an
	// unknown outcome that did not happen) no longer counts as live.
	unseenFor = 30 * time.Second
)

// prodShapes are the prod task shapes (cpus, mem MiB): at most one fits in
// what the batch tasks leave free on an agent.
var prodShapes = [][2]float64{{0.1, 768}, {0.1, 1024}, {0.2, 1280}}

// liveTask is a batch or prod task launched and not seen ending.
type liveTask struct {
	agent string
	at    time.Time // accepted
	seen  bool      // a status arrived
}

// configureRoles sets chaos-batch and chaos-prod's priorities, retrying
// until limit: the run has not started its faults yet, so the cluster
// should answer.
func (w *workload) configureRoles(ctx context.Context, limit time.Duration) error {
	urls := w.c.MasterURLs()
	deadline := time.Now().Add(limit)
	var last error
	for attempt := 0; time.Now().Before(deadline) && ctx.Err() == nil; attempt++ {
		cl := newClient(w.c, urls[attempt%len(urls)])
		last = nil
		for _, r := range []*agorav1.Role{{Name: batchRole, Weight: 1, Priority: 0}, {Name: prodRole, Weight: 1, Priority: prodPriority}} {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			call := w.h.Now()
			_, err := cl.Operator.SetRole(cctx, connect.NewRequest(&agorav1.SetRoleRequest{Role: r}))
			cancel()
			w.record(99, "configure-role", fmt.Sprintf("%s priority %d", r.GetName(), r.GetPriority()), call, "", err, true)
			if err != nil {
				last = fmt.Errorf("set role %s: %w", r.GetName(), err)
				break
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
	if last == nil {
		last = ctx.Err()
	}
	return fmt.Errorf("chaos: configuring roles %s and %s: %w", batchRole, prodRole, last)
}

// preemptionFrameworks configures the roles and starts the batch and the
// prod framework; idx is the first free framework index.
func (w *workload) preemptionFrameworks(ctx context.Context, idx int) error {
	if err := w.configureRoles(ctx, 30*time.Second); err != nil {
		return err
	}
	batch := w.newFramework(idx, kindBatch, "chaos-batch", batchRole)
	w.run(ctx, batch, agorav1.Capability_CAPABILITY_REVOCABLE_RESOURCES)
	prod := w.newFramework(idx+1, kindProd, "chaos-prod", prodRole)
	w.run(ctx, prod)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		prod.demander(ctx)
	}()
	return nil
}

// liveOn counts f's live tasks on agent (all agents when agent is ""), at
// now; f.mu held.
func (f *fwState) liveOn(agent string, now time.Time) int {
	n := 0
	for _, t := range f.live {
		if (agent == "" || t.agent == agent) && (t.seen || now.Sub(t.at) < unseenFor) {
			n++
		}
	}
	return n
}

// planBatch launches as many batch tasks as the revocable offer holds, up
// to batchPerAgent live on the agent.
func (f *fwState) planBatch(o *agorav1.Offer) ([]*agorav1.Operation, string) {
	if !o.GetRevocable() {
		return nil, "decline" // batch runs on revocable resources only
	}
	cpus := framework.ScalarIn(o.GetResources(), "cpus", "")
	mem := framework.ScalarIn(o.GetResources(), "mem", "")
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(batchPerAgent-f.liveOn(o.GetAgentId(), now), int(cpus/batchCPUs+1e-9), int(mem/batchMem+1e-9))
	if n <= 0 {
		return nil, "decline"
	}
	var tasks []*agorav1.TaskInfo
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("b-%d", f.w.taskN.Add(1))
		ti := framework.Task(id, o.GetAgentId(), f.w.c.TaskCommand(60+f.intn(60)),
			framework.Scalar("cpus", batchCPUs), framework.Scalar("mem", batchMem))
		ti.KillGraceSeconds = 0.5
		tasks = append(tasks, ti)
		f.live[id] = liveTask{agent: o.GetAgentId(), at: now}
	}
	return []*agorav1.Operation{framework.Launch(tasks...)}, "launch-batch"
}

// planProd launches the queued prod task if the offer holds its shape.
func (f *fwState) planProd(o *agorav1.Offer) ([]*agorav1.Operation, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := f.want
	if want == nil || framework.ScalarIn(o.GetResources(), "cpus", "") < want[0].GetScalar() ||
		framework.ScalarIn(o.GetResources(), "mem", "") < want[1].GetScalar() {
		return nil, "decline"
	}
	id := fmt.Sprintf("p-%d", f.w.taskN.Add(1))
	ti := framework.Task(id, o.GetAgentId(), f.w.c.TaskCommand(3+f.intn(4)), want...)
	ti.KillGraceSeconds = 0.5
	f.live[id] = liveTask{agent: o.GetAgentId(), at: time.Now()}
	f.want, f.synced = nil, false // placed: clear the demand (answer, demander)
	return []*agorav1.Operation{framework.Launch(ti)}, "launch-prod"
}

// launched settles a batch or prod accept: a launch that definitely
// failed is not live, and a prod task that failed is queued again.
func (f *fwState) launched(ops []*agorav1.Operation, err error) {
	f.mu.Lock()
	if err != nil && definitelyRejected(err) {
		for _, op := range ops {
			for _, t := range op.GetTasks() {
				delete(f.live, t.GetTaskId())
				if f.kind == kindProd && f.want == nil && !f.w.paused.Load() {
					f.want, f.wantAt, f.synced = t.GetResources(), time.Now(), false
				}
			}
		}
	}
	f.mu.Unlock()
	if f.kind == kindProd {
		f.syncDemand(context.Background())
	}
}

// demander queues a prod task now and then (while fewer than prodLive
// prod tasks live) and keeps the master's demand in line with the queue.
// Paused, it clears the demand and suppresses its role for good.
func (f *fwState) demander(ctx context.Context) {
	// The first demand leaves the batch framework time to fill the agents.
	next := prodFirst
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
		next = time.Duration(1000+f.intn(1000)) * time.Millisecond
		now := time.Now()
		f.mu.Lock()
		switch {
		case f.w.paused.Load():
			if f.want != nil {
				f.want, f.synced = nil, false
			}
		case f.want != nil && now.Sub(f.wantAt) > prodGiveUp:
			f.w.log.Info("prod task not placed, giving up", "waited", now.Sub(f.wantAt).Round(time.Millisecond))
			f.want, f.synced = nil, false
		case f.want == nil && f.liveOn("", now) < prodLive:
			s := prodShapes[f.intn(len(prodShapes))]
			f.want = []*agorav1.Resource{framework.Scalar("cpus", s[0]), framework.Scalar("mem", s[1])}
			f.wantAt, f.synced = now, false
		}
		f.mu.Unlock()
		f.syncDemand(ctx)
	}
}

// syncDemand tells the master the demand the queue implies, unless it
// already has: the queued shape (role revived) or nothing (role
// suppressed). Calls are serialised and each reads the queue afresh, so
// the last one to run sends the latest queue.
func (f *fwState) syncDemand(ctx context.Context) {
	f.demandMu.Lock()
	defer f.demandMu.Unlock()
	f.mu.Lock()
	drv, want, synced := f.drv, f.want, f.synced
	f.mu.Unlock()
	if drv == nil || synced {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	call := f.w.h.Now()
	var err error
	if want == nil {
		err = errors.Join(drv.Demand(cctx), drv.Suppress(cctx, prodRole))
		f.w.record(100+f.idx, "clear-demand", prodRole, call, "", err, true)
	} else {
		err = errors.Join(drv.Revive(cctx, prodRole), drv.Demand(cctx, &agorav1.Demand{Role: prodRole, Resources: want, Count: 1}))
		f.w.record(100+f.idx, "demand", fmt.Sprintf("%s cpus:%g;mem:%g", prodRole, want[0].GetScalar(), want[1].GetScalar()), call, "", err, true)
	}
	if err != nil {
		return
	}
	f.mu.Lock()
	if sameWant(f.want, want) {
		f.synced = true
	}
	f.mu.Unlock()
}

// sameWant reports whether two queue states are the same one (the same
// slice, or both empty).
func sameWant(a, b []*agorav1.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
