package fsm

import agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"

// taskSums are the usage sums of the tasks one restore goroutine decoded:
// what usageBuilder.add would add for them, kept in small slices instead
// of maps of maps so that a task costs one map lookup, then merged into
// the usageBuilder (sums of integers, so the order does not matter).
type taskSums struct {
	agents map[string]*agentTaskSums
	fws    map[string]*fwTaskSums
	// last is the framework of the previous task (tasks come sorted by
	// framework).
	lastFw    string
	lastFwSum *fwTaskSums
}

type agentTaskSums struct {
	live bool // has a task that is not terminal
	used []scalarSum
}

type fwTaskSums struct {
	tasks int // non-terminal
	alloc []scalarSum
}

// scalarSum is a sum of milli-units of one scalar resource in one pool.
type scalarSum struct {
	role, name string
	milli      int64
}

func newTaskSums() *taskSums {
	return &taskSums{agents: map[string]*agentTaskSums{}, fws: map[string]*fwTaskSums{}}
}

// add counts t and reports true, or reports false and counts nothing if
// t has a resource that is not a scalar (ranges or a set), which
// usageBuilder.add counts instead.
func (s *taskSums) add(t *agorav1.Task) bool {
	rs := t.GetResources()
	for _, r := range rs {
		if r.GetVolume() == nil && (len(r.GetRanges()) > 0 || len(r.GetSet()) > 0) {
			return false
		}
	}
	aid := t.GetAgentId()
	a := s.agents[aid]
	if a == nil {
		a = &agentTaskSums{}
		s.agents[aid] = a
	}
	if IsTerminal(t.GetState()) {
		return true
	}
	a.live = true
	fid := t.GetFrameworkId()
	f := s.lastFwSum
	if f == nil || fid != s.lastFw {
		if f = s.fws[fid]; f == nil {
			f = &fwTaskSums{}
			s.fws[fid] = f
		}
		s.lastFw, s.lastFwSum = fid, f
	}
	f.tasks++
	role := t.GetRole()
	for _, r := range rs {
		if r.GetVolume() != nil {
			continue // a volume's disk (held by the volume)
		}
		m := milli(r.GetScalar())
		if m <= 0 {
			continue
		}
		a.used = addScalarSum(a.used, r.GetRole(), r.GetName(), m)
		f.alloc = addScalarSum(f.alloc, role, r.GetName(), m)
	}
	return true
}

func addScalarSum(sums []scalarSum, role, name string, m int64) []scalarSum {
	for i := range sums {
		if sums[i].name == name && sums[i].role == role {
			sums[i].milli += m
			return sums
		}
	}
	return append(sums, scalarSum{role: role, name: name, milli: m})
}

// merge adds the sums to b.
func (s *taskSums) merge(b *usageBuilder) {
	for id, a := range s.agents {
		b.withTasks[id] = true
		if !a.live {
			continue
		}
		used := b.ag(id).used
		for _, u := range a.used {
			used.addScalar(u.role, u.name, u.milli)
		}
	}
	for id, f := range s.fws {
		p := b.fwAcc[id]
		if p == nil {
			p = poolSum{}
			b.fwAcc[id] = p
		}
		for _, u := range f.alloc {
			p.addScalar(u.role, u.name, u.milli)
		}
		b.fwTasks[id] += f.tasks
	}
}
