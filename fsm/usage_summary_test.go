package fsm

import (
	"maps"
	"testing"

	"pgregory.net/rapid"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// naiveClusterUsage is the reference: AgentUsage of every agent that is
// not gone, summed.
func naiveClusterUsage(s *State) ScalarSums {
	c := ScalarSums{Total: map[string]int64{}, Used: map[string]int64{}, Offered: map[string]int64{}, Reserved: map[string]int64{}}
	add := func(into map[string]int64, r resources.Resources) {
		for n, v := range r.Scalars {
			into[n] += v
		}
	}
	for _, a := range s.Agents() {
		if a.GetState() == agorav1.AgentState_AGENT_STATE_GONE {
			continue
		}
		u := s.AgentUsage(a.GetId())
		add(c.Total, u.Total)
		add(c.Used, u.Used.Total())
		add(c.Offered, u.Offered.Total())
		add(c.Reserved, u.Reserved.Total())
	}
	return c
}

// nonzero drops zero sums: the reference and the walk may differ only in
// names summed to nothing.
func nonzero(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

func TestPropertyClusterUsageMatchesAgentUsage(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		h := newHarness(t)
		h.t = rt
		g := &gen{t: rt, now: 100}
		for range rapid.IntRange(1, 60).Draw(rt, "len") {
			typ, m := g.command(h.f.State())
			h.apply(typ, m)
			s := h.f.State()
			got, want := s.ClusterUsage(), naiveClusterUsage(s)
			for _, p := range []struct {
				name      string
				got, want map[string]int64
			}{{"total", got.Total, want.Total}, {"used", got.Used, want.Used}, {"offered", got.Offered, want.Offered}, {"reserved", got.Reserved, want.Reserved}} {
				if !maps.Equal(nonzero(p.got), nonzero(p.want)) {
					rt.Fatalf("%s: ClusterUsage %v, reference %v", p.name, p.got, p.want)
				}
			}
		}
	})
}
