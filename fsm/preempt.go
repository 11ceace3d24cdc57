package fsm

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// Demand and preemption (DESIGN section 11).
//
// A framework's demand is what it says it cannot place: shapes and counts
// per role, kept on the framework record. SetDemand replaces it; Suppress
// clears the suppressed roles' part; dropping a role or tearing the
// framework down drops it too.
//
// A Preemption is one leader decision: victims on one agent, all revocable
// tasks of roles of a lower priority than the demanding role, are asked to
// die (KILLING with a master status, reason PREEMPTED; their KILLED update
// then carries reason PREEMPTED too), and what the demand needs on that
// agent is earmarked for the demanding framework until window_seconds
// after the last victim ended (freed_at), or until the deadline. Expire
// removes preemptions that are over. A victim already being killed cannot
// be chosen again: a decision re-proposed after a leader failover is
// rejected instead of killing twice.

// KillReasonPreempted is the reason of a preempted task's KILLING and
// KILLED updates.
const KillReasonPreempted = "PREEMPTED"

// Limits of a demand.
const (
	maxDemandEntries = 64
	maxDemandCount   = 100000
)

// pPreemption is the table of preemptions in force: id -> *agorav1.Preemption.
const pPreemption = "pe\x00"

// Preemptions returns the preemptions in force sorted by id.
func (s *State) Preemptions() []*agorav1.Preemption {
	return list[*agorav1.Preemption](s, pPreemption)
}

func revocableCapable(f *agorav1.Framework) bool {
	return slices.Contains(f.GetInfo().GetCapabilities(), agorav1.Capability_CAPABILITY_REVOCABLE_RESOURCES)
}

// RolePriority returns the priority of a role (0 for a role that is not
// configured).
func (s *State) RolePriority(name string) int32 {
	r, _ := s.Role(name)
	return r.GetPriority()
}

func (x *txn) rolePriority(name string) int32 {
	r, _ := tget[*agorav1.Role](x, tableKey(pRole, name))
	return r.GetPriority()
}

// ValidateDemand checks a demand against the framework's roles: at most
// 64 entries, each for a role of the framework (PermissionDenied
// otherwise), with a count of 1 to 100000 and a shape of positive finite
// unreserved scalars (InvalidArgument otherwise). A role may appear in
// several entries (different shapes).
func ValidateDemand(f *agorav1.Framework, demand []*agorav1.Demand) *Rejection {
	if len(demand) > maxDemandEntries {
		return reject(CodeInvalidArgument, "demand has %d entries, at most %d allowed", len(demand), maxDemandEntries)
	}
	for i, d := range demand {
		if d == nil {
			return reject(CodeInvalidArgument, "demand %d is null", i)
		}
		if !validRole(d.GetRole()) {
			return reject(CodeInvalidArgument, "demand %d: invalid role %q", i, d.GetRole())
		}
		if !slices.Contains(f.GetInfo().GetRoles(), d.GetRole()) {
			return reject(CodePermissionDenied, "demand %d: role %s is not a role of framework %s", i, d.GetRole(), f.GetId())
		}
		if c := d.GetCount(); c == 0 || c > maxDemandCount {
			return reject(CodeInvalidArgument, "demand %d (role %s): count %d must be between 1 and %d", i, d.GetRole(), c, maxDemandCount)
		}
		if len(d.GetResources()) == 0 {
			return reject(CodeInvalidArgument, "demand %d (role %s) names no resources", i, d.GetRole())
		}
		for _, r := range d.GetResources() {
			v := r.GetScalar()
			switch {
			case len(r.GetRanges()) > 0 || len(r.GetSet()) > 0:
				return reject(CodeInvalidArgument, "demand %d (role %s): %s: only scalars may be demanded", i, d.GetRole(), r.GetName())
			case r.GetRole() != "" || r.GetReservation() != nil || r.GetVolume() != nil:
				return reject(CodeInvalidArgument, "demand %d (role %s): %s: demanded resources are unreserved", i, d.GetRole(), r.GetName())
			case math.IsNaN(v) || math.IsInf(v, 0) || v <= 0:
				return reject(CodeInvalidArgument, "demand %d (role %s): %s %g must be a positive finite number", i, d.GetRole(), r.GetName(), v)
			}
		}
		if _, err := resourcepb.FromProto(d.GetResources()); err != nil {
			return reject(CodeInvalidArgument, "demand %d (role %s): %v", i, d.GetRole(), err)
		}
	}
	return nil
}

// setDemand replaces a live framework's demand; the same demand again
// changes nothing.
func (x *txn) setDemand(c *agorav1.SetDemandCommand) *Rejection {
	f, rej := x.liveFramework(c.GetFrameworkId())
	if rej != nil {
		return rej
	}
	if rej := ValidateDemand(f, c.GetDemand()); rej != nil {
		return rej
	}
	if demandEqual(f.GetDemand(), c.GetDemand()) {
		return nil
	}
	n := clone(f)
	n.Demand = nil
	for _, d := range c.GetDemand() {
		n.Demand = append(n.Demand, clone(d))
	}
	x.putFramework(n)
	return nil
}

func demandEqual(a, b []*agorav1.Demand) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].GetRole() != b[i].GetRole() || a[i].GetCount() != b[i].GetCount() || resStrings(a[i].GetResources()) != resStrings(b[i].GetResources()) {
			return false
		}
	}
	return true
}

func resStrings(rs []*agorav1.Resource) string {
	p, err := resourcepb.FromProto(rs)
	if err != nil {
		return "!"
	}
	return p.Total().String()
}

// dropDemand removes the demand of roles (all when roles is nil) from f,
// a framework about to be stored.
func dropDemand(f *agorav1.Framework, keep func(role string) bool) {
	f.Demand = slices.DeleteFunc(f.Demand, func(d *agorav1.Demand) bool { return !keep(d.GetRole()) })
}

// preempt records a preemption decision (see the comment at the top).
// Every check is against current state, so a decision computed from a
// stale state, or proposed twice, is rejected and changes nothing.
func (x *txn) preempt(c *agorav1.PreemptCommand) *Rejection {
	p := c.GetPreemption()
	if p == nil {
		return reject(CodeInvalidArgument, "preemption is missing")
	}
	if rej := checkID("preemption", p.GetId()); rej != nil {
		return rej
	}
	if _, dup := tget[*agorav1.Preemption](x, tableKey(pPreemption, p.GetId())); dup {
		return reject(CodeAlreadyExists, "preemption %s exists", p.GetId())
	}
	if p.GetDecidedAt() == nil || p.GetDeadline() == nil {
		return reject(CodeInvalidArgument, "preemption %s: decided_at and deadline are required", p.GetId())
	}
	if w := p.GetWindowSeconds(); math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
		return reject(CodeInvalidArgument, "preemption %s: window %g must be a finite number >= 0", p.GetId(), w)
	}
	if p.GetFreedAt() != nil {
		return reject(CodeInvalidArgument, "preemption %s: freed_at is set by the state machine", p.GetId())
	}
	need, err := resourcepb.FromProto(p.GetResources())
	if err != nil || need.IsEmpty() || len(need.Roles()) != 1 || need.Roles()[0] != "" {
		return reject(CodeInvalidArgument, "preemption %s: resources must be unreserved scalars", p.GetId())
	}
	f, rej := x.liveFramework(p.GetFrameworkId())
	if rej != nil {
		return rej
	}
	if f.GetState() != agorav1.FrameworkState_FRAMEWORK_STATE_CONNECTED {
		return reject(CodeFailedPrecondition, "framework %s is not connected", f.GetId())
	}
	if !slices.ContainsFunc(f.GetDemand(), func(d *agorav1.Demand) bool { return d.GetRole() == p.GetRole() }) {
		return reject(CodeFailedPrecondition, "framework %s has no demand for role %s", f.GetId(), p.GetRole())
	}
	if prio := x.rolePriority(p.GetRole()); prio != p.GetPriority() {
		return reject(CodeFailedPrecondition, "role %s has priority %d, not %d", p.GetRole(), prio, p.GetPriority())
	}
	a, ok := x.agent(p.GetAgentId())
	if !ok {
		return reject(CodeNotFound, "agent %s not found", p.GetAgentId())
	}
	if a.GetState() != agorav1.AgentState_AGENT_STATE_ACTIVE {
		return reject(CodeFailedPrecondition, "agent %s is not active", a.GetId())
	}
	if len(p.GetVictims()) == 0 {
		return reject(CodeInvalidArgument, "preemption %s names no victims", p.GetId())
	}
	seen := map[string]bool{}
	victims := make([]*agorav1.Task, 0, len(p.GetVictims()))
	for _, v := range p.GetVictims() {
		k := v.GetFrameworkId() + "\x00" + v.GetTaskId()
		if seen[k] {
			return reject(CodeInvalidArgument, "victim %s/%s named twice", v.GetFrameworkId(), v.GetTaskId())
		}
		seen[k] = true
		t, ok := x.task(v.GetFrameworkId(), v.GetTaskId())
		switch {
		case !ok:
			return reject(CodeNotFound, "victim %s/%s not found", v.GetFrameworkId(), v.GetTaskId())
		case IsTerminal(t.GetState()) || t.GetState() == agorav1.TaskState_TASK_STATE_UNREACHABLE:
			return reject(CodeFailedPrecondition, "victim %s/%s is %s", t.GetFrameworkId(), t.GetId(), stateName(t.GetState()))
		case t.GetKillRequested():
			return reject(CodeFailedPrecondition, "victim %s/%s is being killed already", t.GetFrameworkId(), t.GetId())
		case !t.GetRevocable():
			return reject(CodeFailedPrecondition, "victim %s/%s is not revocable", t.GetFrameworkId(), t.GetId())
		case t.GetAgentId() != a.GetId():
			return reject(CodeInvalidArgument, "victim %s/%s runs on agent %s, not %s", t.GetFrameworkId(), t.GetId(), t.GetAgentId(), a.GetId())
		case x.rolePriority(t.GetRole()) >= p.GetPriority():
			return reject(CodeFailedPrecondition, "victim %s/%s has role %s of priority %d, not below %d", t.GetFrameworkId(), t.GetId(), t.GetRole(), x.rolePriority(t.GetRole()), p.GetPriority())
		}
		victims = append(victims, t)
	}
	x.uuids = c.GetStatusUuids()
	now := p.GetDecidedAt()
	for _, t := range victims {
		n := clone(t)
		n.KillRequested = true
		n.KillReason = KillReasonPreempted
		msg := "preempted for role " + p.GetRole() + " (priority " + strconv.Itoa(int(p.GetPriority())) + ") of framework " + p.GetFrameworkId()
		x.setStatus(n, x.masterStatus(n, agorav1.TaskState_TASK_STATE_KILLING, KillReasonPreempted, msg, now))
	}
	rec := clone(p)
	rec.Resources = need.ToProto()
	x.t.Insert(tableKey(pPreemption, rec.GetId()), rec)
	x.ids = append(x.ids, rec.GetId())
	return nil
}

// preemptionFreed sets freed_at on the preemptions whose victims have all
// ended, now that task t (a victim) ended.
func (x *txn) preemptionFreed(t *agorav1.Task, now *timestamppb.Timestamp) {
	if t.GetKillReason() != KillReasonPreempted {
		return
	}
	var hit []*agorav1.Preemption
	x.t.Root().WalkPrefix([]byte(pPreemption), func(_ []byte, v interface{}) bool {
		p := v.(*agorav1.Preemption)
		if p.GetFreedAt() == nil && slices.ContainsFunc(p.GetVictims(), func(r *agorav1.TaskRef) bool {
			return r.GetFrameworkId() == t.GetFrameworkId() && r.GetTaskId() == t.GetId()
		}) {
			hit = append(hit, p)
		}
		return false
	})
	for _, p := range hit {
		ended := true
		for _, r := range p.GetVictims() {
			if v, ok := x.task(r.GetFrameworkId(), r.GetTaskId()); ok && !IsTerminal(v.GetState()) {
				ended = false
				break
			}
		}
		if ended {
			n := clone(p)
			n.FreedAt = ts(now)
			x.t.Insert(tableKey(pPreemption, n.GetId()), n)
		}
	}
}

// PreemptionEnd is when a preemption stops holding its earmark: window
// seconds after its last victim ended, or its deadline, whichever is
// first (the deadline while a victim lives).
func PreemptionEnd(p *agorav1.Preemption) *timestamppb.Timestamp {
	end := p.GetDeadline()
	if p.GetFreedAt() != nil {
		if w := addSeconds(p.GetFreedAt(), p.GetWindowSeconds()); cmpTS(w, end) < 0 {
			end = w
		}
	}
	return end
}

// expirePreemptions removes the preemptions that are over at now.
func (x *txn) expirePreemptions(now *timestamppb.Timestamp) {
	for _, k := range x.keys(pPreemption) {
		p, _ := tget[*agorav1.Preemption](x, k)
		if cmpTS(PreemptionEnd(p), now) <= 0 {
			x.t.Delete(k)
		}
	}
}

// dropPreemptionsOf removes the preemptions made for framework fid.
func (x *txn) dropPreemptionsOf(fid string) {
	for _, k := range x.keys(pPreemption) {
		if p, _ := tget[*agorav1.Preemption](x, k); p.GetFrameworkId() == fid {
			x.t.Delete(k)
		}
	}
}

// preemptedKilled rewrites an agent's KILLED update of a task the master
// preempted: reason PREEMPTED, the agent's reason kept in the message.
func preemptedKilled(t *agorav1.Task, s *agorav1.TaskStatus) {
	if t.GetKillReason() == "" || s.GetState() != agorav1.TaskState_TASK_STATE_KILLED {
		return
	}
	msg := strings.TrimSpace(strings.Join([]string{s.GetReason(), s.GetMessage()}, ": "))
	s.Reason = t.GetKillReason()
	s.Message = strings.Trim(msg, ": ")
}
