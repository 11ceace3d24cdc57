package preempt

import (
	"fmt"
	"testing"
	"time"

	"github.com/agora-sched/agora/resources"
)

// benchInput is a full cluster: agents of 16 cpus and 64 GiB, each running
// tasks revocable tasks of batch roles (priorities 0-2) that use it all;
// one prod demand (priority 10) of units that each need victims.
func benchInput(agents, tasks, units int) Input {
	in := Input{Agents: make([]Agent, agents)}
	per := tasks / agents
	cpu := 16.0 / float64(per)
	mem := 65536.0 / float64(per)
	for i := range in.Agents {
		a := &in.Agents[i]
		a.ID = fmt.Sprintf("agent-%05d", i)
		a.Total = resources.MustParse("cpus:16;mem:65536")
		for j := range per {
			a.Tasks = append(a.Tasks, Task{
				FrameworkID: fmt.Sprintf("batch-%d", (i+j)%50), ID: fmt.Sprintf("t-%d-%d", i, j),
				Role: fmt.Sprintf("batch%d", j%3), Priority: int32(j % 3),
				Resources: resources.Scalar("cpus", cpu).Add(resources.Scalar("mem", mem)),
				Started:   time.Unix(int64(i*per+j), 0),
			})
		}
	}
	in.Demands = []Demand{{FrameworkID: "prod", Role: "prod", Priority: 10,
		Shape: resources.MustParse("cpus:4;mem:8192"), Count: units}}
	return in
}

// BenchmarkDecide: one preemption pass over 10,000 agents and 100,000
// revocable tasks, for a demand of 1 and of 10 units that each need
// victims; "dense" gives Decide the agents' Dense vectors.
func BenchmarkDecide(b *testing.B) {
	for _, units := range []int{1, 10} {
		b.Run(fmt.Sprintf("agents=10000/tasks=100000/units=%d", units), func(b *testing.B) {
			in := benchInput(10000, 100000, units)
			b.ResetTimer()
			for range b.N {
				p := Decide(in)
				if p.Verdicts[0].Preempting != units {
					b.Fatalf("verdict %+v", p.Verdicts[0])
				}
			}
		})
		// What the master passes: the scalars as Dense vectors as well.
		b.Run(fmt.Sprintf("dense/agents=10000/tasks=100000/units=%d", units), func(b *testing.B) {
			in := withDense(benchInput(10000, 100000, units), []string{"cpus", "mem"}, true)
			b.ResetTimer()
			for range b.N {
				p := Decide(in)
				if p.Verdicts[0].Preempting != units {
					b.Fatalf("verdict %+v", p.Verdicts[0])
				}
			}
		})
	}
}
