package agent

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/agent/executor"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Timings of a graceful stop.
const (
	// goodbyeTimeout bounds the StopAgent call: a stop must not hang on
	// masters that are gone (the agent then takes the failed-agent path).
	goodbyeTimeout = 5 * time.Second
	// decommissionMargin is added to the longest kill grace of the tasks:
	// how long a decommissioning agent waits for its tasks to end and their
	// final updates to be delivered.
	decommissionMargin = 10 * time.Second
	decommissionPoll   = 20 * time.Millisecond
)

// Decommission makes the next graceful stop (Run's context ending) a
// decommission: the agent kills its tasks, waits for their final updates
// to be delivered, and tells the masters it is gone for good (its id may
// not register again). Config.Decommission sets it from the start.
func (a *Agent) Decommission() { a.decommission.Store(true) }

// watchStop turns the end of the caller's context into the agent's stop:
// a decommissioning agent first kills its tasks while its loops still run
// (so the KILLED updates are delivered), then the loops end. It returns
// when either happened; the loops' own end (a refusal) stops it too.
func (a *Agent) watchStop(ctx context.Context) {
	select {
	case <-a.ctx.Done():
		return
	case <-ctx.Done():
	}
	a.stopping.Store(true)
	if a.decommission.Load() && !a.killed.Load() {
		a.killAllTasks()
	}
	a.cancel()
}

// killAllTasks kills every task the executor runs and waits until they
// ended and the outbox is empty, or until the longest kill grace plus
// decommissionMargin has passed.
func (a *Agent) killAllTasks() {
	running := a.exec.Running()
	a.log.Info("decommissioning: killing tasks", "tasks", len(running))
	grace := executor.DefaultKillGrace
	for _, k := range running {
		if g := a.exec.KillGrace(k); g > grace {
			grace = g
		}
		a.mu.Lock()
		already := a.killing[k]
		a.killing[k] = true
		a.mu.Unlock()
		if !already {
			a.killExec(k, 0)
		}
	}
	deadline := time.NewTimer(grace + decommissionMargin)
	defer deadline.Stop()
	tick := time.NewTicker(decommissionPoll)
	defer tick.Stop()
	// A task leaves Running when its process ends, but its final update
	// reaches the outbox a moment later (consumeUpdates): wait until every
	// killed task's final update was queued (it leaves a.killing) and the
	// outbox is delivered, or the goodbye would overtake the KILLED
	// updates and the masters would mark the tasks LOST.
	for len(a.exec.Running()) > 0 || a.killingAny(running) || a.out.Len() > 0 {
		select {
		case <-a.ctx.Done():
			return
		case <-deadline.C:
			a.log.Warn("decommissioning: tasks or their final updates still pending; the masters end them",
				"running", len(a.exec.Running()), "pending_updates", a.out.Len())
			return
		case <-tick.C:
		}
	}
}

// killingAny reports whether a kill of one of keys still waits for the
// task's final update to be queued.
func (a *Agent) killingAny(keys []executor.TaskKey) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range keys {
		if a.killing[k] {
			return true
		}
	}
	return false
}

// goodbye tells the masters the agent stops: for a restart (they keep its
// tasks RUNNING and wait for it) or decommissioned. A goodbye that cannot
// be delivered is logged; the masters then treat the agent as failed.
func (a *Agent) goodbye() {
	if !a.registered.Load() && !a.registering.Load() {
		return // never sent a registration: the masters do not know us
	}
	decommission := a.decommission.Load()
	ctx, cancel := context.WithTimeout(context.Background(), goodbyeTimeout)
	defer cancel()
	c, err := a.master(ctx)
	if err == nil {
		_, err = c.Agent.StopAgent(ctx, connect.NewRequest(&agorav1.StopAgentRequest{AgentId: a.cfg.ID, Decommission: decommission}))
	}
	switch {
	case err == nil && decommission:
		a.log.Info("decommissioned: the masters know this agent is gone for good")
	case err == nil:
		a.log.Info("stopping for a restart: the masters keep this agent's tasks and wait for it to register again")
	case connect.CodeOf(err) == connect.CodeFailedPrecondition || connect.CodeOf(err) == connect.CodeNotFound:
		// Unreachable or gone already, or the registration in flight did
		// not commit: the masters have their own verdict.
		a.log.Info("the masters did not take the goodbye", "err", err)
	default:
		a.log.Warn("goodbye not delivered; the masters will treat this agent as failed", "decommission", decommission, "err", err)
	}
}

// --- task groups ---------------------------------------------------------------

// groupKey names a task group: group ids are unique within a framework.
type groupKey struct{ frameworkID, groupID string }

// noteGroups records the task groups of an assignment.
func (a *Agent) noteGroups(tasks []*agorav1.Task) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range tasks {
		if t.GetGroupId() == "" {
			continue
		}
		a.groups[executor.TaskKey{FrameworkID: t.GetFrameworkId(), TaskID: t.GetId()}] = groupKey{t.GetFrameworkId(), t.GetGroupId()}
	}
}

// groupEnded reacts to the end of a task: when a task of a group ended
// other than FINISHED (failed, killed, could not launch), the agent kills
// the other tasks of the group it runs (Mesos task-group semantics). The
// ended task is forgotten from the group record.
func (a *Agent) groupEnded(key executor.TaskKey, state agorav1.TaskState, reason string) {
	a.mu.Lock()
	g, ok := a.groups[key]
	delete(a.groups, key)
	var siblings []executor.TaskKey
	if ok && state != agorav1.TaskState_TASK_STATE_FINISHED {
		for k, kg := range a.groups {
			if kg == g && !a.killing[k] {
				siblings = append(siblings, k)
			}
		}
	}
	a.mu.Unlock()
	if len(siblings) == 0 {
		return
	}
	running := map[executor.TaskKey]bool{}
	for _, k := range a.exec.Running() {
		running[k] = true
	}
	for _, k := range siblings {
		if !running[k] {
			continue
		}
		a.mu.Lock()
		already := a.killing[k]
		a.killing[k] = true
		a.mu.Unlock()
		if already {
			continue
		}
		a.log.Info("killing task: another task of its group ended", "task", k.TaskID, "framework", k.FrameworkID,
			"group", g.groupID, "ended", key.TaskID, "state", state, "reason", reason)
		go a.killExec(k, 0)
	}
}

// launchGroup launches the tasks of one group together: all specs are
// built first (one that cannot be built fails the whole group, nothing
// starts), then every task starts; if one fails to start, groupEnded kills
// those already started and the rest are reported FAILED unlaunched.
func (a *Agent) launchGroup(tasks []*agorav1.Task, volumes map[string]*agorav1.Volume) {
	specs := make([]executor.TaskSpec, len(tasks))
	for i, t := range tasks {
		spec, err := a.taskSpec(t, volumes)
		if err != nil {
			a.failGroupUnlaunched(tasks, fmt.Sprintf("task %s of the group: %v", t.GetId(), err))
			return
		}
		specs[i] = spec
	}
	for i, t := range tasks {
		key := taskKey(t.GetFrameworkId(), t.GetId())
		if err := a.launched.Add(key); err != nil {
			a.log.Error("cannot checkpoint launch; not launching the rest of the group", "task", t.GetId(), "err", err)
			a.failGroupUnlaunched(tasks[i:], "agent could not checkpoint the launch")
			a.groupEnded(executor.TaskKey{FrameworkID: t.GetFrameworkId(), TaskID: t.GetId()}, agorav1.TaskState_TASK_STATE_FAILED, "launch not checkpointed")
			return
		}
		if err := a.exec.Launch(specs[i]); err != nil {
			a.log.Error("task launch failed; failing its group", "task", t.GetId(), "framework", t.GetFrameworkId(), "group", t.GetGroupId(), "err", err)
			a.queueStatus(a.agentStatus(t, agorav1.TaskState_TASK_STATE_FAILED, "launch failed", err.Error()))
			a.failGroupUnlaunched(tasks[i+1:], "another task of its group failed to launch: "+t.GetId())
			a.groupEnded(executor.TaskKey{FrameworkID: t.GetFrameworkId(), TaskID: t.GetId()}, agorav1.TaskState_TASK_STATE_FAILED, "launch failed")
			return
		}
		a.metrics.launched.Inc()
		a.log.Info("launched task", "task", t.GetId(), "framework", t.GetFrameworkId(), "name", t.GetName(), "group", t.GetGroupId())
	}
}

// failGroupUnlaunched reports tasks of a group FAILED without launching
// them, and records them as launched so they never start.
func (a *Agent) failGroupUnlaunched(tasks []*agorav1.Task, why string) {
	for _, t := range tasks {
		if err := a.launched.Add(taskKey(t.GetFrameworkId(), t.GetId())); err != nil {
			a.log.Error("cannot checkpoint failed group launch", "task", t.GetId(), "err", err)
		}
		a.queueStatus(a.agentStatus(t, agorav1.TaskState_TASK_STATE_FAILED, "task group launch failed", why))
		a.mu.Lock()
		delete(a.groups, executor.TaskKey{FrameworkID: t.GetFrameworkId(), TaskID: t.GetId()})
		a.mu.Unlock()
	}
}

func (a *Agent) queueStatus(st *agorav1.TaskStatus) {
	if err := a.out.Append(st); err != nil {
		a.log.Error("cannot queue status update", "task", st.GetTaskId(), "err", err)
	}
}
