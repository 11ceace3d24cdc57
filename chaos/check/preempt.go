package check

import (
	"strings"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// PreemptVictim is one victim of a preemption decision as the state held it
// right before the decision was applied.
type PreemptVictim struct {
	// Task is "framework/task".
	Task string
	// Found is false when the state had no such task.
	Found bool
	// Revocable is the task's revocable flag.
	Revocable bool
	// Role is the task's role and Priority that role's priority then.
	Role     string
	Priority int32
}

// PreemptDecision is one applied Preempt entry: the demanding framework and
// role, the role's priority in the state the entry was applied to (not the
// priority the leader stamped), and the victims.
type PreemptDecision struct {
	ID        string
	Framework string
	Role      string
	Priority  int32
	Victims   []PreemptVictim
}

// DecisionOf describes decision p as judged against before, the state the
// entry was applied to.
func DecisionOf(before *fsm.State, p *agorav1.Preemption) PreemptDecision {
	d := PreemptDecision{ID: p.GetId(), Framework: p.GetFrameworkId(), Role: p.GetRole(), Priority: before.RolePriority(p.GetRole())}
	for _, r := range p.GetVictims() {
		v := PreemptVictim{Task: r.GetFrameworkId() + "/" + r.GetTaskId()}
		if t, ok := before.Task(r.GetFrameworkId(), r.GetTaskId()); ok {
			v.Found, v.Revocable, v.Role, v.Priority = true, t.GetRevocable(), t.GetRole(), before.RolePriority(t.GetRole())
		}
		d.Victims = append(d.Victims, v)
	}
	return d
}

// beforeSnapshot names the decision of a victim that was already being
// killed for preemption in the snapshot replay started from: the decision
// itself is compacted away.
const beforeSnapshot = "(before the snapshot)"

// Preemptions is the preemption checker's ledger over one replayed log:
// every applied decision is judged when it is applied (Decided), and every
// PREEMPTED status is matched to one applied before it (Killed).
//
//   - a victim is a task the state holds, revocable, of a role whose
//     priority is lower than the demanding role's at that index; never a
//     non-revocable task nor one of an equal or higher priority;
//   - no task is named in two decisions;
//   - every task that gets a status with reason PREEMPTED, or whose
//     kill_reason is PREEMPTED, is a victim of a decision applied at or
//     before that index.
type Preemptions struct {
	// Decisions counts the decisions applied, VictimCount their victims
	// and Kills the tasks that got a KILLED update with reason PREEMPTED.
	Decisions, VictimCount, Kills int

	decidedBy map[string]string // victim -> decision id
	killed    map[string]bool
	// unexplained: tasks already reported for a PREEMPTED status with no
	// decision, so the KILLING and the KILLED make one violation.
	unexplained map[string]bool
}

// NewPreemptions starts a ledger from st, the state replay starts from
// (empty, or a restored snapshot): the victims of the preemptions in force
// and the tasks already being killed for preemption count as decided.
func NewPreemptions(st *fsm.State) *Preemptions {
	p := &Preemptions{decidedBy: map[string]string{}, killed: map[string]bool{}, unexplained: map[string]bool{}}
	for _, pr := range st.Preemptions() {
		for _, r := range pr.GetVictims() {
			p.decidedBy[r.GetFrameworkId()+"/"+r.GetTaskId()] = pr.GetId()
		}
	}
	for _, t := range st.Tasks() {
		k := t.GetFrameworkId() + "/" + t.GetId()
		if _, ok := p.decidedBy[k]; !ok && preemptedTask(t) {
			p.decidedBy[k] = beforeSnapshot
		}
		if t.GetState() == agorav1.TaskState_TASK_STATE_KILLED && t.GetStatus().GetReason() == fsm.KillReasonPreempted {
			p.killed[k] = true
		}
	}
	return p
}

func preemptedTask(t *agorav1.Task) bool {
	return t.GetKillReason() == fsm.KillReasonPreempted || t.GetStatus().GetReason() == fsm.KillReasonPreempted
}

// Decided judges decision d, applied at index.
func (p *Preemptions) Decided(index uint64, d PreemptDecision) []Violation {
	p.Decisions++
	p.VictimCount += len(d.Victims)
	var out []Violation
	for _, v := range d.Victims {
		switch {
		case !v.Found:
			out = append(out, violation("preemption", "index %d: decision %s names victim %s, which does not exist", index, d.ID, v.Task))
		case !v.Revocable:
			out = append(out, violation("preemption", "index %d: decision %s (role %s, priority %d) preempts non-revocable task %s (role %s)",
				index, d.ID, d.Role, d.Priority, v.Task, v.Role))
		case v.Priority >= d.Priority:
			out = append(out, violation("preemption", "index %d: decision %s (role %s, priority %d) preempts %s of role %s, priority %d: not a lower priority",
				index, d.ID, d.Role, d.Priority, v.Task, v.Role, v.Priority))
		}
		if prev, ok := p.decidedBy[v.Task]; ok {
			out = append(out, violation("preemption", "index %d: task %s named in decision %s after decision %s: preempted twice",
				index, v.Task, d.ID, prev))
			continue
		}
		p.decidedBy[v.Task] = d.ID
	}
	return out
}

// Killed judges one task status applied at index: a status with reason
// PREEMPTED, or any status of a task whose kill_reason is PREEMPTED (t, the
// task after the entry, nil when it is gone), needs a decision naming the
// task.
func (p *Preemptions) Killed(index uint64, st *agorav1.TaskStatus, t *agorav1.Task) []Violation {
	if st.GetReason() != fsm.KillReasonPreempted && t.GetKillReason() != fsm.KillReasonPreempted {
		return nil
	}
	k := st.GetFrameworkId() + "/" + st.GetTaskId()
	if st.GetState() == agorav1.TaskState_TASK_STATE_KILLED && st.GetReason() == fsm.KillReasonPreempted && !p.killed[k] {
		p.killed[k] = true
		p.Kills++
	}
	if _, ok := p.decidedBy[k]; ok {
		return nil
	}
	if p.unexplained[k] {
		return nil // reported at its first such status
	}
	p.unexplained[k] = true
	return []Violation{violation("preemption", "index %d: task %s got %s with reason %s, but no preemption decision names it",
		index, k, strings.TrimPrefix(st.GetState().String(), "TASK_STATE_"), fsm.KillReasonPreempted)}
}
