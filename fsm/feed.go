package fsm

import (
	"bytes"
	"slices"
	"sync/atomic"

	"github.com/agora-sched/agora/fsm/internal/radix"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// The change feed names, for each new state, the agents whose assignment
// the apply that made it may have changed: what an agent's GetAssignments
// answer is read from (its record, its tasks and their index, its task
// epoch, its volumes and their index). A reader that keeps something per
// agent (the master's long polls) re-checks only those agents.
//
// The marks are structural: every write of an apply goes through writes,
// which marks the agent a key of those tables belongs to (from the key, or
// from the old and new values of a task or volume), whatever command or
// helper made the write. No object is compared. A mark may be spurious
// (an item of a batch that was rolled back, a write of an equal value);
// none is missed. A state made otherwise (a restore, a state built by a
// tool) names every agent.

// assignTables are the tables whose writes mark an agent, with how a
// key or value names it.
var assignTables = []struct {
	prefix string
	// agentInKey: the key's first part (after the prefix) is the agent id;
	// otherwise the old and new values (*agorav1.Task, *agorav1.Volume)
	// name it.
	agentInKey bool
}{
	{pAgent, true},
	{uTaskEpoch, true},
	{uAssignEpoch, true},
	{xTaskAgent, true},
	{xVolAgent, true},
	{pTask, false},
	{pVolume, false},
}

// writes is the radix transaction of one apply. Every write of the apply
// goes through its Insert and Delete, which record the agents touched in
// marks (nil: not recorded, as in a restore's scratch transaction).
type writes struct {
	*radix.Txn
	marks *agentMarks
}

// Insert stores v under k (see radix.Txn.Insert) and marks the agent the
// write touches.
func (w writes) Insert(k []byte, v interface{}) (interface{}, bool) {
	old, ok := w.Txn.Insert(k, v)
	w.marks.note(k, old, v)
	return old, ok
}

// Replace stores v under k when k is stored (see radix.Txn.Replace, which
// does not keep k) and marks the agent the write touches.
func (w writes) Replace(k []byte, v interface{}) (interface{}, bool) {
	old, ok := w.Txn.Replace(k, v)
	if ok {
		w.marks.note(k, old, v)
	}
	return old, ok
}

// Delete removes k (see radix.Txn.Delete) and marks the agent the write
// touches.
func (w writes) Delete(k []byte) (interface{}, bool) {
	old, ok := w.Txn.Delete(k)
	if ok {
		w.marks.note(k, old, nil)
	}
	return old, ok
}

// agentMarks is the set of agents an apply touched, and among them those
// whose assignment (assignmentChanged) changed.
type agentMarks struct {
	ids    map[string]struct{}
	assign map[string]struct{}
	last   string // the agent added last (in ids)
}

func (m *agentMarks) add(id string) {
	if id == m.last && m.ids != nil {
		return // the writes of an apply mostly touch one agent after another
	}
	if m.ids == nil {
		m.ids = map[string]struct{}{}
	}
	m.ids[id] = struct{}{}
	m.last = id
}

// addBytes adds an id given as bytes (no allocation when already marked).
func (m *agentMarks) addBytes(id []byte) {
	if string(id) == m.last && m.ids != nil {
		return
	}
	if _, ok := m.ids[string(id)]; !ok {
		m.add(string(id))
	}
}

// note marks the agent a write of k (replacing old with v) touches.
func (m *agentMarks) note(k []byte, old, v interface{}) {
	if m == nil {
		return
	}
	for _, t := range assignTables {
		if len(k) < len(t.prefix) || string(k[:len(t.prefix)]) != t.prefix {
			continue
		}
		if t.agentInKey {
			rest := k[len(t.prefix):]
			if i := bytes.IndexByte(rest, 0); i >= 0 {
				rest = rest[:i]
			}
			m.addBytes(rest)
			return
		}
		for _, x := range [2]interface{}{old, v} {
			switch x := x.(type) {
			case *agorav1.Task:
				m.add(x.GetAgentId())
			case *agorav1.Volume:
				m.add(x.GetAgentId())
			}
		}
		if t.prefix == pTask {
			ot, _ := old.(*agorav1.Task)
			nt, _ := v.(*agorav1.Task)
			if assignmentChanged(ot, nt) {
				for _, x := range [2]*agorav1.Task{ot, nt} {
					if x != nil {
						m.assignChanged(x.GetAgentId())
					}
				}
			}
		}
		return
	}
}

func (m *agentMarks) assignChanged(id string) {
	if m.assign == nil {
		m.assign = map[string]struct{}{}
	}
	m.assign[id] = struct{}{}
}

// assignmentChanged reports whether a task write (old nil: an insert; t
// nil: a delete) changes what the agent is asked to do: the task appears
// or goes, becomes terminal (GetAssignments lists live tasks only: writes
// of ended tasks change nothing), or any field of a live task changes but
// its state among the live states, its latest status and its
// acknowledgement, which only report what happened (the agent's
// own updates, the framework's acknowledgements). A kill changes
// kill_requested. Fields holding messages and lists are compared by
// identity: a write that replaces one with an equal copy counts as a
// change (stored protos are never modified in place).
func assignmentChanged(old, t *agorav1.Task) bool {
	oldLive := old != nil && !IsTerminal(old.GetState())
	live := t != nil && !IsTerminal(t.GetState())
	if !oldLive || !live {
		return oldLive || live // only live tasks are listed
	}
	return old.GetId() != t.GetId() || old.GetFrameworkId() != t.GetFrameworkId() || old.GetAgentId() != t.GetAgentId() ||
		old.GetId() != t.GetId() || old.GetFrameworkId() != t.GetFrameworkId() || old.GetAgentId() != t.GetAgentId() ||
		old.GetName() != t.GetName() || old.GetRole() != t.GetRole() || old.GetGroupId() != t.GetGroupId() ||
		old.GetKillRequested() != t.GetKillRequested() || old.GetKillGraceSeconds() != t.GetKillGraceSeconds() ||
		old.GetKillReason() != t.GetKillReason() || old.GetRevocable() != t.GetRevocable() ||
		old.GetCommand() != t.GetCommand() || old.GetCreatedAt() != t.GetCreatedAt() ||
		!sameSlice(old.GetResources(), t.GetResources()) || !sameSlice(old.GetVolumeIds(), t.GetVolumeIds()) ||
		len(old.ProtoReflect().GetUnknown()) > 0 || len(t.ProtoReflect().GetUnknown()) > 0
}

// sameSlice reports whether a and b are the same slice (not merely equal).
func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// assignEpoch marks one version of an agent's assignment (see
// State.AgentAssignmentVersion); derived, like taskEpoch.
type assignEpoch struct{ n uint64 }

// bumpAssignEpochs gives each agent whose assignment changed in this apply
// a new assignment epoch (in id order).
func (x *txn) bumpAssignEpochs() {
	if len(x.marks.assign) == 0 {
		return
	}
	ids := make([]string, 0, len(x.marks.assign))
	for id := range x.marks.assign {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		n := uint64(1)
		if e, ok := tget[*assignEpoch](x, tableKey(uAssignEpoch, id)); ok {
			n = e.n + 1
		}
		x.t.Insert(tableKey(uAssignEpoch, id), &assignEpoch{n: n})
	}
}

// AgentAssignmentVersion returns an opaque value that changes whenever
// what the agent is asked to do with its tasks changes (a task assigned,
// killed, ended or removed; see assignmentChanged), but not when a task's
// live state, latest status or acknowledgement alone changes. Two states
// giving the same value (compared with ==, while the caller holds it)
// give TasksByAgent lists that differ at most in those fields. It is nil
// for an agent whose assignment did not change since the state was
// restored.
func (s *State) AgentAssignmentVersion(agentID string) any {
	if v, ok := s.root.Get(tableKey(uAssignEpoch, agentID)); ok {
		return v
	}
	return nil
}

// entry returns the feed entry of the state at index (agents sorted).
func (m *agentMarks) entry(index uint64) *feedEntry {
	e := &feedEntry{index: index}
	if m != nil && len(m.ids) > 0 {
		e.agents = make([]string, 0, len(m.ids))
		for id := range m.ids {
			e.agents = append(e.agents, id)
		}
		slices.Sort(e.agents)
	}
	return e
}

// feedEntry is what one state changed; next is the entry of the state
// that replaced it (set before that state is published).
type feedEntry struct {
	index  uint64
	agents []string // sorted
	all    bool     // any agent may have changed (a restore)
	next   atomic.Pointer[feedEntry]
}

// FeedPos is a position in the change feed: just after one state. The
// zero FeedPos is before anything (TouchedSince from it cannot tell).
type FeedPos struct{ e *feedEntry }

// FeedPos returns the position just after s.
func (s *State) FeedPos() FeedPos { return FeedPos{e: s.feed} }

// TouchedSince calls fn for each agent whose assignment (record, tasks or
// volumes) may differ between the state at p and s, in no particular
// order and maybe more than once. It returns false when it cannot tell (p
// is the zero FeedPos or not an earlier position of s's FSM, or a restore
// came in between): then any agent may differ. Agents not named have the
// same agent record, TasksByAgent, AgentTasksVersion and VolumesByAgent
// in both states.
func (s *State) TouchedSince(p FeedPos, fn func(agentID string)) bool {
	if p.e == nil || s.feed == nil {
		return false
	}
	for e := p.e; e != s.feed; {
		e = e.next.Load()
		if e == nil || e.all {
			return false
		}
		for _, id := range e.agents {
			fn(id)
		}
	}
	return true
}

// TouchedAgents returns the agents the apply that made s may have changed
// (see TouchedSince), sorted; all is true when any agent may have.
func (s *State) TouchedAgents() (agents []string, all bool) {
	if s.feed == nil || s.feed.all {
		return nil, true
	}
	return slices.Clone(s.feed.agents), false
}
