package service

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// harness drives a State against a cluster the way the real driver does:
// clone, decide, accept, keep. fail is t.Fatalf or rapid's.
type harness struct {
	st   *State
	c    *cluster
	fail func(format string, args ...any)
	// bad makes tasks of pods whose command contains it fail at start.
	bad string
}

func newHarness(t testing.TB, spec string, agents, racks int) *harness {
	t.Helper()
	sp, err := Parse([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	return &harness{st: New(sp, "7"), c: newCluster(sp.Role, agents, racks), fail: t.Fatalf}
}

// offer makes one offer from agent id and applies the decision.
func (h *harness) offer(id string) Decision {
	o := h.c.offer(id)
	next := h.st.Clone()
	d := next.HandleOffer(o)
	if d.Accept() {
		if err := h.c.apply(id, d.Operations); err != nil {
			h.fail("accept of offer %s on %s failed: %v\nreasons: %v", o.ID, id, err, d.Reasons)
			return d
		}
	}
	// A plan step (a launch of a pod not yet deployed with its config)
	// starts only when no other pod's step is in progress.
	for _, name := range d.Launched {
		p, _ := next.pod(name)
		if p == nil || p.Deployed {
			continue // a recovery
		}
		for _, q := range h.st.Pods {
			if qn := h.st.podName(q); qn != name && !h.st.retired(q) && q.live() && !q.Deployed {
				h.fail("INVARIANT: %s launched while %s is still in progress", name, qn)
			}
		}
	}
	h.st = next
	h.check()
	return d
}

// status sends a status update to the State, as the agent would.
func (h *harness) status(taskID string, st agorav1.TaskState) {
	t := h.c.tasks[taskID]
	t.state = st
	if err := h.st.HandleStatus(TaskStatus{TaskID: taskID, State: st, Message: "test"}); err != nil && !errors.Is(err, ErrUnknownTask) {
		h.fail("status %s %v: %v", taskID, st, err)
	}
	h.check()
}

// kills carries out st.Kills().
func (h *harness) kills() int {
	ks := h.st.Kills()
	for _, k := range ks {
		t := h.c.tasks[k.TaskID]
		if t == nil {
			h.fail("kill of unknown task %s", k.TaskID)
			return 0
		}
		if t.live() {
			h.status(k.TaskID, agorav1.TaskState_TASK_STATE_KILLED)
		}
	}
	return len(ks)
}

// settle runs offers, task starts, readiness and kills until nothing
// changes; tasks whose pod's command contains h.bad fail on start.
func (h *harness) settle() {
	for round := 0; round < 200; round++ {
		changed := h.kills() > 0
		for _, tid := range h.c.liveTasks() {
			t := h.c.tasks[tid]
			p, ok := h.st.podByTask(tid)
			switch {
			case t.state == agorav1.TaskState_TASK_STATE_STAGING:
				if ok && h.bad != "" && p.Config != nil && strings.Contains(p.Config.Command, h.bad) {
					h.status(tid, agorav1.TaskState_TASK_STATE_FAILED)
				} else {
					h.status(tid, agorav1.TaskState_TASK_STATE_RUNNING)
				}
				changed = true
			case t.state == agorav1.TaskState_TASK_STATE_RUNNING && ok && !p.Ready:
				if err := h.st.MarkReady(tid); err != nil {
					h.fail("ready %s: %v", tid, err)
				}
				h.check()
				changed = true
			}
		}
		for _, a := range h.c.agents {
			if !a.gone && !a.drained && h.offer(a.id).Accept() {
				changed = true
			}
		}
		if !changed {
			return
		}
	}
	h.fail("no fixed point after 200 rounds; plan %+v", h.st.Status().Plan)
}

// check asserts the invariants that hold after every step.
func (h *harness) check() {
	st := h.st
	// At most one pod is in a plan step (launched, not yet deployed, and
	// not being killed).
	killing := map[string]bool{}
	for _, k := range st.Kills() {
		killing[k.TaskID] = true
	}
	var inStep []string
	for _, p := range st.Pods {
		if !st.retired(p) && p.live() && !p.Deployed && !killing[p.TaskID] {
			inStep = append(inStep, st.podName(p))
		}
	}
	if len(inStep) > 1 {
		h.fail("INVARIANT: more than one pod in progress: %v", inStep)
	}
	// one_per: no two placed pods of a type share the constrained value,
	// and no two live tasks of a type share an agent under one_per agent.
	for _, pt := range st.Spec.Pods {
		by := pt.Placement.OnePer
		if by == "" {
			continue
		}
		seen := map[string]string{}
		for _, p := range st.Pods {
			if p.Type != pt.Name || !p.placed() {
				continue
			}
			v := p.AgentID
			if by != AgentPlacement {
				v = p.Attributes[by]
			}
			if other, dup := seen[v]; dup {
				h.fail("INVARIANT: %s and %s both on %s %s", other, st.podName(p), by, v)
			}
			seen[v] = st.podName(p)
		}
		if by == AgentPlacement {
			on := map[string]string{}
			for _, tid := range h.c.liveTasks() {
				t := h.c.tasks[tid]
				if !strings.HasPrefix(t.pod, st.Spec.Name+"-"+pt.Name+"-") {
					continue
				}
				if other, dup := on[t.agent]; dup {
					h.fail("INVARIANT: tasks %s and %s of type %s both run on %s", other, tid, pt.Name, t.agent)
				}
				on[t.agent] = tid
			}
		}
	}
	// A volume is never held by two pods, nor used by two live tasks.
	vols := map[string]string{}
	for _, p := range st.Pods {
		if p.VolumeID == "" {
			continue
		}
		if other, dup := vols[p.VolumeID]; dup {
			h.fail("INVARIANT: volume %s held by %s and %s", p.VolumeID, other, st.podName(p))
		}
		vols[p.VolumeID] = st.podName(p)
	}
	used := map[string]string{}
	for _, tid := range h.c.liveTasks() {
		for _, v := range h.c.tasks[tid].vols {
			if other, dup := used[v]; dup {
				h.fail("INVARIANT: volume %s used by running tasks %s and %s", v, other, tid)
			}
			used[v] = tid
		}
	}
	// A pod that left the record (purged) is a new pod when it comes back.
	for name := range h.c.home {
		if _, ok := st.pod(name); !ok {
			delete(h.c.home, name)
		}
	}
	// The record round-trips.
	b, err := st.MarshalBinary()
	if err != nil {
		h.fail("marshal: %v", err)
	}
	var back State
	if err := back.UnmarshalBinary(b); err != nil {
		h.fail("unmarshal: %v", err)
	}
	if b2, _ := back.MarshalBinary(); string(b2) != string(b) {
		h.fail("record does not round-trip:\n%s\n%s", b, b2)
	}
}

// task returns the task id of pod name, failing if it has none.
func (h *harness) task(name string) string {
	p, ok := h.st.pod(name)
	if !ok || p.TaskID == "" {
		h.fail("pod %s has no task", name)
		return ""
	}
	return p.TaskID
}

func (h *harness) podOf(name string) *Pod {
	p, ok := h.st.pod(name)
	if !ok {
		h.fail("no pod %s", name)
	}
	return p
}

func (h *harness) plan() string {
	ps := h.st.Status().Plan
	return fmt.Sprintf("%s %s", ps.State, ps.Step)
}
