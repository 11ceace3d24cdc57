package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Errors of the State commands and inputs.
var (
	ErrUnknownPod  = errors.New("service: unknown pod")
	ErrUnknownTask = errors.New("service: unknown task")
	ErrBadCommand  = errors.New("service: bad command")
)

// State is a service's whole record: its spec, each pod's placement and
// task, the reservations and volumes still to release, and the plan's
// outcome. It is the value the driver stores in Raft (MarshalBinary) and
// passes every input to. Methods that take input change the State in place;
// Clone it first to keep the old value (see the package doc).
type State struct {
	// Spec is the target specification.
	Spec *Spec `json:"spec"`
	// Incarnation makes task and volume ids unique across the lives of
	// services with the same name (see New).
	Incarnation string `json:"incarnation,omitempty"`
	// Seq numbers the ids this State hands out.
	Seq uint64 `json:"seq"`
	// Pods are the pod records, in plan order: pod types in spec order,
	// then index. Pods with an index at or above their type's count are
	// retired (scaled down; they keep their reservation and volume).
	Pods []*Pod `json:"pods,omitempty"`
	// Releases are reservations and volumes to UNRESERVE and DESTROY when
	// an offer from their agent carries them.
	Releases []*Release `json:"releases,omitempty"`
	// Failed is set when an update failed; the plan halts until the next
	// Update (a roll back is Update with the previous spec).
	Failed *Failure `json:"failed,omitempty"`
	// Removing is set by Remove: every pod is retired.
	Removing bool `json:"removing,omitempty"`
	// Purge (with Removing) releases every reservation and volume.
	Purge bool `json:"purge,omitempty"`
	// Drains are the agents being drained (sorted): the pods placed there
	// move off, one at a time, when the plan has nothing else in progress.
	Drains []string `json:"drains,omitempty"`
}

// Pod is one pod instance's record.
type Pod struct {
	Type  string `json:"type"`
	Index int    `json:"index"`

	// Placement: set when the pod is first reserved on an agent, and kept
	// (pinned) until Replace.
	//
	// Instance identifies the placement: it labels the reservation and is
	// the volume's id. Empty while the pod is not placed.
	Instance   string            `json:"instance,omitempty"`
	AgentID    string            `json:"agent_id,omitempty"`
	Host       string            `json:"host,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// Ports are the pod's ports in the order of its type's port names.
	Ports    []uint64 `json:"ports,omitempty"`
	VolumeID string   `json:"volume_id,omitempty"`
	// ReservationID is the master's id of the reservation, learned from
	// offers (the master picks it at RESERVE).
	ReservationID string `json:"reservation_id,omitempty"`
	// Confirmed is set once the master is known to hold the placement (a
	// status of the pod's task, or an offer carrying its reservation).
	Confirmed bool `json:"confirmed,omitempty"`
	// Avoid is an agent a replaced pod must not be placed on again.
	Avoid string `json:"avoid,omitempty"`

	// Task: the latest task of the pod.
	TaskID string `json:"task_id,omitempty"`
	// TaskState is the task's latest state name, such as "RUNNING".
	TaskState string `json:"task_state,omitempty"`
	// Config is what the task runs (templates unexpanded).
	Config *PodConfig `json:"config,omitempty"`
	// Ready: the task passed its readiness check and is still RUNNING.
	Ready bool `json:"ready,omitempty"`
	// Deployed: a task with Config has been ready; the pod's plan step is
	// done while Config is the target's, and later deaths are recoveries.
	Deployed bool `json:"deployed,omitempty"`
	// EverReady: some task of this placement has been ready, so a failure
	// before readiness is an update failure rather than a first deploy.
	EverReady bool `json:"ever_ready,omitempty"`
	// KillReason is set by MarkNotReady: the task is to be killed.
	KillReason string `json:"kill_reason,omitempty"`
	// Purge: the retired pod's reservation and volume are released once
	// its task is terminal.
	Purge bool `json:"purge,omitempty"`
}

// PodConfig is the part of a pod type a task runs with; an Update that
// changes it restarts the pod.
type PodConfig struct {
	Command          string            `json:"command"`
	Env              map[string]string `json:"env,omitempty"`
	Readiness        *Readiness        `json:"readiness,omitempty"`
	KillGraceSeconds float64           `json:"kill_grace_seconds,omitempty"`
}

func configOf(p *PodSpec) *PodConfig {
	c := &PodConfig{Command: p.Command, Env: maps.Clone(p.Env), KillGraceSeconds: p.KillGraceSeconds}
	if p.Readiness != nil {
		r := *p.Readiness
		if r.HTTP != nil {
			h := *r.HTTP
			r.HTTP = &h
		}
		c.Readiness = &r
	}
	return c
}

func (c *PodConfig) equal(o *PodConfig) bool {
	if c == nil || o == nil {
		return c == o
	}
	if c.Command != o.Command || c.KillGraceSeconds != o.KillGraceSeconds || !maps.Equal(c.Env, o.Env) {
		return false
	}
	a, b := c.Readiness, o.Readiness
	if a == nil || b == nil {
		return a == b
	}
	if (a.HTTP == nil) != (b.HTTP == nil) || (a.HTTP != nil && *a.HTTP != *b.HTTP) {
		return false
	}
	return a.Command == b.Command && a.IntervalSeconds == b.IntervalSeconds &&
		a.TimeoutSeconds == b.TimeoutSeconds && a.DeadlineSeconds == b.DeadlineSeconds
}

// Release is a reservation (and its volume) the service no longer wants.
type Release struct {
	// Pod is the name of the pod the placement was for.
	Pod           string `json:"pod"`
	AgentID       string `json:"agent_id"`
	Instance      string `json:"instance"`
	ReservationID string `json:"reservation_id,omitempty"`
	VolumeID      string `json:"volume_id,omitempty"`
	// VolumeMiB is the volume's size, returned to the reservation by DESTROY.
	VolumeMiB float64 `json:"volume_mib,omitempty"`
	// Resources are the reservation's resources in package resources' text form.
	Resources string `json:"resources"`
	// TaskID, TaskState: a task still on the reservation, killed first.
	TaskID    string `json:"task_id,omitempty"`
	TaskState string `json:"task_state,omitempty"`
}

// Failure says where an update stopped.
type Failure struct {
	Pod    string `json:"pod"`
	Reason string `json:"reason"`
}

// New returns the State of a service about to be deployed. incarnation
// must be unique to this service's life among services of the same name
// run by the same framework (the Raft index at which `agora service run`
// committed is a good one); it keeps task and volume ids of a re-run
// service from colliding with those of an earlier one.
func New(spec *Spec, incarnation string) *State {
	s := &State{Spec: spec.Clone(), Incarnation: incarnation}
	s.normalize()
	return s
}

// MarshalBinary encodes s as JSON.
func (s *State) MarshalBinary() ([]byte, error) { return json.Marshal(s) }

// UnmarshalBinary decodes what MarshalBinary wrote.
func (s *State) UnmarshalBinary(b []byte) error {
	var n State
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("service: decode state: %w", err)
	}
	if n.Spec == nil {
		return errors.New("service: decode state: no spec")
	}
	*s = n
	return nil
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	b, err := s.MarshalBinary()
	if err != nil {
		panic(fmt.Sprintf("service: clone: %v", err))
	}
	var c State
	if err := c.UnmarshalBinary(b); err != nil {
		panic(fmt.Sprintf("service: clone: %v", err))
	}
	return &c
}

// Name returns the pod's name, <service>-<type>-<index>.
func (s *State) podName(p *Pod) string { return PodName(s.Spec.Name, p.Type, p.Index) }

func (s *State) nextID(kind string, p *Pod) string {
	s.Seq++
	if s.Incarnation != "" {
		return fmt.Sprintf("%s.%s%s-%d", s.podName(p), kind, s.Incarnation, s.Seq)
	}
	return fmt.Sprintf("%s.%s%d", s.podName(p), kind, s.Seq)
}

// retired reports whether p is scaled away (or the service is removed).
func (s *State) retired(p *Pod) bool {
	if s.Removing {
		return true
	}
	pt, ok := s.Spec.Pod(p.Type)
	return !ok || p.Index >= pt.Count
}

func (p *Pod) placed() bool { return p.AgentID != "" }

func (p *Pod) live() bool { return p.TaskID != "" && !taskGone(p.TaskState) }

// taskGone reports whether a task in state name no longer runs and never
// will: the terminal states and UNKNOWN (the master has no such task).
// UNREACHABLE is not gone: the task may come back with its agent.
func taskGone(name string) bool {
	switch name {
	case "", "FINISHED", "FAILED", "KILLED", "ERROR", "LOST", "DROPPED", "GONE", "GONE_BY_OPERATOR", "UNKNOWN":
		return true
	}
	return false
}

func stateName(st agorav1.TaskState) string {
	n := st.String()
	const prefix = "TASK_STATE_"
	if len(n) > len(prefix) && n[:len(prefix)] == prefix {
		return n[len(prefix):]
	}
	return n
}

// normalize restores the State's structural rules after any change: one
// record per pod index below each count, retired purged pods moved to
// Releases once stopped, plan order.
func (s *State) normalize() {
	have := map[string]map[int]bool{}
	for _, p := range s.Pods {
		if have[p.Type] == nil {
			have[p.Type] = map[int]bool{}
		}
		have[p.Type][p.Index] = true
	}
	if !s.Removing {
		for _, pt := range s.Spec.Pods {
			for i := 0; i < pt.Count; i++ {
				if !have[pt.Name][i] {
					s.Pods = append(s.Pods, &Pod{Type: pt.Name, Index: i})
				}
			}
		}
	}
	kept := s.Pods[:0]
	for _, p := range s.Pods {
		if s.retired(p) && !p.live() {
			// Stopped by a scale down: scaling back up is a fresh
			// deploy step, not a recovery nor an update.
			p.Deployed, p.EverReady = false, false
			purge := p.Purge || (s.Removing && s.Purge)
			if !p.placed() {
				continue // nothing to keep
			}
			if purge {
				s.Releases = append(s.Releases, s.releaseOf(p))
				continue
			}
		}
		kept = append(kept, p)
	}
	clear(s.Pods[len(kept):])
	s.Pods = kept
	s.moveOffDrained()
	order := map[string]int{}
	for i, pt := range s.Spec.Pods {
		order[pt.Name] = i
	}
	slices.SortFunc(s.Pods, func(a, b *Pod) int {
		oa, oka := order[a.Type]
		ob, okb := order[b.Type]
		if !oka {
			oa = len(order)
		}
		if !okb {
			ob = len(order)
		}
		if oa != ob {
			return oa - ob
		}
		if a.Type != b.Type {
			if a.Type < b.Type {
				return -1
			}
			return 1
		}
		return a.Index - b.Index
	})
}

// releaseOf makes the Release of p's placement.
func (s *State) releaseOf(p *Pod) *Release {
	r := &Release{Pod: s.podName(p), AgentID: p.AgentID, Instance: p.Instance, ReservationID: p.ReservationID, VolumeID: p.VolumeID}
	if pt, ok := s.Spec.Pod(p.Type); ok {
		r.Resources = pt.reserved(p.Ports).String()
		if pt.Volume != nil && p.VolumeID != "" {
			r.VolumeMiB = pt.Volume.Size
		}
	}
	if p.live() {
		r.TaskID, r.TaskState = p.TaskID, p.TaskState
	}
	return r
}

func (s *State) pod(name string) (*Pod, bool) {
	for _, p := range s.Pods {
		if s.podName(p) == name {
			return p, true
		}
	}
	return nil, false
}

func (s *State) podByTask(taskID string) (*Pod, bool) {
	for _, p := range s.Pods {
		if p.TaskID == taskID {
			return p, true
		}
	}
	return nil, false
}
