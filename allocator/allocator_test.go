package allocator

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/resources"
	"pgregory.net/rapid"
)

var roleNames = []string{"r0", "r1", "r2", "r3"}

func genScalars(t *rapid.T, label string) resources.Resources {
	var r resources.Resources
	r = r.Add(resources.Scalar("cpus", rapid.SampledFrom([]float64{0, 0, 0.005, 0.5, 1, 2, 4}).Draw(t, label+".cpus")))
	r = r.Add(resources.Scalar("mem", rapid.SampledFrom([]float64{0, 0, 16, 32, 100, 512, 1024}).Draw(t, label+".mem")))
	r = r.Add(resources.Scalar("gpus", rapid.SampledFrom([]float64{0, 0, 0, 1, 2}).Draw(t, label+".gpus")))
	return r
}

// genSnapshot draws small snapshots with many collisions: few names, few
// distinct values, overlapping roles, filters around now.
func genSnapshot(t *rapid.T) (Snapshot, time.Time) {
	now := time.Unix(1000, 0)
	var s Snapshot
	nAgents := rapid.IntRange(0, 6).Draw(t, "agents")
	for i := range nAgents {
		a := Agent{ID: fmt.Sprintf("a%d", i), Unreserved: genScalars(t, "free")}
		if rapid.IntRange(0, 3).Draw(t, "ports?") == 0 {
			a.Unreserved = a.Unreserved.Add(resources.Ranges("ports", resources.Range{Begin: 100, End: 109}))
		}
		a.Total = a.Unreserved.Add(genScalars(t, "used"))
		for range rapid.IntRange(0, 2).Draw(t, "reservations") {
			role := rapid.SampledFrom(roleNames).Draw(t, "resrole")
			res := genScalars(t, "reserved")
			if a.Reserved == nil {
				a.Reserved = map[string]resources.Resources{}
			}
			a.Reserved[role] = a.Reserved[role].Add(res)
			a.Total = a.Total.Add(res)
		}
		s.Agents = append(s.Agents, a)
	}
	nFws := rapid.IntRange(0, 5).Draw(t, "frameworks")
	for i := range nFws {
		f := Framework{ID: fmt.Sprintf("f%d", i)}
		f.Roles = rapid.SliceOfN(rapid.SampledFrom(roleNames), 1, 3).Draw(t, "roles")
		for _, r := range f.Roles {
			if rapid.IntRange(0, 4).Draw(t, "suppress?") == 0 {
				if f.Suppressed == nil {
					f.Suppressed = map[string]bool{}
				}
				f.Suppressed[r] = true
			}
			if rapid.Bool().Draw(t, "allocated?") {
				if f.Allocated == nil {
					f.Allocated = map[string]resources.Resources{}
				}
				f.Allocated[r] = genScalars(t, "allocated")
			}
		}
		if nAgents > 0 {
			for range rapid.IntRange(0, 2).Draw(t, "filters") {
				f.Filters = append(f.Filters, Filter{
					AgentID: fmt.Sprintf("a%d", rapid.IntRange(0, nAgents-1).Draw(t, "filteragent")),
					Until:   now.Add(time.Duration(rapid.IntRange(-1, 1).Draw(t, "until")) * time.Second),
				})
			}
		}
		f.Revocable = rapid.Bool().Draw(t, "revocable?")
		s.Frameworks = append(s.Frameworks, f)
	}
	for _, name := range roleNames {
		if !rapid.Bool().Draw(t, "configured?") {
			continue
		}
		r := Role{
			Name:     name,
			Weight:   rapid.SampledFrom([]float64{0, 1, 2, 3}).Draw(t, "weight"),
			Priority: int32(rapid.SampledFrom([]int{0, 0, 1}).Draw(t, "priority")),
		}
		if rapid.Bool().Draw(t, "guarantee?") {
			r.Guarantee = genScalars(t, "guarantee")
		}
		if rapid.Bool().Draw(t, "limit?") {
			r.Limit = genScalars(t, "limit")
		}
		r.MaxUtilization = rapid.SampledFrom([]float64{0, 0, 0.25, 0.5, 0.9}).Draw(t, "maxutil")
		s.Roles = append(s.Roles, r)
	}
	s.MinAllocatable = rapid.SampledFrom([]resources.Resources{
		{}, {}, resources.MustParse("cpus:1"), resources.MustParse("mem:100;gpus:1"),
	}).Draw(t, "min")
	return s, now
}

func formatOffers(offers []Offer) string {
	var b strings.Builder
	for _, o := range offers {
		fmt.Fprintf(&b, "%s %s role=%s", o.FrameworkID, o.AgentID, o.Role)
		if !o.Unreserved.IsEmpty() {
			fmt.Fprintf(&b, " unreserved=%s", o.Unreserved)
		}
		if !o.Reserved.IsEmpty() {
			fmt.Fprintf(&b, " reserved=%s", o.Reserved)
		}
		if o.Revocable {
			b.WriteString(" revocable")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func TestAllocateMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, now := genSnapshot(t)
		seed := rapid.Uint64().Draw(t, "seed")
		got := formatOffers(Allocate(s, now, seed))
		want := formatOffers(referenceAllocate(s, now, seed))
		if got != want {
			t.Fatalf("Allocate differs from reference\ngot:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestAllocateInvariants(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, now := genSnapshot(t)
		seed := rapid.Uint64().Draw(t, "seed")
		offers := Allocate(s, now, seed)
		if again := Allocate(s, now, seed); formatOffers(again) != formatOffers(offers) {
			t.Fatalf("not deterministic")
		}
		agents := map[string]Agent{}
		for _, a := range s.Agents {
			agents[a.ID] = a
		}
		fws := map[string]Framework{}
		for _, f := range s.Frameworks {
			fws[f.ID] = f
		}
		limits := map[string]resources.Resources{}
		for _, r := range s.Roles {
			limits[r.Name] = r.Limit
		}
		minRes := s.MinAllocatable
		if len(minRes.Names()) == 0 {
			minRes = DefaultMinAllocatable
		}
		unres := map[string]resources.Resources{}
		type agentRole struct{ agent, role string }
		perAgentRole := map[agentRole]int{}
		unresToRole := map[string]resources.Resources{}
		for _, o := range offers {
			a, ok := agents[o.AgentID]
			if !ok {
				t.Fatalf("offer on unknown agent %s", o.AgentID)
			}
			f, ok := fws[o.FrameworkID]
			if !ok {
				t.Fatalf("offer to unknown framework %s", o.FrameworkID)
			}
			if !slices.Contains(f.Roles, o.Role) || f.Suppressed[o.Role] {
				t.Fatalf("offer %+v for a role the framework does not take", o)
			}
			for _, flt := range f.Filters {
				if flt.AgentID == o.AgentID && flt.Until.After(now) {
					t.Fatalf("offer %+v despite filter until %v", o, flt.Until)
				}
			}
			if !a.Reserved[o.Role].Contains(o.Reserved) {
				t.Fatalf("offer %+v: reserved part exceeds the role's reservation %s", o, a.Reserved[o.Role])
			}
			perAgentRole[agentRole{o.AgentID, o.Role}]++
			if perAgentRole[agentRole{o.AgentID, o.Role}] > 1 {
				t.Fatalf("two frameworks got agent %s for role %s", o.AgentID, o.Role)
			}
			unres[o.AgentID] = unres[o.AgentID].Add(o.Unreserved)
			unresToRole[o.Role] = unresToRole[o.Role].Add(o.Unreserved)
			isAllocatable := func(r resources.Resources) bool {
				for n, m := range minRes.Scalars {
					if r.Milli(n) >= m {
						return true
					}
				}
				return false
			}
			if !o.Unreserved.IsEmpty() && !isAllocatable(o.Unreserved) {
				t.Fatalf("offer %+v below the minimum %s", o, minRes)
			}
		}
		for id, sum := range unres {
			if !agents[id].Unreserved.Contains(sum) {
				t.Fatalf("agent %s: offers %s exceed free %s", id, sum, agents[id].Unreserved)
			}
		}
		for role, limit := range limits {
			var held resources.Resources
			for _, f := range s.Frameworks {
				held = held.Add(resources.Resources{Scalars: f.Allocated[role].Scalars})
			}
			for _, n := range limit.Names() {
				if got, room := unresToRole[role].Milli(n), max(0, limit.Milli(n)-held.Milli(n)); got > room {
					t.Fatalf("role %s: %s offered %d beyond limit room %d", role, n, got, room)
				}
			}
		}
	})
}

func TestAllocateIgnoresInputOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, now := genSnapshot(t)
		seed := rapid.Uint64().Draw(t, "seed")
		want := formatOffers(Allocate(s, now, seed))
		p := s
		p.Agents = rapid.Permutation(s.Agents).Draw(t, "agents")
		p.Frameworks = rapid.Permutation(s.Frameworks).Draw(t, "frameworks")
		p.Roles = rapid.Permutation(s.Roles).Draw(t, "roles")
		if got := formatOffers(Allocate(p, now, seed)); got != want {
			t.Fatalf("input order changed the result\ngot:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestAllocateDoesNotModifyInput(t *testing.T) {
	s := BenchSnapshot(50, 10)
	s.Agents[0].Reserved = map[string]resources.Resources{"role-0": resources.MustParse("cpus:1;mem:64")}
	before := fmt.Sprint(s)
	Allocate(s, time.Unix(0, 0), 1)
	if after := fmt.Sprint(s); after != before {
		t.Fatalf("snapshot modified")
	}
}

func TestSeedChangesAgentOrder(t *testing.T) {
	// One framework with a limit of one agent's worth: which agent it gets
	// depends on the seed only.
	s := Snapshot{
		Roles:      []Role{{Name: "web", Limit: resources.MustParse("cpus:1")}},
		Frameworks: []Framework{{ID: "f1", Roles: []string{"web"}}},
	}
	for i := range 20 {
		s.Agents = append(s.Agents, Agent{ID: fmt.Sprintf("a%02d", i), Total: resources.MustParse("cpus:1"), Unreserved: resources.MustParse("cpus:1")})
	}
	seen := map[string]bool{}
	for seed := range uint64(10) {
		offers := Allocate(s, time.Unix(0, 0), seed)
		if len(offers) != 1 {
			t.Fatalf("seed %d: %d offers, want 1", seed, len(offers))
		}
		seen[offers[0].AgentID] = true
	}
	if len(seen) < 3 {
		t.Fatalf("10 seeds picked only agents %v", seen)
	}
}
