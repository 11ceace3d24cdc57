package allocator

import (
	"slices"
	"strings"
	"time"
)

// Reason names why an allocation round passed a framework over on an agent
// (for one of its roles). The values are in the order in which the
// package documentation lists them, which is the order in which they are
// tried, and the order of a trace's counts.
type Reason uint8

// The reasons. Their String names are stable: `agora explain`, its JSON and
// the tests print them. The package documentation says when each is
// recorded.
const (
	// ReasonSuppressed: the framework suppressed the role (it wants no
	// offers for it).
	ReasonSuppressed Reason = iota + 1
	// ReasonAgentDraining: the agent is draining; the master offers nothing
	// of it (Snapshot.Excluded).
	ReasonAgentDraining
	// ReasonAgentUnreachable: the agent is unreachable; the master offers
	// nothing of it (Snapshot.Excluded).
	ReasonAgentUnreachable
	// ReasonDeclinedFilter: the framework declined the agent with a filter
	// that has not expired yet.
	ReasonDeclinedFilter
	// ReasonMaxUtilization: cluster utilization is at or above the role's
	// MaxUtilization.
	ReasonMaxUtilization
	// ReasonRoleLimit: the role's limit leaves less than the minimum, of the
	// cluster or of what is left on the agent.
	ReasonRoleLimit
	// ReasonQuotaHeadroom: what is left unreserved is held back for other
	// roles' unmet guarantees.
	ReasonQuotaHeadroom
	// ReasonNothingFree: nothing is left on the agent after the round: its
	// tasks, outstanding offers and this round's offers to others (a higher
	// priority role, a role or framework with a lower share) hold it all.
	ReasonNothingFree
	// ReasonReservedForOtherRole: what is left on the agent is reserved for
	// other roles, and its unreserved remainder is below the minimum.
	ReasonReservedForOtherRole
	// ReasonBelowMinAllocatable: something is left on the agent, but less
	// than Snapshot.MinAllocatable.
	ReasonBelowMinAllocatable
	// ReasonAgentRestarting: the agent stopped for a restart and has not
	// registered again; the master offers nothing of it (Snapshot.Excluded).
	ReasonAgentRestarting

	numReasons = iota + 1
)

var reasonNames = [numReasons]string{
	ReasonSuppressed:           "suppressed",
	ReasonAgentDraining:        "agent_draining",
	ReasonAgentUnreachable:     "agent_unreachable",
	ReasonDeclinedFilter:       "declined_filter",
	ReasonNothingFree:          "nothing_free",
	ReasonReservedForOtherRole: "reserved_for_other_role",
	ReasonBelowMinAllocatable:  "below_min_allocatable",
	ReasonMaxUtilization:       "max_utilization",
	ReasonRoleLimit:            "role_limit",
	ReasonQuotaHeadroom:        "quota_headroom",
	ReasonAgentRestarting:      "agent_restarting",
}

// String returns the reason's stable name, such as "declined_filter".
func (r Reason) String() string {
	if r == 0 || int(r) >= numReasons {
		return "unknown"
	}
	return reasonNames[r]
}

// Reasons returns every reason, in the order in which they are tried.
func Reasons() []Reason {
	out := make([]Reason, 0, numReasons-1)
	for r := Reason(1); int(r) < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

// ExcludedAgent is an agent the master offers nothing of this round, listed
// only so that a trace can name it.
type ExcludedAgent struct {
	ID string
	// Reason is ReasonAgentDraining, ReasonAgentRestarting or
	// ReasonAgentUnreachable; any other value counts as unreachable.
	Reason Reason
}

// Trace explains one allocation round: AllocateTraced fills it.
type Trace struct {
	// Frameworks has one entry per framework of the snapshot, in id order.
	Frameworks []FrameworkTrace
}

// FrameworkTrace explains why one framework got what it got. Every
// (role, agent) pair of the framework, excluded agents included, is either
// offered or counted under exactly one reason, so Offered plus the sum of
// the counts is the number of its distinct roles times the number of agents
// (Snapshot.Agents plus Snapshot.Excluded).
type FrameworkTrace struct {
	ID string
	// Roles are the framework's distinct roles, in its order.
	Roles []string
	// Offered is the number of offers the framework got this round.
	Offered int
	// Reasons are the non-zero counts, in Reason order.
	Reasons []ReasonCount
	// Earmarked is the number of offers made to the framework from
	// earmarks (Snapshot.Earmarks). They are not in Offered: the round
	// above is explained on the snapshot with the earmarked resources
	// held back, so the pairs they cover are counted there too.
	Earmarked int
}

// ReasonCount is how many (role, agent) pairs of a framework got no offer
// for one reason, with one of the agents as an example.
type ReasonCount struct {
	Reason Reason
	Count  int
	// ExampleAgent is the agent with the smallest id among those counted.
	ExampleAgent string
}

// Framework returns the entry for framework id.
func (t *Trace) Framework(id string) (FrameworkTrace, bool) {
	i, ok := slices.BinarySearchFunc(t.Frameworks, id, func(f FrameworkTrace, id string) int { return strings.Compare(f.ID, id) })
	if !ok {
		return FrameworkTrace{}, false
	}
	return t.Frameworks[i], true
}

// Count returns the count of reason r (0 when absent).
func (f FrameworkTrace) Count(r Reason) int {
	for _, rc := range f.Reasons {
		if rc.Reason == r {
			return rc.Count
		}
	}
	return 0
}

// reasonCounts are counts per reason and the example agent of each (the
// smallest id seen).
type reasonCounts struct {
	n       [numReasons]int
	example [numReasons]string
}

func (c *reasonCounts) see(r Reason, agentID string) { c.addN(r, 1, agentID) }

func (c *reasonCounts) addN(r Reason, n int, agentID string) {
	if n <= 0 {
		return
	}
	c.n[r] += n
	if agentID != "" && (c.example[r] == "" || agentID < c.example[r]) {
		c.example[r] = agentID
	}
}

// roleVerdicts are the verdicts of one role: n counts every agent, lists
// hold (in id order) the agents whose verdict depends on the role, or all
// agents when the role is capped.
type roleVerdicts struct {
	capped Reason // the role-wide reason, 0 when none
	n      [numReasons]int
	lists  [numReasons][]int32
}

func (rv *roleVerdicts) verdict(st *round, r *roleState, ai int32) Reason {
	if rv.capped != 0 {
		return rv.capped
	}
	return st.verdict(r, ai)
}

func addCounts(a, b [numReasons]int) [numReasons]int {
	for i := range a {
		a[i] += b[i]
	}
	return a
}

// roleCapped returns why role r can take no unreserved resources of any
// agent at the end of the round (0 when it still could): cluster
// utilization at its cap, its limit reached, or the cluster's free
// unreserved resources held for other roles' guarantees. A capped role's
// reason holds for every agent, including those that have nothing left:
// it would still stop the role if they had.
func (st *round) roleCapped(r *roleState) Reason {
	if st.atCap(r) {
		return ReasonMaxUtilization
	}
	v := st.scratch
	for d := range v {
		v[d] = st.limitHeadroom(r, d)
	}
	if !st.allocatable(v) {
		return ReasonRoleLimit
	}
	for d := range v {
		v[d] = min(v[d], st.avail[d])
	}
	if !st.allocatable(v) {
		return 0 // nothing allocatable is free anywhere: the agents tell
	}
	for d := range v {
		v[d] = min(v[d], st.capHeadroom(r, d))
	}
	if !st.allocatable(v) {
		return ReasonMaxUtilization // what is left would take the cluster past r's cap
	}
	for d := range v {
		v[d] = st.capacity(r, d, false)
	}
	if !st.allocatable(v) {
		return ReasonQuotaHeadroom
	}
	return 0
}

// explain fills tr from the round's final state (see the package
// documentation). The verdict of a (role, agent) pair depends only on the
// final state, so it is computed once per role, and only for the agents
// where it can depend on the role (something allocatable or reserved is
// left); each framework then corrects the role's counts for its own offers
// and filters. A round of A agents, R roles and F frameworks costs about
// O(A + R x agents with something left + F + offers + filters).
func (st *round) explain(s *Snapshot, now time.Time, tr *Trace) {
	byRank := make([]int32, len(st.agents))
	for ai, rk := range st.agentRank {
		byRank[rk] = int32(ai)
	}

	// Agents with nothing allocatable and no reservation left get the
	// same verdict for every role.
	var plain [numReasons][]int32
	var plainN [numReasons]int
	var special []int32
	for _, ai := range byRank {
		if st.resLeft(ai) || st.allocatable(st.agents[ai].free) {
			special = append(special, ai)
			continue
		}
		v := st.verdict(nil, ai)
		plainN[v]++
		plain[v] = append(plain[v], ai)
	}

	var excluded reasonCounts
	for _, e := range s.Excluded {
		r := e.Reason
		if r != ReasonAgentDraining && r != ReasonAgentRestarting {
			r = ReasonAgentUnreachable
		}
		excluded.see(r, e.ID)
	}
	firstID := ""
	if len(byRank) > 0 {
		firstID = st.agents[byRank[0]].id
	}
	if ex := minExcludedID(s.Excluded); ex != "" && (firstID == "" || ex < firstID) {
		firstID = ex
	}
	nAll := len(st.agents) + len(s.Excluded)

	verdicts := map[*roleState]*roleVerdicts{}
	roleOf := func(r *roleState) *roleVerdicts {
		if rv, ok := verdicts[r]; ok {
			return rv
		}
		rv := &roleVerdicts{capped: st.roleCapped(r)}
		if rv.capped != 0 {
			// Every agent gets the role's reason: no plain verdicts.
			rv.n[rv.capped] = len(byRank)
			rv.lists[rv.capped] = byRank
		} else {
			for _, ai := range special {
				v := st.verdict(r, ai)
				rv.n[v]++
				rv.lists[v] = append(rv.lists[v], ai)
			}
			rv.n = addCounts(rv.n, plainN)
		}
		verdicts[r] = rv
		return rv
	}

	offersOf := make([][]int32, len(st.fws))
	for i := range st.offers {
		p := &st.offers[i]
		offersOf[p.fw] = append(offersOf[p.fw], int32(i))
	}

	tr.Frameworks = make([]FrameworkTrace, 0, len(s.Frameworks))
	var skip []int32
	for fi := range s.Frameworks {
		f := &s.Frameworks[fi]
		ft := FrameworkTrace{ID: f.ID, Offered: len(offersOf[fi])}
		filtered := st.filteredAgents(int32(fi), f, now)
		var c reasonCounts
		for j, name := range f.Roles {
			if slices.Contains(f.Roles[:j], name) {
				continue
			}
			ft.Roles = append(ft.Roles, name)
			if f.Suppressed[name] {
				c.addN(ReasonSuppressed, nAll, firstID)
				continue
			}
			for r := range numReasons {
				c.addN(Reason(r), excluded.n[r], excluded.example[r])
			}
			role := st.roleOf[name]
			rv := roleOf(role)
			n := rv.n
			skip = skip[:0]
			for _, oi := range offersOf[fi] {
				if p := &st.offers[oi]; p.role == role {
					n[rv.verdict(st, role, p.agent)]--
					skip = append(skip, p.agent)
				}
			}
			for _, ai := range filtered {
				n[rv.verdict(st, role, ai)]--
				skip = append(skip, ai)
			}
			if len(filtered) > 0 {
				c.addN(ReasonDeclinedFilter, len(filtered), st.agents[filtered[0]].id)
			}
			slices.Sort(skip)
			for r := range numReasons {
				if n[r] <= 0 {
					continue
				}
				ex := int32(-1)
				if rv.capped == 0 {
					ex = st.firstNotIn(plain[r], skip)
				}
				if alt := st.firstNotIn(rv.lists[r], skip); ex < 0 || (alt >= 0 && st.agentRank[alt] < st.agentRank[ex]) {
					ex = alt
				}
				id := ""
				if ex >= 0 {
					id = st.agents[ex].id
				}
				c.addN(Reason(r), n[r], id)
			}
		}
		for r := range numReasons {
			if c.n[r] > 0 {
				ft.Reasons = append(ft.Reasons, ReasonCount{Reason: Reason(r), Count: c.n[r], ExampleAgent: c.example[r]})
			}
		}
		tr.Frameworks = append(tr.Frameworks, ft)
	}
	slices.SortFunc(tr.Frameworks, func(a, b FrameworkTrace) int { return strings.Compare(a.ID, b.ID) })
}

func minExcludedID(ex []ExcludedAgent) string {
	m := ""
	for _, e := range ex {
		if m == "" || e.ID < m {
			m = e.ID
		}
	}
	return m
}

// firstNotIn returns the first agent of list (in id order) that is not in
// skip (sorted), or -1.
func (st *round) firstNotIn(list, skip []int32) int32 {
	for _, ai := range list {
		if _, found := slices.BinarySearch(skip, ai); !found {
			return ai
		}
	}
	return -1
}

// filteredAgents returns the distinct agents that framework fi has an
// unexpired filter for, in id order.
func (st *round) filteredAgents(fi int32, f *Framework, now time.Time) []int32 {
	if !st.fws[fi].hasFilters {
		return nil
	}
	var out []int32
	for _, flt := range f.Filters {
		if !flt.Until.After(now) {
			continue
		}
		if ai, ok := st.agentIdx[flt.AgentID]; ok {
			out = append(out, ai)
		}
	}
	slices.SortFunc(out, func(a, b int32) int { return int(st.agentRank[a]) - int(st.agentRank[b]) })
	return slices.Compact(out)
}

// resLeft reports whether agent ai has a reservation left that this round
// did not offer.
func (st *round) resLeft(ai int32) bool {
	a := &st.agents[ai]
	for i := range a.reserved {
		if !st.reservationOffered(a, a.reserved[i].role) {
			return true
		}
	}
	return false
}

// reservationOffered reports whether role's reservation on a went into an
// offer this round (reservations are offered whole).
func (st *round) reservationOffered(a *agentState, role *roleState) bool {
	for _, as := range a.assigned {
		if as.role == role && st.offers[as.offer].res != nil {
			return true
		}
	}
	return false
}

// verdict is why role r (nil: any role, for agents with nothing
// allocatable and no reservation left) gets nothing more of agent ai at the
// end of the round, for a framework of r that neither suppressed r nor
// filtered ai, when r is not capped (roleCapped). For such a framework the
// round ends only when what r could take of ai is below the minimum
// (TestVerdictIsWhyTheRoundStopped), so if ai has allocatable resources
// left, r's limit or the headroom held for others trims them below it.
func (st *round) verdict(r *roleState, ai int32) Reason {
	a := &st.agents[ai]
	if r != nil && st.allocatable(a.free) {
		o := st.scratch
		for d, f := range a.free {
			o[d] = min(f, st.limitHeadroom(r, d))
		}
		if !st.allocatable(o) {
			return ReasonRoleLimit
		}
		for d := range o {
			o[d] = min(o[d], st.capHeadroom(r, d))
		}
		if !st.allocatable(o) {
			return ReasonMaxUtilization
		}
		return ReasonQuotaHeadroom
	}
	own := false
	for i := range a.reserved {
		rp := &a.reserved[i]
		if st.reservationOffered(a, rp.role) {
			continue
		}
		if rp.role != r {
			return ReasonReservedForOtherRole
		}
		own = true
	}
	if own || hasNonScalar(a.extra) || slices.ContainsFunc(a.free, func(x int64) bool { return x > 0 }) {
		return ReasonBelowMinAllocatable
	}
	return ReasonNothingFree
}
