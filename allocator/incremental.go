package allocator

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/resources"
)

// Incremental keeps a full round's per-agent and per-role state between
// rounds so that the common event, one agent's resources freed (a task
// finished, an offer declined), costs a heap fix per framework touched and
// a pass over one agent instead of a round over every agent.
//
// It is a cache, never a second rule: it mirrors a Snapshot (Snapshot
// returns it) that it updates as offers are made and resources freed, and
// every call returns exactly what Allocate would return for that snapshot,
// the same now and the same seed; the property test holds it to Allocate.
//
// Why one agent is enough: without guarantees, limits, utilization caps,
// reservations or earmarks (the "simple" rules), a full round leaves an
// agent's allocatable resources unoffered only when every framework of
// every role that could take them has a decline filter for that agent, or
// is suppressed. Freeing another agent's resources changes neither, so a
// full round after the release offers nothing elsewhere, and, whatever
// the seeded agent order, reaches the freed agent with the roles and
// frameworks in the order the cache holds. Under the other rules the
// headroom that freeing creates can change what other agents are
// offered, so FreeAndAllocate runs a full round and rebuilds the cache.
type Incremental struct {
	snap  Snapshot
	now   time.Time
	st    *round
	agent map[string]int32 // agent id -> index in snap.Agents
	fw    map[string]int32 // framework id -> index in snap.Frameworks
	// simple: no role guarantees, limits or utilization caps, no
	// reservations, no earmarks: the rules under which freeing one agent
	// cannot change what any other agent is offered.
	simple bool
	// Revocable marking, fixed for the snapshot's roles and frameworks.
	top     int32
	hasTop  bool
	prio    map[string]int32
	capable map[string]bool
	// FastRounds and FullRounds count the paths taken (for tests and the
	// benchmark).
	FastRounds, FullRounds int
}

// NewIncremental starts from s (which it copies: agents' and frameworks'
// allocations are updated in the copy) at time now. Frameworks, roles and
// filters are fixed for its life: when they change, start a new one.
func NewIncremental(s Snapshot, now time.Time) *Incremental {
	inc := &Incremental{snap: s, now: now}
	inc.snap.Agents = slices.Clone(s.Agents)
	inc.snap.Frameworks = slices.Clone(s.Frameworks)
	for i := range inc.snap.Frameworks {
		f := &inc.snap.Frameworks[i]
		alloc := make(map[string]resources.Resources, len(f.Allocated))
		for k, v := range f.Allocated {
			alloc[k] = v
		}
		f.Allocated = alloc
	}
	inc.agent = make(map[string]int32, len(s.Agents))
	for i, a := range inc.snap.Agents {
		inc.agent[a.ID] = int32(i)
	}
	inc.fw = make(map[string]int32, len(s.Frameworks))
	for i, f := range inc.snap.Frameworks {
		inc.fw[f.ID] = int32(i)
	}
	inc.simple = len(s.Earmarks) == 0
	for _, r := range s.Roles {
		if len(r.Guarantee.Names()) > 0 || len(r.Limit.Names()) > 0 || r.MaxUtilization > 0 {
			inc.simple = false
		}
	}
	for _, a := range s.Agents {
		if len(a.Reserved) > 0 {
			inc.simple = false
		}
	}
	inc.top, inc.hasTop = TopBand(s)
	inc.prio = make(map[string]int32, len(s.Roles))
	for _, r := range s.Roles {
		inc.prio[r.Name] = r.Priority
	}
	inc.capable = map[string]bool{}
	for _, f := range s.Frameworks {
		if f.Revocable {
			inc.capable[f.ID] = true
		}
	}
	return inc
}

// Snapshot is the snapshot the cache mirrors: the one Allocate would be
// given now. It shares storage with the cache; do not modify it.
func (inc *Incremental) Snapshot() Snapshot { return inc.snap }

// Round runs a full round (Allocate on Snapshot()), records its offers as
// made (the agents' resources move to the frameworks' allocations) and
// rebuilds the cache.
func (inc *Incremental) Round(seed uint64) []Offer {
	inc.FullRounds++
	offers := Allocate(inc.snap, inc.now, seed)
	for _, o := range offers {
		inc.record(o)
	}
	inc.rebuild()
	return offers
}

// rebuild builds the round state from the mirrored snapshot.
func (inc *Incremental) rebuild() {
	inc.st = nil
	if !inc.simple {
		return
	}
	st := newRound(inc.snap, inc.now)
	st.agentRank = make([]int32, len(st.agents)) // one agent per pass: ranks unused
	for i := range st.agents {
		st.agents[i].assigned = nil
	}
	inc.st = st
}

// record moves offer o's resources from its agent to its framework in the
// mirrored snapshot.
func (inc *Incremental) record(o Offer) {
	a := &inc.snap.Agents[inc.agent[o.AgentID]]
	if !o.Unreserved.IsEmpty() {
		a.Unreserved = mustSubtract(a.Unreserved, o.Unreserved)
	}
	if !o.Reserved.IsEmpty() {
		res := make(map[string]resources.Resources, len(a.Reserved))
		for k, v := range a.Reserved {
			res[k] = v
		}
		res[o.Role] = mustSubtract(res[o.Role], o.Reserved)
		a.Reserved = res
	}
	f := &inc.snap.Frameworks[inc.fw[o.FrameworkID]]
	f.Allocated[o.Role] = f.Allocated[o.Role].Add(o.Resources())
}

func mustSubtract(a, b resources.Resources) resources.Resources {
	r, err := a.Subtract(b)
	if err != nil {
		panic(fmt.Sprintf("allocator: incremental: offer exceeds what it was made of: %v", err))
	}
	return r
}

// FreeAndAllocate returns freed, held by framework frameworkID in role, to
// agent agentID's unreserved resources (a task ended or an offer was
// declined), then allocates as Allocate(Snapshot(), now, seed) would,
// recording the offers as made. On the one-agent path it touches only that
// agent and the frameworks it offers to: O(roles + log frameworks) instead
// of a round over every agent. An unknown agent or framework, or freed
// resources the framework does not hold, is an error and changes nothing.
func (inc *Incremental) FreeAndAllocate(agentID, frameworkID, role string, freed resources.Resources, seed uint64) ([]Offer, error) {
	ai, ok := inc.agent[agentID]
	if !ok {
		return nil, fmt.Errorf("allocator: incremental: unknown agent %q", agentID)
	}
	fi, ok := inc.fw[frameworkID]
	if !ok {
		return nil, fmt.Errorf("allocator: incremental: unknown framework %q", frameworkID)
	}
	f := &inc.snap.Frameworks[fi]
	// Only scalars count towards allocations (DRF shares); ranges such as
	// ports are per agent and merge in Allocated, so they are not taken out.
	left, err := f.Allocated[role].Subtract(resources.Resources{Scalars: freed.Scalars})
	if err != nil {
		return nil, fmt.Errorf("allocator: incremental: framework %s does not hold that in role %s: %w", frameworkID, role, err)
	}
	f.Allocated[role] = left
	a := &inc.snap.Agents[ai]
	a.Unreserved = a.Unreserved.Add(freed)
	if inc.st != nil {
		inc.free(ai, fi, role, freed)
	}
	if inc.st == nil {
		return inc.Round(seed), nil
	}
	inc.FastRounds++
	return inc.allocateAgent(ai), nil
}

// free applies a release to the cached round state.
func (inc *Incremental) free(ai, fi int32, role string, freed resources.Resources) {
	st := inc.st
	a := &st.agents[ai]
	v := st.toVecKnown(freed)
	if v == nil {
		// A scalar the round has no dimension for: rebuild from the snapshot.
		inc.rebuild()
		return
	}
	for d, x := range v {
		a.free[d] = satAdd(a.free[d], x)
		st.free[d] = satAdd(st.free[d], x)
		st.avail[d] = satAdd(st.avail[d], x)
	}
	a.extra = nonScalar(inc.snap.Agents[ai].Unreserved)
	r := st.roleOf[role]
	if r != nil {
		for d, x := range v {
			r.alloc[d] -= x
		}
		r.wshare = st.share(r.alloc) / r.weight
		for _, fe := range r.fws.items {
			if fe.fw == fi {
				for d, x := range v {
					fe.alloc[d] -= x
				}
				fe.share = st.share(fe.alloc)
				r.fws.fix(fe.idx)
				break
			}
		}
	}
}

// toVecKnown converts r's scalars to a vector of the round's dimensions;
// nil if r names a scalar the round does not know.
func (st *round) toVecKnown(r resources.Resources) vec {
	v := make(vec, len(st.names))
	for n, x := range r.Scalars {
		d, ok := st.dimOf[n]
		if !ok {
			return nil
		}
		if x > 0 {
			v[d] = x
		}
	}
	return v
}

// allocateAgent runs the fair pass over agent ai alone on the cached
// state and returns its offers as Allocate would, recording them.
func (inc *Incremental) allocateAgent(ai int32) []Offer {
	st := inc.st
	a := &st.agents[ai]
	a.assigned = a.assigned[:0]
	st.offers = st.offers[:0]
	D := len(st.names)
	copy(st.origFree[int(ai)*D:int(ai+1)*D], a.free)
	st.fairPass([]int32{ai}, false)
	out := make([]Offer, len(st.offers))
	for i := range st.offers {
		p := &st.offers[i]
		out[i] = Offer{FrameworkID: st.fws[p.fw].id, AgentID: a.id, Role: p.role.name,
			Unreserved: st.unreservedOf(p), Reserved: st.reservedOf(p)}
	}
	slices.SortFunc(out, func(x, y Offer) int {
		return cmp.Or(strings.Compare(x.FrameworkID, y.FrameworkID), strings.Compare(x.Role, y.Role))
	})
	for i := range out {
		o := &out[i]
		o.Revocable = inc.hasTop && inc.capable[o.FrameworkID] && inc.prio[o.Role] < inc.top && !o.Unreserved.IsEmpty()
		inc.record(*o)
	}
	return out
}
