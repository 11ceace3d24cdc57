package allocator

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/resources"
)

// Earmark holds resources of one agent for one framework and role: the
// resources a preemption freed (or is freeing) for the demand that caused
// it. While an earmark lasts, that much of the agent's free unreserved
// resources is offered to its framework only (see the package
// documentation, Earmarks).
type Earmark struct {
	AgentID, FrameworkID, Role string
	// Resources is the earmarked amount (scalars).
	Resources resources.Resources
	// Pending: victims of the preemption are still ending. What is free of
	// the earmark is held but not offered yet: a part of what the demand
	// needs would only be declined (and the framework's decline filter
	// would then keep the whole earmark from it).
	Pending bool
}

// TopBand returns the top priority band of a snapshot: the highest
// Priority among the configured roles (Snapshot.Roles) and the roles that
// a framework of the snapshot lists (an unconfigured role has priority 0);
// false when there is neither. Configured roles count even without a
// framework, so that a low-priority framework that comes first is offered
// revocable resources, which a high-priority framework arriving later can
// reclaim.
func TopBand(s Snapshot) (int32, bool) {
	prio := make(map[string]int32, len(s.Roles))
	var top int32
	found := false
	for _, r := range s.Roles {
		prio[r.Name] = r.Priority
		if !found || r.Priority > top {
			top, found = r.Priority, true
		}
	}
	for _, f := range s.Frameworks {
		for _, r := range f.Roles {
			if p := prio[r]; !found || p > top {
				top, found = p, true
			}
		}
	}
	return top, found
}

// markRevocable sets Revocable on the offers of s's round that carry
// unreserved resources to a framework with the capability, unless they
// are Guaranteed: for a role with a guarantee, on the offers wholly beyond
// it; for a role without one, on the offers below the top band.
func markRevocable(s Snapshot, offers []Offer) {
	top, ok := TopBand(s)
	if !ok || len(offers) == 0 {
		return
	}
	prio := make(map[string]int32, len(s.Roles))
	guaranteed := make(map[string]bool, len(s.Roles))
	for _, r := range s.Roles {
		prio[r.Name] = r.Priority
		guaranteed[r.Name] = len(r.Guarantee.Names()) > 0
	}
	capable := make(map[string]bool, len(s.Frameworks))
	for _, f := range s.Frameworks {
		if f.Revocable {
			capable[f.ID] = true
		}
	}
	// Offers come sorted by framework, and a framework's offers mostly
	// share a role: look each up once per run.
	var lastFw, lastRole string
	var isCapable, isBeyond bool
	for i := range offers {
		o := &offers[i]
		if i == 0 || o.FrameworkID != lastFw {
			lastFw, isCapable = o.FrameworkID, capable[o.FrameworkID]
		}
		if i == 0 || o.Role != lastRole {
			lastRole, isBeyond = o.Role, guaranteed[o.Role] || prio[o.Role] < top
		}
		o.Revocable = isCapable && isBeyond && !o.Guaranteed && !o.Unreserved.IsEmpty()
	}
}

// minScalars returns, per scalar of a, the smaller of a's and b's amount.
func minScalars(a, b resources.Resources) resources.Resources {
	var out resources.Resources
	for n, v := range a.Scalars {
		if w := b.Scalars[n]; v > 0 && w > 0 {
			out = out.Add(resources.Milli(n, min(v, w)))
		}
	}
	return out
}

// subScalars returns a minus b's scalars, clamped at zero; ranges and sets
// of a are kept.
func subScalars(a, b resources.Resources) resources.Resources {
	out := resources.Resources{Ranges: a.Ranges, Sets: a.Sets}
	for n, v := range a.Scalars {
		if left := v - b.Scalars[n]; left > 0 {
			out = out.Add(resources.Milli(n, left))
		}
	}
	return out
}

// holdEarmarks takes the earmarked resources out of s (it returns a
// changed copy; s is not modified) and returns the offers that serve them:
// for each earmark, in (agent, role, framework) order, what the agent has
// free unreserved of it is held; it is offered to the earmark's framework
// if that framework is in the snapshot, lists the role, has not suppressed
// it, has no filter for the agent and the part is allocatable. A held part
// that is not offered is offered to nobody: the earmark keeps it for its
// framework until it ends.
func holdEarmarks(s Snapshot, now time.Time) (Snapshot, []Offer) {
	if len(s.Earmarks) == 0 {
		return s, nil
	}
	marks := slices.Clone(s.Earmarks)
	slices.SortFunc(marks, func(a, b Earmark) int {
		return cmp.Or(strings.Compare(a.AgentID, b.AgentID), strings.Compare(a.Role, b.Role), strings.Compare(a.FrameworkID, b.FrameworkID))
	})
	agentIdx := make(map[string]int, len(s.Agents))
	for i, a := range s.Agents {
		agentIdx[a.ID] = i
	}
	fwIdx := make(map[string]int, len(s.Frameworks))
	for i, f := range s.Frameworks {
		fwIdx[f.ID] = i
	}
	minRes := s.MinAllocatable
	if len(minRes.Names()) == 0 {
		minRes = DefaultMinAllocatable
	}
	out := s
	out.Agents = slices.Clone(s.Agents)
	out.Frameworks = slices.Clone(s.Frameworks)
	var offers []Offer
	for _, m := range marks {
		ai, ok := agentIdx[m.AgentID]
		if !ok {
			continue
		}
		a := &out.Agents[ai]
		held := minScalars(m.Resources, a.Unreserved)
		if held.IsEmpty() {
			continue
		}
		a.Unreserved = subScalars(a.Unreserved, held)
		if m.Pending {
			continue
		}
		fi, ok := fwIdx[m.FrameworkID]
		if !ok || !eligible(&out.Frameworks[fi], m.Role, m.AgentID, now) || !allocatable(held, minRes) {
			continue
		}
		f := &out.Frameworks[fi]
		alloc := make(map[string]resources.Resources, len(f.Allocated)+1)
		for r, v := range f.Allocated {
			alloc[r] = v
		}
		alloc[m.Role] = alloc[m.Role].Add(held)
		f.Allocated = alloc
		offers = append(offers, Offer{FrameworkID: m.FrameworkID, AgentID: m.AgentID, Role: m.Role, Unreserved: held})
	}
	return out, offers
}

func eligible(f *Framework, role, agentID string, now time.Time) bool {
	if !slices.Contains(f.Roles, role) || f.Suppressed[role] {
		return false
	}
	for _, flt := range f.Filters {
		if flt.AgentID == agentID && flt.Until.After(now) {
			return false
		}
	}
	return true
}

func allocatable(r, minRes resources.Resources) bool {
	for n, m := range minRes.Scalars {
		if m > 0 && r.Milli(n) >= m {
			return true
		}
	}
	return false
}
