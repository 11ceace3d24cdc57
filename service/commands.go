package service

import (
	"fmt"
	"net"
	"slices"
	"strconv"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TaskStatus is a task status update as the plan needs it.
type TaskStatus struct {
	TaskID  string
	State   agorav1.TaskState
	Message string
}

// HandleStatus records a status update of one of the service's tasks.
// It returns an error wrapping ErrUnknownTask for a task the State does not
// know (an older task of a pod, or a task launched by an accept whose
// result was lost); the driver kills such a task if it is not terminal.
//
// A task that dies is relaunched in place by a later offer. A pod whose
// task dies before it was ever ready with an update's config fails the
// update: the plan halts (FAILED) until the next Update.
func (s *State) HandleStatus(u TaskStatus) error {
	name := stateName(u.State)
	p, ok := s.podByTask(u.TaskID)
	if !ok {
		for _, r := range s.Releases {
			if r.TaskID == u.TaskID {
				r.TaskState = name
				return nil
			}
		}
		return fmt.Errorf("%w: %s", ErrUnknownTask, u.TaskID)
	}
	defer s.normalize()
	p.TaskState = name
	if name != "UNKNOWN" {
		// The master knows the task, so the accept that launched it, and
		// the reservation and volume before it, were applied.
		p.Confirmed = true
	}
	if name != "RUNNING" {
		p.Ready = false
	} else if p.Config != nil && p.Config.Readiness == nil {
		s.markReady(p)
	}
	if !taskGone(name) {
		return nil
	}
	reason := p.KillReason
	if reason == "" {
		reason = fmt.Sprintf("task %s %s", u.TaskID, name)
		if u.Message != "" {
			reason += ": " + u.Message
		}
	}
	p.KillReason = ""
	if name == "UNKNOWN" && !p.Confirmed {
		// The accept never applied: place the pod afresh. A reservation
		// that did get made is adopted or released from its labels.
		p.Instance, p.AgentID, p.Host, p.Attributes, p.Ports, p.VolumeID, p.ReservationID = "", "", "", nil, nil, "", ""
		return nil
	}
	if !s.retired(p) && !p.Deployed && p.EverReady && s.Failed == nil {
		s.Failed = &Failure{Pod: s.podName(p), Reason: reason}
	}
	return nil
}

// MarkReady reports that the task passed its readiness check.
func (s *State) MarkReady(taskID string) error {
	p, ok := s.podByTask(taskID)
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownTask, taskID)
	}
	if p.TaskState != "RUNNING" {
		return fmt.Errorf("%w: task %s is %s, not RUNNING", ErrBadCommand, taskID, p.TaskState)
	}
	s.markReady(p)
	s.normalize()
	return nil
}

func (s *State) markReady(p *Pod) {
	p.Ready, p.Deployed, p.EverReady, p.KillReason = true, true, true, ""
}

// MarkNotReady reports that a task did not pass its readiness check within
// the deadline: it is killed (see Kills) and its death counts as a failure
// with reason.
func (s *State) MarkNotReady(taskID, reason string) error {
	p, ok := s.podByTask(taskID)
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownTask, taskID)
	}
	if p.live() {
		p.Ready = false
		p.KillReason = reason
	}
	return nil
}

// Kill is a task the driver should kill (KILL is idempotent; the driver
// may send it again after a restart).
type Kill struct {
	TaskID  string
	AgentID string
	Pod     string
	Reason  string
}

// Kills lists the tasks that should not be running: retired pods', the
// plan's current pod while it runs an old config, a launch in progress
// that is not the current step, tasks that failed their readiness
// deadline, and tasks on released placements.
func (s *State) Kills() []Kill {
	var out []Kill
	step := s.step()
	for _, p := range s.Pods {
		if !p.live() {
			continue
		}
		why := ""
		pt, _ := s.Spec.Pod(p.Type)
		switch {
		case s.Removing:
			why = "service removed"
		case s.retired(p):
			why = "scaled down"
		case p.KillReason != "":
			why = p.KillReason
		case p == step && !p.Config.equal(configOf(pt)):
			why = "rolling update"
		case p != step && !p.Deployed:
			// A second launch in progress (a pod scaled back up while
			// its kill was pending): one step at a time.
			why = "superseded by the plan's current step"
		default:
			continue
		}
		out = append(out, Kill{TaskID: p.TaskID, AgentID: p.AgentID, Pod: s.podName(p), Reason: why})
	}
	for _, r := range s.Releases {
		if r.TaskID != "" && !taskGone(r.TaskState) {
			out = append(out, Kill{TaskID: r.TaskID, AgentID: r.AgentID, Pod: r.Pod, Reason: "placement released"})
		}
	}
	return out
}

// WantsOffers reports whether the plan can use offers: a pod to place or
// relaunch, or a placement to release. The driver revives when it turns
// true and suppresses when it turns false.
func (s *State) WantsOffers() bool {
	if p := s.step(); p != nil && !p.live() {
		return true
	}
	for _, p := range s.Pods {
		if s.recovering(p) {
			return true
		}
	}
	for _, r := range s.Releases {
		if taskGone(r.TaskState) {
			return true
		}
	}
	return false
}

// Demand is what the plan waits to place: the resources of the pod of the
// current step when it needs a first placement (a new pod, or one being
// replaced), which no offer has fitted yet. A pod relaunched in place
// needs no demand: its reservation is offered to its role alone. The
// scheduler tells the masters (SchedulerService.Demand), so that a
// priority role's pod can take resources back from lower priorities.
func (s *State) Demand() (Resources, bool) {
	if s.Removing {
		return Resources{}, false
	}
	p := s.step()
	if p == nil || p.live() || p.placed() {
		return Resources{}, false
	}
	pt, ok := s.Spec.Pod(p.Type)
	if !ok {
		return Resources{}, false
	}
	return pt.Resources, true
}

// podType resolves a pod type name; "" names the only one.
func (s *State) podType(name string) (*PodSpec, error) {
	if name == "" {
		if len(s.Spec.Pods) != 1 {
			return nil, fmt.Errorf("%w: service %s has %d pod types; name one", ErrBadCommand, s.Spec.Name, len(s.Spec.Pods))
		}
		return &s.Spec.Pods[0], nil
	}
	pt, ok := s.Spec.Pod(name)
	if !ok {
		return nil, fmt.Errorf("%w: service %s has no pod type %q", ErrUnknownPod, s.Spec.Name, name)
	}
	return pt, nil
}

// Scale sets the count of pod type podType ("" for the service's only
// type). New pods are deployed one at a time, each waiting for readiness;
// running pods are untouched. Scaling down kills the pods with the highest
// indexes; their reservations and volumes stay (a later scale up relaunches
// them in place, with their data) unless purge, which releases them.
func (s *State) Scale(podType string, n int, purge bool) error {
	if s.Removing {
		return fmt.Errorf("%w: service %s is being removed", ErrBadCommand, s.Spec.Name)
	}
	pt, err := s.podType(podType)
	if err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("%w: count %d is negative", ErrBadCommand, n)
	}
	if n > MaxCount {
		return fmt.Errorf("%w: count %d exceeds %d", ErrBadCommand, n, MaxCount)
	}
	pt.Count = n
	for _, p := range s.Pods {
		if p.Type != pt.Name {
			continue
		}
		if p.Index >= n {
			p.Purge = p.Purge || purge
		} else {
			p.Purge = false
		}
	}
	s.normalize()
	return nil
}

// Update makes next the target spec: a rolling restart, one pod at a time
// in plan order, each waiting for readiness; a pod that fails before it is
// ready halts the plan (FAILED). To roll back, Update with the previous
// spec: pods still running it are not restarted. Name, role, and the
// resources, ports and volume of existing pod types cannot change (their
// reservations are fixed); counts may (as Scale, keeping reservations); a
// pod type may be added, and removed once it has no pods.
func (s *State) Update(next *Spec) error {
	if s.Removing {
		return fmt.Errorf("%w: service %s is being removed", ErrBadCommand, s.Spec.Name)
	}
	if err := next.Validate(); err != nil {
		return err
	}
	if next.Name != s.Spec.Name {
		return fmt.Errorf("%w: update renames service %s to %s", ErrBadCommand, s.Spec.Name, next.Name)
	}
	if next.Role != s.Spec.Role {
		return fmt.Errorf("%w: update changes role %s to %s; reservations are made for the role", ErrBadCommand, s.Spec.Role, next.Role)
	}
	for _, p := range s.Pods {
		old, _ := s.Spec.Pod(p.Type)
		np, ok := next.Pod(p.Type)
		if !ok {
			return fmt.Errorf("%w: update removes pod type %s, which has pods: scale it to 0 with purge first", ErrBadCommand, p.Type)
		}
		if old != nil && !sameFootprint(old, np) {
			return fmt.Errorf("%w: update changes the resources, ports or volume of pod type %s; they are fixed by its reservations", ErrBadCommand, p.Type)
		}
	}
	s.Spec = next.Clone()
	s.Failed = nil
	s.normalize()
	return nil
}

// Replace moves pod name (such as "kvservice-kv-1") off its agent: the pod
// is placed afresh on another agent, with a new reservation and an empty
// volume, and the old ones are released when an offer from the old agent
// carries them (or dropped with ForgetAgent once the agent is gone). The
// driver refuses it while the agent is active unless forced.
func (s *State) Replace(name string) error {
	p, ok := s.pod(name)
	if !ok || s.retired(p) {
		return fmt.Errorf("%w: service %s has no pod %s", ErrUnknownPod, s.Spec.Name, name)
	}
	if !p.placed() {
		return fmt.Errorf("%w: pod %s is not placed", ErrBadCommand, name)
	}
	s.replace(p)
	s.normalize()
	return nil
}

// replace gives p a new placement (see Replace).
func (s *State) replace(p *Pod) {
	name := s.podName(p)
	s.Releases = append(s.Releases, s.releaseOf(p))
	avoid := p.AgentID
	*p = Pod{Type: p.Type, Index: p.Index, Avoid: avoid}
	if s.Failed != nil && s.Failed.Pod == name {
		s.Failed = nil
	}
}

// Drain records that agentID is being drained (the master's inverse
// offer): every pod placed there moves off it as Replace moves a pod, to
// a new reservation and an empty volume on another agent, since a drained
// agent is gone for good as far as its volumes are concerned. Pods move
// one at a time and only while the plan has nothing else in progress: the
// old task is stopped first (never two tasks of one pod), the pod is placed
// afresh and must be ready before the next pod moves. Draining an agent
// twice changes nothing. It reports whether a pod of the service is
// placed there.
func (s *State) Drain(agentID string) bool {
	if agentID == "" {
		return false
	}
	there := slices.ContainsFunc(s.Pods, func(p *Pod) bool { return p.AgentID == agentID && p.placed() && !s.retired(p) })
	if !slices.Contains(s.Drains, agentID) {
		s.Drains = append(s.Drains, agentID)
		slices.Sort(s.Drains)
	}
	s.normalize()
	return there
}

// Undrain forgets an agent's drain: pods that already moved stay where
// they are; the others stay on it.
func (s *State) Undrain(agentID string) {
	s.Drains = slices.DeleteFunc(s.Drains, func(a string) bool { return a == agentID })
	s.normalize()
}

// moveOffDrained replaces the first pod (plan order) placed on a drained
// agent, when the plan has no step in progress and no old task of a moved
// pod is still running. Called by normalize.
func (s *State) moveOffDrained() {
	if len(s.Drains) == 0 || s.Removing || s.Failed != nil || s.step() != nil {
		return
	}
	for _, r := range s.Releases {
		if r.TaskID != "" && !taskGone(r.TaskState) {
			return // an earlier move's old task is still stopping
		}
	}
	for _, p := range s.Pods {
		if p.placed() && !s.retired(p) && slices.Contains(s.Drains, p.AgentID) {
			s.replace(p)
			return
		}
	}
}

// Remove retires every pod; with purge their reservations and volumes are
// released too. The driver deletes the record once Removed.
func (s *State) Remove(purge bool) {
	s.Removing, s.Purge = true, purge
	if purge {
		for _, p := range s.Pods {
			p.Purge = true
		}
	}
	s.normalize()
}

// Removed reports whether a removed service is finished: no task left
// and, with purge, no reservation or volume.
func (s *State) Removed() bool {
	if !s.Removing || len(s.Releases) > 0 {
		return false
	}
	for _, p := range s.Pods {
		if p.live() || s.Purge {
			return false
		}
	}
	return true
}

// ForgetAgent drops the releases on an agent that is gone for good (the
// master drops its reservations and volumes with it).
func (s *State) ForgetAgent(agentID string) {
	s.Drains = slices.DeleteFunc(s.Drains, func(a string) bool { return a == agentID })
	kept := s.Releases[:0]
	for _, r := range s.Releases {
		if r.AgentID != agentID {
			kept = append(kept, r)
		}
	}
	clear(s.Releases[len(kept):])
	s.Releases = kept
}

// Plan states.
const (
	PlanComplete   = "COMPLETE"
	PlanInProgress = "IN_PROGRESS"
	PlanFailed     = "FAILED"
)

// Status is the JSON of `agora service status NAME --json`.
type Status struct {
	Name string      `json:"name"`
	Role string      `json:"role"`
	Pods []PodStatus `json:"pods"`
	Plan PlanStatus  `json:"plan"`
	// Draining lists the drained agents the service moves its pods off.
	Draining []string `json:"draining,omitempty"`
}

// PodStatus is one pod in Status. State is the task's state ("RUNNING",
// ...) or "PENDING" before its first task.
type PodStatus struct {
	Name     string `json:"name"`
	Index    int    `json:"index"`
	State    string `json:"state"`
	AgentID  string `json:"agent_id"`
	TaskID   string `json:"task_id"`
	Address  string `json:"address"`
	VolumeID string `json:"volume_id"`
	Ready    bool   `json:"ready"`
}

// PlanStatus is the plan's state and what it does now.
type PlanStatus struct {
	State string `json:"state"`
	Step  string `json:"step"`
}

// Status reports the service's pods (those its spec counts; retired pods
// that keep a reservation are not listed) and its plan.
func (s *State) Status() Status {
	st := Status{Name: s.Spec.Name, Role: s.Spec.Role, Pods: []PodStatus{}, Plan: s.planStatus(), Draining: slices.Clone(s.Drains)}
	for _, p := range s.Pods {
		if s.retired(p) {
			continue
		}
		ps := PodStatus{Name: s.podName(p), Index: p.Index, State: p.TaskState, AgentID: p.AgentID, TaskID: p.TaskID, VolumeID: p.VolumeID, Ready: p.Ready}
		if ps.State == "" {
			ps.State = "PENDING"
		}
		if p.Host != "" {
			ps.Address = p.Host
			if len(p.Ports) > 0 {
				ps.Address = net.JoinHostPort(p.Host, strconv.FormatUint(p.Ports[0], 10))
			}
		}
		st.Pods = append(st.Pods, ps)
	}
	return st
}

func (s *State) planStatus() PlanStatus {
	if s.Failed != nil {
		return PlanStatus{State: PlanFailed, Step: fmt.Sprintf("update %s failed: %s", s.Failed.Pod, s.Failed.Reason)}
	}
	if p := s.step(); p != nil {
		pt, _ := s.Spec.Pod(p.Type)
		verb := "deploy"
		switch {
		case p.Config != nil && !p.Config.equal(configOf(pt)):
			verb = "update"
		case p.Avoid != "" && !p.Deployed:
			verb = "move" // replaced, or off a drained agent
		}
		phase := "waiting for an offer"
		switch {
		case p.live() && verb == "update":
			phase = "stopping the old task"
		case p.live():
			phase = "waiting for readiness"
		case p.placed():
			phase = "waiting for an offer from agent " + p.AgentID
		}
		return PlanStatus{State: PlanInProgress, Step: fmt.Sprintf("%s %s: %s", verb, s.podName(p), phase)}
	}
	for _, p := range s.Pods {
		if s.retired(p) && p.live() {
			return PlanStatus{State: PlanInProgress, Step: "stop " + s.podName(p)}
		}
	}
	for _, p := range s.Pods {
		if !s.retired(p) && !p.Ready {
			return PlanStatus{State: PlanInProgress, Step: "recover " + s.podName(p)}
		}
	}
	if s.Removing && !s.Removed() {
		return PlanStatus{State: PlanInProgress, Step: "release reservations and volumes"}
	}
	return PlanStatus{State: PlanComplete, Step: ""}
}
