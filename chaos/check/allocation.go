package check

import (
	"sort"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/resources"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// Claim is one consumer of an agent's resources: a non-terminal task, a
// persistent volume or an outstanding offer.
type Claim struct {
	// Owner names the consumer, e.g. "task fw1/t3", "offer o7", "volume v2".
	Owner string
	// Pool is the reservation role the claim draws from ("" = unreserved).
	Pool string
	// Res is what it takes.
	Res resources.Resources
}

// AgentView is one agent's resources as the allocation checker sees them,
// rebuilt from the state's objects rather than from the FSM's counters.
type AgentView struct {
	ID string
	// Total is the agent's capacity.
	Total resources.Resources
	// Reserved is role -> resources reserved for it (dynamic reservations).
	Reserved map[string]resources.Resources
	// Claims are the tasks, volumes and offers on the agent.
	Claims []Claim
}

// ViewOf rebuilds every agent's view from st: tasks, volumes, offers and
// reservations. Agents that are GONE keep their objects until the FSM removes
// them, so they are checked too.
func ViewOf(st *fsm.State) []AgentView {
	byAgent := map[string]*AgentView{}
	var out []*AgentView
	for _, a := range st.Agents() {
		v := &AgentView{ID: a.GetId(), Reserved: map[string]resources.Resources{}}
		if p, err := resourcepb.FromProto(a.GetResources()); err == nil {
			v.Total = p.Total()
		}
		byAgent[a.GetId()] = v
		out = append(out, v)
	}
	get := func(id string) *AgentView {
		v, ok := byAgent[id]
		if !ok { // an object on an unknown agent: checked against zero capacity
			v = &AgentView{ID: id, Reserved: map[string]resources.Resources{}}
			byAgent[id] = v
			out = append(out, v)
		}
		return v
	}
	for _, r := range st.Reservations() {
		if p, err := resourcepb.FromProto(r.GetResources()); err == nil {
			v := get(r.GetAgentId())
			v.Reserved[r.GetRole()] = v.Reserved[r.GetRole()].Add(p.Total())
		}
	}
	addClaims := func(agent, owner string, p resourcepb.Pools) {
		v := get(agent)
		for _, role := range p.Roles() {
			v.Claims = append(v.Claims, Claim{Owner: owner, Pool: role, Res: p[role]})
		}
	}
	for _, t := range st.Tasks() {
		if fsm.IsTerminal(t.GetState()) {
			continue
		}
		if p, err := resourcepb.FromProto(t.GetResources()); err == nil {
			addClaims(t.GetAgentId(), "task "+t.GetFrameworkId()+"/"+t.GetId(), p)
		}
	}
	for _, vol := range st.Volumes() {
		addClaims(vol.GetAgentId(), "volume "+vol.GetId(), resourcepb.Pools{vol.GetRole(): resources.Scalar("disk", vol.GetSizeMib())})
	}
	for _, o := range st.Offers() {
		if p, err := resourcepb.FromProto(o.GetResources()); err == nil {
			addClaims(o.GetAgentId(), "offer "+o.GetId(), p)
		}
	}
	res := make([]AgentView, 0, len(out))
	for _, v := range out {
		res = append(res, *v)
	}
	return res
}

// CheckAllocation checks, for every agent: reservations fit the capacity;
// the claims on each role fit its reservation; the unreserved claims plus
// everything reserved fit the capacity; no claim draws on a role the agent
// holds no reservation for; and no two claims share a port (range) or set
// item, nor does an unreserved claim share one with a reservation. index
// labels the violations.
func CheckAllocation(index uint64, agents []AgentView) []Violation {
	var out []Violation
	for _, a := range agents {
		var reservedAll resources.Resources
		roles := make([]string, 0, len(a.Reserved))
		for r := range a.Reserved {
			roles = append(roles, r)
		}
		sort.Strings(roles)
		for _, r := range roles {
			reservedAll = reservedAll.Add(a.Reserved[r])
		}
		if !a.Total.Contains(reservedAll) {
			out = append(out, violation("double-allocation", "index %d agent %s: reservations %s exceed capacity %s",
				index, a.ID, reservedAll, a.Total))
		}
		taken := map[string]resources.Resources{}
		for _, c := range a.Claims {
			taken[c.Pool] = taken[c.Pool].Add(c.Res)
		}
		pools := make([]string, 0, len(taken))
		for p := range taken {
			pools = append(pools, p)
		}
		sort.Strings(pools)
		for _, p := range pools {
			if p == "" {
				if need := taken[p].Add(reservedAll); !a.Total.Contains(need) {
					out = append(out, violation("double-allocation", "index %d agent %s: unreserved claims %s + reserved %s exceed capacity %s",
						index, a.ID, taken[p], reservedAll, a.Total))
				}
				continue
			}
			res, ok := a.Reserved[p]
			if !ok || !res.Contains(taken[p]) {
				out = append(out, violation("double-allocation", "index %d agent %s role %s: claims %s exceed reserved %s",
					index, a.ID, p, taken[p], res))
			}
		}
		for i := range a.Claims {
			for j := i + 1; j < len(a.Claims); j++ {
				if overlapping(a.Claims[i].Res, a.Claims[j].Res) {
					out = append(out, violation("double-allocation", "index %d agent %s: %s and %s hold the same ports or items",
						index, a.ID, a.Claims[i].Owner, a.Claims[j].Owner))
				}
			}
			if a.Claims[i].Pool == "" && overlapping(a.Claims[i].Res, reservedAll) {
				out = append(out, violation("double-allocation", "index %d agent %s: unreserved %s holds reserved ports or items",
					index, a.ID, a.Claims[i].Owner))
			}
		}
	}
	return out
}

// overlapping reports whether a and b share a range value or a set item
// (scalars are summed, not compared).
func overlapping(a, b resources.Resources) bool {
	if len(a.Ranges) == 0 && len(a.Sets) == 0 {
		return false
	}
	both := resourcepb.Intersect(resources.Resources{Ranges: a.Ranges, Sets: a.Sets}, resources.Resources{Ranges: b.Ranges, Sets: b.Sets})
	return !both.IsEmpty()
}
