package allocator

import (
	"math"
	"slices"
	"sort"
	"time"

	"github.com/agora-sched/agora/resources"
)

// referenceAllocate is the naive allocator: the documented rules written as
// plain loops over resources.Resources values, recomputing every sum, share
// and order from scratch at each step. Allocate must return exactly what it
// returns. Only the agent shuffle is shared with the fast implementation.
func referenceAllocate(s Snapshot, now time.Time, seed uint64) []Offer {
	minRes := s.MinAllocatable
	if len(minRes.Names()) == 0 {
		minRes = DefaultMinAllocatable
	}
	allocatable := func(r resources.Resources) bool {
		for n, m := range minRes.Scalars {
			if m > 0 && r.Milli(n) >= m {
				return true
			}
		}
		return false
	}
	cfg := map[string]Role{}
	roleSet := map[string]bool{}
	for _, r := range s.Roles {
		cfg[r.Name] = r
		roleSet[r.Name] = true
	}
	free := make([]resources.Resources, len(s.Agents))
	reserved := make([]map[string]resources.Resources, len(s.Agents))
	extraGiven := make([]bool, len(s.Agents))
	var total resources.Resources
	for i, a := range s.Agents {
		free[i] = a.Unreserved.Clone()
		reserved[i] = map[string]resources.Resources{}
		for r, res := range a.Reserved {
			if !res.IsEmpty() {
				reserved[i][r] = res.Clone()
				roleSet[r] = true
			}
		}
		total = total.Add(resources.Resources{Scalars: a.Total.Scalars})
	}
	type fr struct {
		fw   int
		role string
	}
	fwAlloc := map[fr]resources.Resources{}
	for i, f := range s.Frameworks {
		for r, res := range f.Allocated {
			fwAlloc[fr{i, r}] = resources.Resources{Scalars: res.Scalars}.Clone()
			roleSet[r] = true
		}
		for _, r := range f.Roles {
			roleSet[r] = true
		}
	}
	var roleNames []string
	for r := range roleSet {
		roleNames = append(roleNames, r)
	}

	weight := func(r string) float64 {
		if w := cfg[r].Weight; w > 0 {
			return w
		}
		return 1
	}
	share := func(res resources.Resources) float64 {
		m := 0.0
		for n, t := range total.Scalars {
			if x := float64(res.Milli(n)) / float64(t); x > m {
				m = x
			}
		}
		return m
	}
	roleAlloc := func(r string) resources.Resources {
		var sum resources.Resources
		for k, res := range fwAlloc {
			if k.role == r {
				sum = sum.Add(res)
			}
		}
		return sum
	}
	// guarantee is the effective guarantee: never above the limit.
	guarantee := func(r, n string) int64 {
		g := cfg[r].Guarantee.Milli(n)
		if l, ok := cfg[r].Limit.Scalars[n]; ok {
			g = min(g, l)
		}
		return g
	}
	unmet := func(r, n string) int64 {
		return max(0, guarantee(r, n)-roleAlloc(r).Milli(n))
	}
	hasUnmet := func(r string) bool {
		for _, n := range cfg[r].Guarantee.Names() {
			if unmet(r, n) > 0 {
				return true
			}
		}
		return false
	}
	req := func(n string) int64 {
		var sum int64
		for r := range cfg {
			sum += unmet(r, n)
		}
		return sum
	}
	avail := func(n string) int64 {
		var sum int64
		for _, f := range free {
			sum += f.Milli(n)
		}
		return sum
	}
	// used counts a scalar as used unless it is free, unreserved or
	// reserved: tasks, outstanding offers and this round's offers.
	used := func(n string) int64 {
		f := avail(n)
		for _, rs := range reserved {
			for _, res := range rs {
				f += res.Milli(n)
			}
		}
		return total.Milli(n) - f
	}
	// capLeft is how much more of n role r may be offered under its cap.
	capLeft := func(r, n string) int64 {
		mu := cfg[r].MaxUtilization
		t := total.Milli(n)
		if mu <= 0 || t <= 0 {
			return math.MaxInt64
		}
		return max(0, int64(mu*float64(t)+1e-6)-used(n))
	}
	atCap := func(r string) bool {
		for n := range total.Scalars {
			if total.Milli(n) > 0 && capLeft(r, n) == 0 {
				return true
			}
		}
		return false
	}
	capacity := func(r, n string, guaranteePass bool) int64 {
		spare := max(0, avail(n)-req(n))
		c := spare + unmet(r, n)
		if guaranteePass && guarantee(r, n) > 0 {
			c = unmet(r, n)
		}
		if l, ok := cfg[r].Limit.Scalars[n]; ok {
			c = min(c, max(0, l-roleAlloc(r).Milli(n)))
		}
		return min(c, capLeft(r, n))
	}
	filtered := func(f, ai int) bool {
		for _, flt := range s.Frameworks[f].Filters {
			if flt.AgentID == s.Agents[ai].ID && flt.Until.After(now) {
				return true
			}
		}
		return false
	}
	type ar struct {
		agent int
		role  string
	}
	assigned := map[ar]int{}
	offers := map[ar]*Offer{}
	pick := func(ai int, r string) (int, bool) {
		if f, ok := assigned[ar{ai, r}]; ok {
			return f, true
		}
		var cands []int
		for i, f := range s.Frameworks {
			if slices.Contains(f.Roles, r) && !f.Suppressed[r] && !filtered(i, ai) {
				cands = append(cands, i)
			}
		}
		if len(cands) == 0 {
			return 0, false
		}
		sort.Slice(cands, func(i, j int) bool {
			si, sj := share(fwAlloc[fr{cands[i], r}]), share(fwAlloc[fr{cands[j], r}])
			if si != sj {
				return si < sj
			}
			return s.Frameworks[cands[i]].ID < s.Frameworks[cands[j]].ID
		})
		return cands[0], true
	}
	give := func(ai int, r string, f int, res resources.Resources, isReserved bool) {
		k := ar{ai, r}
		assigned[k] = f
		o := offers[k]
		if o == nil {
			o = &Offer{FrameworkID: s.Frameworks[f].ID, AgentID: s.Agents[ai].ID, Role: r}
			offers[k] = o
		}
		scal := resources.Resources{Scalars: res.Scalars}
		fwAlloc[fr{f, r}] = fwAlloc[fr{f, r}].Add(scal)
		if isReserved {
			o.Reserved = o.Reserved.Add(res)
			delete(reserved[ai], r)
			return
		}
		o.Unreserved = o.Unreserved.Add(res)
		left, err := free[ai].Subtract(res)
		if err != nil {
			panic(err)
		}
		free[ai] = left
	}

	order := shuffledAgents(s.Agents, seed)

	// Pass 1: reservations.
	for _, ai := range order {
		names := make([]string, 0, len(reserved[ai]))
		for r := range reserved[ai] {
			names = append(names, r)
		}
		slices.Sort(names)
		for _, r := range names {
			res := reserved[ai][r]
			if !allocatable(res) {
				continue
			}
			if f, ok := pick(int(ai), r); ok {
				give(int(ai), r, f, res, true)
			}
		}
	}

	// Passes 2 and 3: unreserved, guarantees first.
	for _, guaranteePass := range []bool{true, false} {
		for _, ai := range order {
			a := int(ai)
			for {
				sorted := slices.Clone(roleNames)
				sort.Slice(sorted, func(i, j int) bool {
					ri, rj := sorted[i], sorted[j]
					if pi, pj := cfg[ri].Priority, cfg[rj].Priority; pi != pj {
						return pi > pj
					}
					wi, wj := share(roleAlloc(ri))/weight(ri), share(roleAlloc(rj))/weight(rj)
					if wi != wj {
						return wi < wj
					}
					return ri < rj
				})
				made := false
				for _, r := range sorted {
					if guaranteePass && !hasUnmet(r) {
						continue
					}
					if atCap(r) {
						continue
					}
					var o resources.Resources
					touchesUnmet := false
					for n, f := range free[a].Scalars {
						if x := min(f, capacity(r, n, guaranteePass)); x > 0 {
							o = o.Add(resources.Milli(n, x))
							if unmet(r, n) > 0 {
								touchesUnmet = true
							}
						}
					}
					if !allocatable(o) || (guaranteePass && !touchesUnmet) {
						continue
					}
					f, ok := pick(a, r)
					if !ok {
						continue
					}
					if !extraGiven[a] {
						extraGiven[a] = true
						o = o.Add(resources.Resources{Ranges: free[a].Ranges, Sets: free[a].Sets})
					}
					give(a, r, f, o, false)
					if guaranteePass {
						offers[ar{a, r}].Guaranteed = true
					}
					made = true
					break
				}
				if !made {
					break
				}
			}
		}
	}

	out := make([]Offer, 0, len(offers))
	for _, o := range offers {
		out = append(out, *o)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.FrameworkID != b.FrameworkID {
			return a.FrameworkID < b.FrameworkID
		}
		if a.AgentID != b.AgentID {
			return a.AgentID < b.AgentID
		}
		return a.Role < b.Role
	})
	// Revocable: the framework has the capability, the offer holds nothing
	// of the guarantee pass, and the role has a guarantee (the offer is
	// beyond it) or is below the highest priority of any configured role or
	// role a framework lists.
	top, anyRole := int32(0), false
	for _, r := range s.Roles {
		if !anyRole || r.Priority > top {
			top, anyRole = r.Priority, true
		}
	}
	for _, f := range s.Frameworks {
		for _, r := range f.Roles {
			if p := cfg[r].Priority; !anyRole || p > top {
				top, anyRole = p, true
			}
		}
	}
	for i := range out {
		for _, f := range s.Frameworks {
			beyond := cfg[out[i].Role].Priority < top || len(cfg[out[i].Role].Guarantee.Names()) > 0
			if f.ID == out[i].FrameworkID && f.Revocable && beyond && !out[i].Guaranteed && !out[i].Unreserved.IsEmpty() {
				out[i].Revocable = true
			}
		}
	}
	return out
}
