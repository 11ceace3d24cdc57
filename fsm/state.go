package fsm

import (
	"bytes"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/agora-sched/agora/fsm/internal/radix"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// Key layout of the one radix tree that holds the whole state. Primary
// tables hold the protos; index tables hold nil values and exist for prefix
// walks; usage tables hold derived sums. Only primary tables (and the
// history tables of history.go) are written to
// snapshots; the rest is rebuilt on Restore. Ids never contain NUL (Apply
// rejects them), so NUL separates key parts.
const (
	pMaster      = "m\x00"  // id -> *agorav1.Master
	pRole        = "r\x00"  // name -> *agorav1.Role
	pAgent       = "a\x00"  // id -> *agorav1.Agent
	pFramework   = "f\x00"  // id -> *agorav1.Framework
	pReservation = "R\x00"  // id -> *agorav1.Reservation
	pVolume      = "v\x00"  // id -> *agorav1.Volume
	pOffer       = "o\x00"  // id -> *agorav1.Offer
	pTask        = "t\x00"  // framework \0 task -> *agorav1.Task
	pRecord      = "fr\x00" // framework \0 key -> *agorav1.FrameworkRecord
	xTaskAgent   = "ta\x00" // agent \0 framework \0 task
	xTaskUnacked = "tu\x00" // framework \0 task: latest status has an unacknowledged uuid
	xTaskID      = "ti\x00" // task \0 framework
	xOfferExpiry = "oe\x00" // 12-byte sortable expires_at \0 offer
	xOfferAgent  = "oa\x00" // agent \0 offer
	xOfferFw     = "of\x00" // framework \0 offer
	xResvAgent   = "Ra\x00" // agent \0 reservation
	xVolAgent    = "va\x00" // agent \0 volume
	uAgent       = "ua\x00" // agent -> *agentUsage
	uFramework   = "uf\x00" // framework -> *frameworkUsage
	uTaskEpoch   = "ue\x00" // agent -> *taskEpoch, replaced whenever a task on the agent changes
	uAssignEpoch = "uA\x00" // agent -> *assignEpoch, replaced whenever the agent's assignment changes (feed.go)
)

// taskEpoch marks one version of an agent's tasks: a new one replaces it
// whenever any task on the agent is written or deleted, so two states
// holding the same *taskEpoch hold the same tasks on that agent. It is
// derived (not written to snapshots; Restore makes one per agent with
// tasks). n counts the applies that wrote the agent's tasks (bumpTaskEpoch
// stores one per apply); it is never zero, so the pointer is never shared
// with another allocation.
type taskEpoch struct{ n uint64 }

// tableKey is the key of id in a table whose prefix ends in NUL.
func tableKey(prefix string, parts ...string) []byte {
	n := len(prefix)
	for _, p := range parts {
		n += len(p) + 1
	}
	return appendKey(make([]byte, 0, n), prefix, parts...)
}

// appendKey appends the table key of parts to b.
func appendKey(b []byte, prefix string, parts ...string) []byte {
	b = append(b, prefix...)
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// agentUsage is the incrementally maintained accounting of one agent. It is
// immutable once stored: writers replace it.
type agentUsage struct {
	total    resources.Resources
	reserved resourcepb.Pools // role -> sum of reservations
	used     resourcepb.Pools // pool -> non-terminal tasks + volumes
	offered  resourcepb.Pools // pool -> outstanding offers
}

// available returns pool -> what may be used or offered.
func (u *agentUsage) available() resourcepb.Pools {
	av := resourcepb.Pools{}
	un := u.total
	for _, role := range u.reserved.Roles() {
		un = resourcepb.SubtractClamped(un, u.reserved[role])
		av[role] = u.reserved[role]
	}
	if !un.IsEmpty() {
		av[""] = un
	}
	return av
}

// free returns pool -> available - used - offered (clamped at zero).
func (u *agentUsage) free() resourcepb.Pools {
	av := u.available()
	out := resourcepb.Pools{}
	for _, role := range av.Roles() {
		f := resourcepb.SubtractClamped(av[role], u.used[role])
		f = resourcepb.SubtractClamped(f, u.offered[role])
		if !f.IsEmpty() {
			out[role] = f
		}
	}
	return out
}

// frameworkUsage is allocation role -> resources of non-terminal tasks and
// outstanding offers of one framework, and the number of its non-terminal
// tasks (what the tasks-per-framework limit counts). Immutable once stored.
type frameworkUsage struct {
	byRole map[string]resources.Resources
	tasks  int
}

// State is an immutable, consistent view of the replicated state. It is safe
// for concurrent use; returned protos are shared and must not be modified.
type State struct {
	index   uint64
	root    *radix.Tree
	changed chan struct{}
	// feed is what the apply that made this state changed (feed.go); nil
	// in a state no FSM published.
	feed *feedEntry
}

func emptyState() *State {
	return &State{root: radix.New(), changed: make(chan struct{})}
}

// Index is the Raft index of the last applied entry.
func (s *State) Index() uint64 { return s.index }

// Changed returns a channel closed when a newer state replaces this one.
func (s *State) Changed() <-chan struct{} { return s.changed }

func list[T any](s *State, prefix string) []T {
	var out []T
	s.root.Root().WalkPrefix([]byte(prefix), func(_ []byte, v interface{}) bool {
		out = append(out, v.(T))
		return false
	})
	return out
}

func get[T any](s *State, k []byte) (T, bool) {
	v, ok := s.root.Get(k)
	if !ok {
		var zero T
		return zero, false
	}
	return v.(T), true
}

// indexed resolves the index entries under prefix (whose last key part is
// the primary id) through the primary table.
func indexed[T any](s *State, prefix string, primary func(k []byte) []byte) []T {
	var out []T
	s.root.Root().WalkPrefix([]byte(prefix), func(k []byte, _ interface{}) bool {
		if v, ok := s.root.Get(primary(k)); ok {
			out = append(out, v.(T))
		}
		return false
	})
	return out
}

func lastPart(k []byte) string {
	s := string(k)
	return s[strings.LastIndexByte(s, 0)+1:]
}

// Masters returns the recorded masters sorted by id.
func (s *State) Masters() []*agorav1.Master { return list[*agorav1.Master](s, pMaster) }

// Roles returns the configured roles sorted by name.
func (s *State) Roles() []*agorav1.Role { return list[*agorav1.Role](s, pRole) }

// Role returns a role by name.
func (s *State) Role(name string) (*agorav1.Role, bool) {
	return get[*agorav1.Role](s, tableKey(pRole, name))
}

// Agents returns all agents sorted by id.
func (s *State) Agents() []*agorav1.Agent { return list[*agorav1.Agent](s, pAgent) }

// EachAgent calls fn for every agent in id order, without listing them
// first (for passes over all agents that keep few of them).
func (s *State) EachAgent(fn func(*agorav1.Agent)) {
	s.root.Root().WalkPrefix([]byte(pAgent), func(_ []byte, v interface{}) bool {
		fn(v.(*agorav1.Agent))
		return false
	})
}

// Agent returns an agent by id.
func (s *State) Agent(id string) (*agorav1.Agent, bool) {
	return get[*agorav1.Agent](s, tableKey(pAgent, id))
}

// AgentUsage returns the accounting of an agent (zero Usage if unknown).
func (s *State) AgentUsage(id string) Usage {
	u, ok := get[*agentUsage](s, tableKey(uAgent, id))
	if !ok {
		return Usage{}
	}
	return Usage{
		Total:    u.total,
		Reserved: u.reserved.Clone(),
		Used:     u.used.Clone(),
		Offered:  u.offered.Clone(),
		Free:     u.free(),
	}
}

// EachAgentVersion calls fn for every agent in id order with two opaque
// values that change whenever the agent's accounting (usage) or any of its
// tasks changes: a caller that keeps them (holding them keeps them unique)
// may reuse what it derived from the agent while both compare equal; tasks
// is nil for an agent that never had a task. It walks the agents, their
// accounting and their task epochs side by side (one pass each, no
// lookups).
func (s *State) EachAgentVersion(fn func(a *agorav1.Agent, usage, tasks any)) {
	ui := s.root.Root().Iterator()
	ui.SeekPrefix([]byte(uAgent))
	ei := s.root.Root().Iterator()
	ei.SeekPrefix([]byte(uTaskEpoch))
	uk, uv, uok := ui.Next()
	ek, ev, eok := ei.Next()
	s.root.Root().WalkPrefix([]byte(pAgent), func(k []byte, v interface{}) bool {
		id := k[len(pAgent):]
		var usage, tasks any
		for uok && bytes.Compare(uk[len(uAgent):], id) < 0 {
			uk, uv, uok = ui.Next()
		}
		if uok && bytes.Equal(uk[len(uAgent):], id) {
			usage = uv
		}
		for eok && bytes.Compare(ek[len(uTaskEpoch):], id) < 0 {
			ek, ev, eok = ei.Next()
		}
		if eok && bytes.Equal(ek[len(uTaskEpoch):], id) {
			tasks = ev
		}
		fn(v.(*agorav1.Agent), usage, tasks)
		return false
	})
}

// AgentTasksVersion returns an opaque value that changes whenever any task
// on the agent is written or deleted (the tasks value of
// EachAgentVersion; nil for an agent that never had a task). Two states
// giving the same value (compared with ==, while the caller holds it) give
// the same TasksByAgent.
func (s *State) AgentTasksVersion(agentID string) any {
	if v, ok := s.root.Get(tableKey(uTaskEpoch, agentID)); ok {
		return v
	}
	return nil
}

// AgentFree returns what the agent has free in the unreserved pool and its
// total, without cloning its accounting.
func (s *State) AgentFree(id string) (free, total resources.Resources) {
	u, ok := get[*agentUsage](s, tableKey(uAgent, id))
	if !ok {
		return resources.Resources{}, resources.Resources{}
	}
	return u.free()[""], u.total
}

// Frameworks returns all frameworks (torn down ones included) sorted by id.
func (s *State) Frameworks() []*agorav1.Framework {
	return list[*agorav1.Framework](s, pFramework)
}

// Framework returns a framework by id.
func (s *State) Framework(id string) (*agorav1.Framework, bool) {
	return get[*agorav1.Framework](s, tableKey(pFramework, id))
}

// FrameworkAllocated returns allocation role -> scalar resources held by the
// framework's non-terminal tasks and outstanding offers, summed over agents
// (ranges and sets such as ports are per agent and not included).
func (s *State) FrameworkAllocated(id string) map[string]resources.Resources {
	out := map[string]resources.Resources{}
	if u, ok := get[*frameworkUsage](s, tableKey(uFramework, id)); ok {
		for role, r := range u.byRole {
			out[role] = r
		}
	}
	return out
}

// Offers returns all outstanding offers sorted by id.
func (s *State) Offers() []*agorav1.Offer { return list[*agorav1.Offer](s, pOffer) }

// Offer returns an outstanding offer by id.
func (s *State) Offer(id string) (*agorav1.Offer, bool) {
	return get[*agorav1.Offer](s, tableKey(pOffer, id))
}

// OffersByFramework returns a framework's outstanding offers sorted by id.
func (s *State) OffersByFramework(fid string) []*agorav1.Offer {
	return indexed[*agorav1.Offer](s, xOfferFw+fid+"\x00", func(k []byte) []byte {
		return tableKey(pOffer, lastPart(k))
	})
}

// OffersByAgent returns the outstanding offers on an agent sorted by id.
func (s *State) OffersByAgent(agentID string) []*agorav1.Offer {
	return indexed[*agorav1.Offer](s, xOfferAgent+agentID+"\x00", func(k []byte) []byte {
		return tableKey(pOffer, lastPart(k))
	})
}

// Tasks returns all tasks sorted by (framework, id).
func (s *State) Tasks() []*agorav1.Task { return list[*agorav1.Task](s, pTask) }

// Task returns a task by framework and id.
func (s *State) Task(frameworkID, taskID string) (*agorav1.Task, bool) {
	return get[*agorav1.Task](s, tableKey(pTask, frameworkID, taskID))
}

// TasksByAgent returns the tasks on an agent sorted by (framework, id).
func (s *State) TasksByAgent(agentID string) []*agorav1.Task {
	p := xTaskAgent + agentID + "\x00"
	return indexed[*agorav1.Task](s, p, func(k []byte) []byte {
		return append([]byte(pTask), k[len(p):]...)
	})
}

// TasksByFramework returns a framework's tasks sorted by id.
func (s *State) TasksByFramework(fid string) []*agorav1.Task {
	return list[*agorav1.Task](s, pTask+fid+"\x00")
}

// UnacknowledgedStatuses returns the latest statuses of the framework's
// tasks whose uuid is not acknowledged yet, sorted by task id.
func (s *State) UnacknowledgedStatuses(fid string) []*agorav1.TaskStatus {
	p := xTaskUnacked + fid + "\x00"
	tasks := indexed[*agorav1.Task](s, p, func(k []byte) []byte {
		return append([]byte(pTask), k[len(xTaskUnacked):]...)
	})
	out := make([]*agorav1.TaskStatus, 0, len(tasks))
	for _, t := range tasks {
		out = append(out, t.GetStatus())
	}
	return out
}

// Reservations returns all reservations sorted by id.
func (s *State) Reservations() []*agorav1.Reservation {
	return list[*agorav1.Reservation](s, pReservation)
}

// ReservationsByAgent returns the reservations on an agent sorted by id.
func (s *State) ReservationsByAgent(agentID string) []*agorav1.Reservation {
	return indexed[*agorav1.Reservation](s, xResvAgent+agentID+"\x00", func(k []byte) []byte {
		return tableKey(pReservation, lastPart(k))
	})
}

// Volumes returns all persistent volumes sorted by id.
func (s *State) Volumes() []*agorav1.Volume { return list[*agorav1.Volume](s, pVolume) }

// Volume returns a persistent volume by id.
func (s *State) Volume(id string) (*agorav1.Volume, bool) {
	return get[*agorav1.Volume](s, tableKey(pVolume, id))
}

// VolumesByAgent returns the volumes on an agent sorted by id.
func (s *State) VolumesByAgent(agentID string) []*agorav1.Volume {
	return indexed[*agorav1.Volume](s, xVolAgent+agentID+"\x00", func(k []byte) []byte {
		return tableKey(pVolume, lastPart(k))
	})
}

// DryRun applies a command to a throwaway transaction over s and returns the
// rejection Apply would give against this state (nil when it would apply).
// The RPC edge calls it on the leader's state so that a command that is
// invalid now never reaches the Raft log; Apply re-checks on every replica.
// The command message is not modified.
func (s *State) DryRun(t CommandType, m proto.Message) *Rejection {
	_, rej := s.Judge(t, m)
	return rej
}

// Judge is DryRun that also says whether the command would change the
// state at all: an accepted command that changes nothing (a resent status
// update, an acknowledgement of a superseded update, a kill of a task that
// ended) need not be logged.
func (s *State) Judge(t CommandType, m proto.Message) (changed bool, rej *Rejection) {
	x := newTxn(s, s.index+1)
	x.judging = true
	if c, ok := m.(*agorav1.AcknowledgeCommand); ok && t == CmdAcknowledge {
		_, changed, rej := x.ackVerdict(c) // no writes needed to judge it
		return changed, rej
	}
	if !readOnlyApply(t) {
		m = proto.Clone(m) // its Apply may modify it
	}
	if rej := x.apply(t, m); rej != nil {
		return false, rej
	}
	return x.judgedChange || x.t.Root() != s.root.Root() || len(x.events) > 0, nil
}
