package allocator

import (
	"maps"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/agora-sched/agora/resources"
)

// cloneSnapshot copies what Incremental and the test modify: the agents,
// the frameworks and their allocation maps.
func cloneSnapshot(s Snapshot) Snapshot {
	c := s
	c.Agents = slices.Clone(s.Agents)
	c.Frameworks = slices.Clone(s.Frameworks)
	for i := range c.Frameworks {
		c.Frameworks[i].Allocated = maps.Clone(c.Frameworks[i].Allocated)
	}
	return c
}

// simplify drops what keeps Incremental on the full path (guarantees,
// limits, caps, reservations, earmarks), so that the one-agent path is
// exercised often.
func simplify(s Snapshot) Snapshot {
	s.Earmarks = nil
	s.Roles = slices.Clone(s.Roles)
	for i := range s.Roles {
		s.Roles[i].Guarantee, s.Roles[i].Limit, s.Roles[i].MaxUtilization = resources.Resources{}, resources.Resources{}, 0
	}
	s.Agents = slices.Clone(s.Agents)
	for i := range s.Agents {
		s.Agents[i].Reserved = nil
	}
	return s
}

type held struct {
	fw, agent, role string
	res             resources.Resources
}

// TestIncrementalMatchesAllocate holds Incremental to Allocate: after a
// full round, free the unreserved part of offers made earlier, one at a
// time; every answer must be Allocate's on the snapshot with that freed.
func TestIncrementalMatchesAllocate(t *testing.T) {
	fast := 0
	rapid.Check(t, func(t *rapid.T) {
		s, now := genSnapshot(t)
		if rapid.IntRange(0, 3).Draw(t, "simple?") > 0 {
			s = simplify(s)
		}
		inc := NewIncremental(s, now)
		seed := rapid.Uint64().Draw(t, "seed")
		want := formatOffers(Allocate(s, now, seed))
		offers := inc.Round(seed)
		if got := formatOffers(offers); got != want {
			t.Fatalf("Round differs from Allocate\ngot:\n%s\nwant:\n%s", got, want)
		}
		var holdings []held
		add := func(offers []Offer) {
			for _, o := range offers {
				if !o.Unreserved.IsEmpty() {
					holdings = append(holdings, held{o.FrameworkID, o.AgentID, o.Role, o.Unreserved})
				}
			}
		}
		add(offers)
		for step := range rapid.IntRange(1, 6).Draw(t, "steps") {
			if len(holdings) == 0 {
				return
			}
			i := rapid.IntRange(0, len(holdings)-1).Draw(t, "free")
			h := holdings[i]
			holdings = slices.Delete(holdings, i, i+1)
			ref := cloneSnapshot(inc.Snapshot())
			for j := range ref.Agents {
				if ref.Agents[j].ID == h.agent {
					ref.Agents[j].Unreserved = ref.Agents[j].Unreserved.Add(h.res)
				}
			}
			for j := range ref.Frameworks {
				if f := &ref.Frameworks[j]; f.ID == h.fw {
					left, err := f.Allocated[h.role].Subtract(resources.Resources{Scalars: h.res.Scalars})
					if err != nil {
						t.Fatalf("step %d: test bookkeeping: %v", step, err)
					}
					f.Allocated[h.role] = left
				}
			}
			seed := rapid.Uint64().Draw(t, "stepseed")
			want := formatOffers(Allocate(ref, now, seed))
			before := inc.FastRounds
			got, err := inc.FreeAndAllocate(h.agent, h.fw, h.role, h.res, seed)
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			if g := formatOffers(got); g != want {
				t.Fatalf("step %d (fast path %v): freeing %s of %s on %s differs from Allocate\ngot:\n%s\nwant:\n%s",
					step, inc.FastRounds > before, h.res, h.fw, h.agent, g, want)
			}
			if inc.FastRounds > before {
				fast++
			}
			add(got)
		}
	})
	if fast == 0 {
		t.Fatal("the one-agent path was never taken: the test does not exercise it")
	}
	t.Logf("one-agent path taken %d times", fast)
}

// TestIncrementalFastPathAtScale frees one agent of a fully offered
// benchmark cluster: the one-agent path is taken and offers that agent
// alone, as a full round does.
func TestIncrementalFastPathAtScale(t *testing.T) {
	s := BenchSnapshot(500, 50)
	now := time.Unix(0, 0)
	inc := NewIncremental(s, now)
	first := inc.Round(1)
	if len(first) != 500 {
		t.Fatalf("full round made %d offers, want one per agent", len(first))
	}
	o := first[17]
	ref := cloneSnapshot(inc.Snapshot())
	for j := range ref.Agents {
		if ref.Agents[j].ID == o.AgentID {
			ref.Agents[j].Unreserved = ref.Agents[j].Unreserved.Add(o.Unreserved)
		}
	}
	for j := range ref.Frameworks {
		if f := &ref.Frameworks[j]; f.ID == o.FrameworkID {
			f.Allocated[o.Role], _ = f.Allocated[o.Role].Subtract(resources.Resources{Scalars: o.Unreserved.Scalars})
		}
	}
	want := formatOffers(Allocate(ref, now, 2))
	got, err := inc.FreeAndAllocate(o.AgentID, o.FrameworkID, o.Role, o.Unreserved, 2)
	if err != nil {
		t.Fatal(err)
	}
	if inc.FastRounds != 1 {
		t.Fatalf("fast rounds %d, want 1", inc.FastRounds)
	}
	if formatOffers(got) != want || len(got) != 1 || got[0].AgentID != o.AgentID {
		t.Fatalf("got\n%s\nwant\n%s", formatOffers(got), want)
	}
	if _, err := inc.FreeAndAllocate("nope", o.FrameworkID, o.Role, o.Unreserved, 3); err == nil {
		t.Fatal("unknown agent accepted")
	}
	if _, err := inc.FreeAndAllocate(o.AgentID, o.FrameworkID, o.Role, resources.MustParse("cpus:1000"), 3); err == nil {
		t.Fatal("freeing more than the framework holds accepted")
	}
}
