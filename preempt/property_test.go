package preempt

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/agora-sched/agora/resources"
)

func genRes(t *rapid.T, label string) resources.Resources {
	var r resources.Resources
	r = r.Add(resources.Scalar("cpus", float64(rapid.IntRange(0, 4).Draw(t, label+".cpus"))))
	r = r.Add(resources.Scalar("mem", float64(rapid.SampledFrom([]int{0, 512, 1024, 2048}).Draw(t, label+".mem"))))
	return r
}

func genInput(t *rapid.T) Input {
	var in Input
	nAgents := rapid.IntRange(1, 5).Draw(t, "agents")
	for i := range nAgents {
		a := Agent{ID: fmt.Sprintf("a%d", i), Total: resources.MustParse("cpus:4;mem:4096")}
		used := resources.Resources{}
		for j := range rapid.IntRange(0, 4).Draw(t, "tasks") {
			r := genRes(t, "task")
			if r.IsEmpty() || !a.Total.Contains(used.Add(r)) {
				continue
			}
			used = used.Add(r)
			a.Tasks = append(a.Tasks, Task{
				FrameworkID: fmt.Sprintf("f%d", rapid.IntRange(0, 2).Draw(t, "fw")), ID: fmt.Sprintf("t%d-%d", i, j),
				Role: "r", Priority: int32(rapid.IntRange(0, 3).Draw(t, "prio")), Resources: r,
				Started: time.Unix(int64(rapid.IntRange(0, 5).Draw(t, "started")), 0),
			})
		}
		for j := range rapid.IntRange(0, 2).Draw(t, "offers") {
			r := genRes(t, "offer")
			if r.IsEmpty() || !a.Total.Contains(used.Add(r)) {
				continue
			}
			used = used.Add(r)
			a.Offers = append(a.Offers, Offer{ID: fmt.Sprintf("o%d-%d", i, j), FrameworkID: "f0", Role: "r",
				Priority: int32(rapid.IntRange(0, 3).Draw(t, "oprio")), Resources: r})
		}
		a.Free, _ = a.Total.Subtract(used)
		in.Agents = append(in.Agents, a)
	}
	for i := range rapid.IntRange(1, 3).Draw(t, "demands") {
		shape := genRes(t, "shape")
		if shape.IsEmpty() {
			shape = resources.MustParse("cpus:1")
		}
		in.Demands = append(in.Demands, Demand{FrameworkID: fmt.Sprintf("d%d", i), Role: "hi",
			Priority: int32(rapid.IntRange(1, 4).Draw(t, "dprio")), Shape: shape, Count: rapid.IntRange(1, 3).Draw(t, "count")})
	}
	return in
}

// TestPlanProperties: on random inputs every plan passes checkPlan, and
// the order of agents in the input does not matter.
func TestPlanProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := genInput(t)
		p := Decide(in)
		checkPlan(t, in, p)
		shuffled := in
		shuffled.Agents = slices.Clone(in.Agents)
		slices.Reverse(shuffled.Agents)
		if a, b := format(p), format(Decide(shuffled)); a != b {
			t.Fatalf("agent order changes the plan:\n%s\nvs\n%s", a, b)
		}
	})
}

// referenceVictims is the naive reference for one unit of one demand on
// agents with nothing free and no offers: for every agent, drop all lower
// tasks, add them back in reprieve order while the unit still fits, with
// plain resources.Resources arithmetic; then sort the agents by the
// documented criteria.
func referenceVictims(in Input, d Demand) (string, []string) {
	type cand struct {
		agent   string
		victims []Task
	}
	var cands []cand
	for _, a := range in.Agents {
		var lower []Task
		pool := a.Free
		for _, tk := range a.Tasks {
			if tk.Priority < d.Priority {
				lower = append(lower, tk)
				pool = pool.Add(tk.Resources)
			}
		}
		if len(lower) == 0 || !pool.Contains(d.Shape) {
			continue
		}
		sort.SliceStable(lower, func(i, j int) bool {
			x, y := lower[i], lower[j]
			if x.Priority != y.Priority {
				return x.Priority > y.Priority
			}
			if !x.Started.Equal(y.Started) {
				return x.Started.Before(y.Started)
			}
			if x.FrameworkID != y.FrameworkID {
				return x.FrameworkID < y.FrameworkID
			}
			return x.ID < y.ID
		})
		c := cand{agent: a.ID}
		for _, tk := range lower {
			if rest, err := pool.Subtract(tk.Resources); err == nil && rest.Contains(d.Shape) {
				pool = rest
				continue
			}
			c.victims = append(c.victims, tk)
		}
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		return "", nil
	}
	key := func(c cand) (int32, int, int64) {
		top := int32(-1 << 31)
		var earliest int64
		for _, v := range c.victims {
			if v.Priority > top {
				top, earliest = v.Priority, v.Started.UnixNano()
			} else if v.Priority == top && v.Started.UnixNano() < earliest {
				earliest = v.Started.UnixNano()
			}
		}
		return top, len(c.victims), earliest
	}
	sort.SliceStable(cands, func(i, j int) bool {
		pi, ni, ei := key(cands[i])
		pj, nj, ej := key(cands[j])
		if pi != pj {
			return pi < pj
		}
		if ni != nj {
			return ni < nj
		}
		if ei != ej {
			return ei > ej
		}
		return cands[i].agent < cands[j].agent
	})
	var ids []string
	for _, v := range cands[0].victims {
		ids = append(ids, v.FrameworkID+"/"+v.ID)
	}
	sort.Strings(ids)
	return cands[0].agent, ids
}

// TestVictimsMatchReference: for one unit of one demand on a full cluster
// (no free resources, no offers), Decide picks the agent and victims the
// naive reference picks.
func TestVictimsMatchReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := genInput(t)
		for i := range in.Agents {
			in.Agents[i].Offers = nil
			in.Agents[i].Free = resources.Resources{}
		}
		in.Demands = in.Demands[:1]
		in.Demands[0].Count = 1
		p := Decide(in)
		agent, want := referenceVictims(in, in.Demands[0])
		var got []string
		gotAgent := ""
		if len(p.Preemptions) > 0 {
			gotAgent = p.Preemptions[0].AgentID
			for _, v := range p.Preemptions[0].Victims {
				got = append(got, v.FrameworkID+"/"+v.ID)
			}
			sort.Strings(got)
		}
		if gotAgent != agent || !slices.Equal(got, want) {
			t.Fatalf("Decide chose %s %v, the reference %s %v\n%s", gotAgent, got, agent, want, format(p))
		}
	})
}

// TestNoPreemptionWhenFreeSuffices: a demand whose units all fit in free
// resources from the start kills nothing and rescinds nothing.
func TestNoPreemptionWhenFreeSuffices(t *testing.T) {
	in := Input{
		Agents: []Agent{{ID: "a1", Total: resources.MustParse("cpus:4"), Free: resources.MustParse("cpus:2"),
			Tasks: []Task{{FrameworkID: "b", ID: "t", Role: "batch", Resources: resources.MustParse("cpus:2")}}}},
		Demands: []Demand{{FrameworkID: "hi", Role: "prod", Priority: 10, Shape: resources.MustParse("cpus:1"), Count: 2}},
	}
	p := Decide(in)
	if len(p.Preemptions) > 0 || len(p.Rescinds) > 0 || p.Verdicts[0].Placed != 2 {
		t.Fatalf("plan: %s", format(p))
	}
}
