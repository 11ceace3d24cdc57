package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/framework"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service"
)

// StateKey is the key of a service's State record.
const StateKey = "service/state"

// KillResend is how long the driver waits before sending a kill again for
// a task that is still not stopped.
const KillResend = 10 * time.Second

// declineRefuse is the filter of a declined offer: short, so that a pod
// waiting for its own agent's offer does not wait long.
const declineRefuse = 1.0

// driver runs one service: a framework.Scheduler whose every change to the
// State is stored in Raft before it is acted on further. mu serialises the
// SDK's events, the operator's commands and readiness results.
type driver struct {
	h    *Host
	name string
	log  *slog.Logger
	// spec is the first spec of a service that Run starts (nil when the
	// driver resumes an existing one).
	spec *service.Spec

	loaded   chan struct{} // closed once the State is loaded or stored
	loadOnce sync.Once
	loadErr  error

	mu        sync.Mutex
	d         framework.Driver
	fid       string
	st        *service.State
	raw       []byte // st as stored
	version   uint64
	wants     *bool                         // last revive (true) or suppress (false) sent
	demand    *string                       // last demand sent ("" none), nil: unknown
	killsSent map[string]time.Time          // task -> when its kill was last sent
	checks    map[string]context.CancelFunc // task -> its readiness checker
	done      bool                          // removed: record deleted, torn down
}

func (dr *driver) markLoaded(err error) {
	dr.loadOnce.Do(func() {
		dr.loadErr = err
		close(dr.loaded)
	})
}

// ctx is the context of calls the driver makes: the host's, bounded.
func (dr *driver) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(dr.h.ctx, 30*time.Second)
}

// Subscribed implements framework.Scheduler: load (or store) the State,
// reconcile, act.
func (dr *driver) Subscribed(d framework.Driver, frameworkID string, resubscribed bool) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	dr.d, dr.fid = d, frameworkID
	dr.demand = nil // say it again to the (maybe new) leader
	dr.h.noteFramework(dr.name, frameworkID)
	dr.log.Info("service scheduler subscribed", "framework", frameworkID, "resubscribed", resubscribed)
	if err := dr.load(); err != nil {
		dr.log.Error("loading the service state failed", "err", err)
		dr.markLoaded(err)
		return
	}
	dr.markLoaded(nil)
	dr.reconcile()
	dr.after()
}

// load reads the State record; for a new service it stores the first
// State. Called with mu held.
func (dr *driver) load() error {
	ctx, cancel := dr.callCtx()
	defer cancel()
	recs, err := dr.d.ListRecords(ctx, StateKey)
	if err != nil {
		return fmt.Errorf("scheduler: list records of %s: %w", dr.name, err)
	}
	for _, r := range recs {
		if r.GetKey() != StateKey {
			continue
		}
		var st service.State
		if err := st.UnmarshalBinary(r.GetValue()); err != nil {
			return fmt.Errorf("scheduler: service %s: %w", dr.name, err)
		}
		dr.st, dr.raw, dr.version = &st, bytes.Clone(r.GetValue()), r.GetVersion()
		return nil
	}
	if dr.spec == nil {
		if dr.st != nil {
			return nil // keep what we have (the record was deleted by us)
		}
		return fmt.Errorf("scheduler: service %s has no state record", dr.name)
	}
	st := service.New(dr.spec, incarnation(dr.fid))
	b, err := st.MarshalBinary()
	if err != nil {
		return fmt.Errorf("scheduler: encode state: %w", err)
	}
	v, err := dr.d.PutRecord(ctx, StateKey, b, 0)
	if err != nil {
		return fmt.Errorf("scheduler: store the first state of %s: %w", dr.name, err)
	}
	dr.st, dr.raw, dr.version = st, b, v
	return nil
}

// incarnation is the part of the framework id that makes the service's
// ids unique to this run.
func incarnation(fid string) string {
	if len(fid) > 8 {
		return fid[:8]
	}
	return fid
}

// reconcile asks for the state of every task the State names; the answers
// arrive as updates (UNKNOWN for a launch that never applied).
func (dr *driver) reconcile() {
	var tasks []*agorav1.ReconcileTask
	for _, p := range dr.st.Pods {
		if p.TaskID != "" {
			tasks = append(tasks, &agorav1.ReconcileTask{TaskId: p.TaskID, AgentId: p.AgentID})
		}
	}
	for _, r := range dr.st.Releases {
		if r.TaskID != "" {
			tasks = append(tasks, &agorav1.ReconcileTask{TaskId: r.TaskID, AgentId: r.AgentID})
		}
	}
	if len(tasks) == 0 {
		return
	}
	ctx, cancel := dr.callCtx()
	defer cancel()
	if _, err := dr.d.Reconcile(ctx, tasks); err != nil {
		dr.log.Warn("reconciliation failed", "err", err)
	}
}

// Offers implements framework.Scheduler.
func (dr *driver) Offers(d framework.Driver, offers []*agorav1.Offer) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.st == nil || dr.done {
		dr.declineAll(offers)
		return
	}
	var inv *Inventory
	for _, wire := range offers {
		o, err := service.OfferFromProto(wire, dr.st.Spec.Role)
		if err != nil {
			dr.log.Warn("bad offer", "offer", wire.GetId(), "err", err)
			dr.declineAll([]*agorav1.Offer{wire})
			continue
		}
		if inv == nil {
			if inv, err = dr.h.reservations(dr.st.Spec.Role); err != nil {
				dr.log.Warn("listing reservations failed; declining", "err", err)
				dr.declineAll(offers)
				return
			}
		}
		inv.Fill(&o)
		next := dr.st.Clone()
		dec := next.HandleOffer(o)
		for _, r := range dec.Reasons {
			dr.log.Debug("offer passed over", "offer", o.ID, "agent", o.AgentID, "reason", r)
		}
		if !dec.Accept() {
			dr.declineAll([]*agorav1.Offer{wire})
			// Learning from an offer (a reservation id) is a change too.
			dr.store(next)
			continue
		}
		ctx, cancel := dr.callCtx()
		refuse := declineRefuse
		err = d.Accept(ctx, []string{o.ID}, dec.Operations, &refuse)
		cancel()
		if err != nil && !ambiguous(err) {
			dr.log.Warn("accept refused; keeping the old state", "offer", o.ID, "launched", dec.Launched, "err", err)
			continue
		}
		if err != nil {
			dr.log.Warn("accept outcome unknown; storing the new state", "offer", o.ID, "err", err)
		}
		dr.log.Info("accepted offer", "offer", o.ID, "agent", o.AgentID, "launched", dec.Launched, "released", dec.Released)
		dr.store(next)
	}
	dr.after()
}

// ambiguous reports whether a write may have been applied.
func ambiguous(err error) bool {
	return errors.Is(err, errOutcomeUnknown) || connect.CodeOf(err) == connect.CodeDeadlineExceeded
}

func (dr *driver) declineAll(offers []*agorav1.Offer) {
	if len(offers) == 0 || dr.d == nil {
		return
	}
	ids := make([]string, 0, len(offers))
	for _, o := range offers {
		ids = append(ids, o.GetId())
	}
	ctx, cancel := dr.callCtx()
	defer cancel()
	refuse := declineRefuse
	if err := dr.d.Decline(ctx, ids, &refuse); err != nil {
		dr.log.Debug("decline failed", "err", err)
	}
}

// Rescind implements framework.Scheduler.
func (dr *driver) Rescind(framework.Driver, string) {}

// Update implements framework.Scheduler.
func (dr *driver) Update(d framework.Driver, status *agorav1.TaskStatus) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.st == nil || dr.done {
		return
	}
	next := dr.st.Clone()
	err := next.HandleStatus(service.TaskStatus{TaskID: status.GetTaskId(), State: status.GetState(), Message: status.GetMessage()})
	if errors.Is(err, service.ErrUnknownTask) {
		if !framework.IsTerminal(status.GetState()) && status.GetState() != agorav1.TaskState_TASK_STATE_UNKNOWN {
			dr.log.Info("killing a task the service does not know", "task", status.GetTaskId())
			dr.kill(status.GetTaskId(), status.GetAgentId())
		}
		return
	}
	if err != nil {
		dr.log.Warn("status update not applied", "task", status.GetTaskId(), "err", err)
		return
	}
	dr.store(next)
	dr.after()
}

// Failure implements framework.Scheduler.
func (dr *driver) Failure(framework.Driver, string) {}

// InverseOffers implements framework.InverseOfferScheduler: the pods on a
// draining agent move off it (State.Drain), and the driver accepts the
// inverse offer once that is stored.
func (dr *driver) InverseOffers(d framework.Driver, ios []*agorav1.InverseOffer) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.st == nil || dr.done {
		return
	}
	for _, io := range ios {
		agentID := io.GetAgentId()
		next := dr.st.Clone()
		moving := next.Drain(agentID)
		if err := dr.store(next); err != nil {
			dr.log.Warn("recording a drain failed; the inverse offer comes again on resubscription", "agent", agentID, "err", err)
			continue
		}
		dr.log.Info("agent draining: moving the service's pods off it", "agent", agentID, "pods_there", moving,
			"deadline", io.GetDeadline().AsTime())
		ctx, cancel := dr.callCtx()
		err := d.AcceptInverseOffer(ctx, agentID)
		cancel()
		if err != nil {
			dr.log.Warn("answering the inverse offer failed", "agent", agentID, "err", err)
		}
	}
	dr.after()
}

// Error implements framework.Scheduler.
func (dr *driver) Error(_ framework.Driver, message string) {
	dr.log.Error("service framework ended", "message", message)
}

// store makes next the State, writing it to Raft first when it differs
// from what is stored. On a conflict or an unknown outcome the record is
// read back: what Raft holds is the truth. Called with mu held.
func (dr *driver) store(next *service.State) error {
	b, err := next.MarshalBinary()
	if err != nil {
		return fmt.Errorf("scheduler: encode state: %w", err)
	}
	if bytes.Equal(b, dr.raw) {
		dr.st = next
		return nil
	}
	ctx, cancel := dr.callCtx()
	defer cancel()
	v, err := dr.d.PutRecord(ctx, StateKey, b, dr.version)
	if err != nil {
		dr.log.Warn("storing the service state failed; reloading it", "err", err)
		if lerr := dr.load(); lerr != nil {
			dr.log.Error("reloading the service state failed", "err", lerr)
		}
		return fmt.Errorf("scheduler: store state of %s: %w", dr.name, err)
	}
	dr.st, dr.raw, dr.version = next, b, v
	return nil
}

// after carries out what the stored State says: kills, readiness checks,
// revive or suppress, and the end of a removed service. Called with mu
// held.
func (dr *driver) after() {
	if dr.st == nil || dr.d == nil || dr.done {
		return
	}
	now := time.Now()
	live := map[string]bool{}
	for _, k := range dr.st.Kills() {
		live[k.TaskID] = true
		if t, ok := dr.killsSent[k.TaskID]; ok && now.Sub(t) < KillResend {
			continue
		}
		dr.log.Info("killing task", "task", k.TaskID, "pod", k.Pod, "reason", k.Reason)
		dr.kill(k.TaskID, k.AgentID)
	}
	for id := range dr.killsSent {
		if !live[id] {
			delete(dr.killsSent, id)
		}
	}
	dr.syncChecks()
	wants := dr.st.WantsOffers()
	if dr.wants == nil || *dr.wants != wants {
		ctx, cancel := dr.callCtx()
		var err error
		if wants {
			err = dr.d.Revive(ctx, dr.st.Spec.Role)
		} else {
			err = dr.d.Suppress(ctx, dr.st.Spec.Role)
		}
		cancel()
		if err == nil {
			dr.wants = &wants
			if !wants {
				none := "" // Suppress cleared the role's demand
				dr.demand = &none
			}
		} else {
			dr.log.Warn("revive/suppress failed", "wants", wants, "err", err)
		}
	}
	dr.sendDemand()
	if dr.st.Removed() {
		dr.finish()
	}
}

// sendDemand tells the masters what the plan waits to place (a new pod's
// resources), so that a role of a higher priority than the tasks in the
// way can have them preempted; an empty demand once nothing waits. Sent
// when it changes. Called with mu held.
func (dr *driver) sendDemand() {
	r, ok := dr.st.Demand()
	var ds []*agorav1.Demand
	key := ""
	if ok {
		d := &agorav1.Demand{Role: dr.st.Spec.Role, Count: 1}
		for _, sc := range []struct {
			name string
			v    float64
		}{{"cpus", r.CPUs}, {"mem", r.Mem}, {"disk", r.Disk}} {
			if sc.v > 0 {
				d.Resources = append(d.Resources, &agorav1.Resource{Name: sc.name, Scalar: sc.v})
			}
		}
		if len(d.Resources) > 0 {
			ds = append(ds, d)
			key = fmt.Sprintf("%s %g %g %g", d.GetRole(), r.CPUs, r.Mem, r.Disk)
		}
	}
	if dr.demand != nil && *dr.demand == key {
		return
	}
	ctx, cancel := dr.callCtx()
	defer cancel()
	if err := dr.d.Demand(ctx, ds...); err != nil {
		dr.log.Warn("demand failed", "demand", key, "err", err)
		return
	}
	dr.demand = &key
	if key != "" {
		dr.log.Info("demand sent", "demand", key)
	}
}

func (dr *driver) kill(taskID, agentID string) {
	ctx, cancel := dr.callCtx()
	defer cancel()
	if err := dr.d.Kill(ctx, taskID, agentID); err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		dr.log.Warn("kill failed", "task", taskID, "err", err)
		return
	}
	dr.killsSent[taskID] = time.Now()
}

// finish deletes a removed service's record and tears its framework down.
func (dr *driver) finish() {
	ctx, cancel := dr.callCtx()
	defer cancel()
	if err := dr.d.DeleteRecord(ctx, StateKey, dr.version); err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		dr.log.Warn("deleting the removed service's record failed", "err", err)
		return
	}
	dr.done = true
	for _, c := range dr.checks {
		c()
	}
	if err := dr.d.Teardown(ctx); err != nil {
		dr.log.Warn("tearing the removed service's framework down failed", "err", err)
	}
	dr.log.Info("service removed")
}

// syncChecks runs one readiness checker per RUNNING, not yet ready task
// with a readiness check, and stops the others. Called with mu held.
func (dr *driver) syncChecks() {
	want := map[string]bool{}
	for _, p := range dr.st.Pods {
		if p.TaskID == "" || p.TaskState != "RUNNING" || p.Ready || p.KillReason != "" || p.Config == nil || p.Config.Readiness == nil {
			continue
		}
		want[p.TaskID] = true
		if _, ok := dr.checks[p.TaskID]; ok {
			continue
		}
		r := p.Config.Readiness
		if r.HTTP == nil {
			// TODO: command readiness checks need the agent to run a
			// command beside the task; until it can, RUNNING is ready.
			dr.log.Warn("command readiness checks are not run yet: the pod counts as ready once RUNNING", "task", p.TaskID)
			next := dr.st.Clone()
			if next.MarkReady(p.TaskID) == nil {
				dr.store(next)
			}
			continue
		}
		addr, err := checkAddr(dr.st.Spec, p, r.HTTP.Port)
		if err != nil {
			dr.log.Warn("readiness check has no address", "task", p.TaskID, "err", err)
			continue
		}
		ctx, cancel := context.WithCancel(dr.h.ctx)
		dr.checks[p.TaskID] = cancel
		go dr.check(ctx, p.TaskID, "http://"+addr+r.HTTP.Path, r)
	}
	for id, cancel := range dr.checks {
		if !want[id] {
			cancel()
			delete(dr.checks, id)
		}
	}
}

func checkAddr(spec *service.Spec, p *service.Pod, port string) (string, error) {
	pt, ok := spec.Pod(p.Type)
	if !ok {
		return "", fmt.Errorf("no pod type %s", p.Type)
	}
	i := slices.Index(pt.Resources.Ports, port)
	if i < 0 || i >= len(p.Ports) || p.Host == "" {
		return "", fmt.Errorf("pod has no port %q", port)
	}
	return net.JoinHostPort(p.Host, strconv.FormatUint(p.Ports[i], 10)), nil
}

// check polls url every interval until it answers 2xx (MarkReady) or the
// deadline passes (MarkNotReady).
func (dr *driver) check(ctx context.Context, taskID, url string, r *service.Readiness) {
	interval := time.Duration(r.IntervalSeconds * float64(time.Second))
	timeout := time.Duration(r.TimeoutSeconds * float64(time.Second))
	deadline := time.Now().Add(time.Duration(r.DeadlineSeconds * float64(time.Second)))
	hc := &http.Client{Timeout: timeout}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok := probe(ctx, hc, url)
		if ok || time.Now().After(deadline) {
			dr.mu.Lock()
			if ctx.Err() == nil && !dr.done {
				next := dr.st.Clone()
				var err error
				if ok {
					err = next.MarkReady(taskID)
				} else {
					err = next.MarkNotReady(taskID, fmt.Sprintf("not ready within %gs (GET %s)", r.DeadlineSeconds, url))
				}
				if err == nil {
					dr.log.Info("readiness", "task", taskID, "ready", ok)
					dr.store(next)
				}
				delete(dr.checks, taskID)
				dr.after()
			}
			dr.mu.Unlock()
			return
		}
		t.Reset(interval)
	}
}

func probe(ctx context.Context, hc *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// command runs fn on a Clone of the State and stores the result; an
// error from fn changes nothing. It returns the stored version.
func (dr *driver) command(ctx context.Context, fn func(*service.State) error) (uint64, error) {
	select {
	case <-dr.loaded:
	case <-ctx.Done():
		return 0, connect.NewError(connect.CodeUnavailable, fmt.Errorf("service %s is still loading: %w", dr.name, ctx.Err()))
	}
	if dr.loadErr != nil {
		return 0, connect.NewError(connect.CodeUnavailable, dr.loadErr)
	}
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.done {
		return 0, connect.NewError(connect.CodeNotFound, fmt.Errorf("service %s was removed", dr.name))
	}
	next := dr.st.Clone()
	if err := fn(next); err != nil {
		return 0, err
	}
	if err := dr.store(next); err != nil {
		return 0, connect.NewError(connect.CodeUnavailable, err)
	}
	v := dr.version
	dr.after()
	return v, nil
}

// snapshot returns a Clone of the State (nil before it is loaded).
func (dr *driver) snapshot() *service.State {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.st == nil {
		return nil
	}
	return dr.st.Clone()
}
