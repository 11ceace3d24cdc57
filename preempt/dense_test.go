package preempt

import (
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/agora-sched/agora/resources"
)

// withDense returns in with every agent's Dense vectors over kinds (which
// must name every scalar of the agents and their tasks, in any order);
// agents of an even index get a stride that leaves out the kinds after
// the last one they use, as a cache that saw those kinds later would.
// With sorted, the agents' tasks are put in reprieve order (SortTasks) and
// marked so.
func withDense(in Input, kinds []string, sorted bool) Input {
	out := in
	out.Kinds = kinds
	out.Agents = slices.Clone(in.Agents)
	for i := range out.Agents {
		a := &out.Agents[i]
		if sorted {
			a.Tasks = slices.Clone(a.Tasks)
			SortTasks(a.Tasks)
		}
		stride := len(kinds)
		if i%2 == 0 {
			stride = 0
			for k, name := range kinds {
				used := a.Total.Milli(name) != 0 || a.Free.Milli(name) != 0
				for _, t := range a.Tasks {
					used = used || t.Resources.Milli(name) != 0
				}
				if used {
					stride = k + 1
				}
			}
		}
		vec := func(r resources.Resources) []int64 {
			v := make([]int64, stride)
			for k := range v {
				v[k] = r.Milli(kinds[k])
			}
			return v
		}
		dn := &Dense{Stride: stride, Total: vec(a.Total), Free: vec(a.Free), Sorted: sorted}
		for _, t := range a.Tasks {
			dn.Tasks = append(dn.Tasks, vec(t.Resources)...)
			dn.Prios = append(dn.Prios, t.Priority)
			dn.Starts = append(dn.Starts, t.Started.UnixNano())
		}
		a.Dense = dn
	}
	return out
}

// TestDenseMatchesMaps: Decide gives the same plan whether it reads the
// agents' scalars from their maps or from Dense vectors, whatever the
// order of Input.Kinds, with kinds nobody demands and short strides, and
// with the tasks given in reprieve order (Dense.Sorted) or not.
func TestDenseMatchesMaps(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := genInput(t)
		kinds := rapid.Permutation([]string{"cpus", "mem", "disk"}).Draw(t, "kinds")
		want := Decide(in)
		dense := withDense(in, kinds, rapid.Bool().Draw(t, "sorted"))
		got := Decide(dense)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("dense plan differs:\n%s\nvs maps:\n%s", format(got), format(want))
		}
		// Decide reads the Dense vectors in place and must not write them.
		if again := Decide(dense); !reflect.DeepEqual(again, want) {
			t.Fatalf("a second pass over the same dense input differs:\n%s\nvs\n%s", format(again), format(want))
		}
	})
}
