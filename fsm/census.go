package fsm

import (
	"github.com/agora-sched/agora/fsm/internal/radix"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// Census is a count of the state's objects, for metrics: one walk per
// table and no allocation per object, so that a scrape of a large state
// stays cheap.
type Census struct {
	// Tasks counts tasks by state (terminal ones until they are dropped).
	Tasks map[agorav1.TaskState]int
	// Agents counts agents by state.
	Agents map[agorav1.AgentState]int
	// Frameworks counts frameworks by state.
	Frameworks map[agorav1.FrameworkState]int
	// Offers counts outstanding offers.
	Offers int
	// Unacknowledged counts tasks whose latest status update waits for
	// its framework's acknowledgement.
	Unacknowledged int
	// Preemptions counts preemptions in force.
	Preemptions int
}

// Census counts the state's objects.
func (s *State) Census() Census {
	root := s.root.Root()
	c := Census{
		Tasks:      countBy(root, pTask, (*agorav1.Task).GetState),
		Agents:     countBy(root, pAgent, (*agorav1.Agent).GetState),
		Frameworks: countBy(root, pFramework, (*agorav1.Framework).GetState),
	}
	count := func(prefix string) (n int) {
		root.WalkPrefix([]byte(prefix), func([]byte, interface{}) bool {
			n++
			return false
		})
		return n
	}
	c.Offers = count(pOffer)
	c.Unacknowledged = count(xTaskUnacked)
	c.Preemptions = count(pPreemption)
	return c
}

// countBy counts the values under prefix by an enum field: into an array
// for the enum's small values (no map write per object), a map beyond.
func countBy[T any, E ~int32](root *radix.Node, prefix string, field func(T) E) map[E]int {
	var small [32]int
	out := map[E]int{}
	root.WalkPrefix([]byte(prefix), func(_ []byte, v interface{}) bool {
		if e := field(v.(T)); e >= 0 && int(e) < len(small) {
			small[e]++
		} else {
			out[e]++
		}
		return false
	})
	for e, n := range small {
		if n > 0 {
			out[E(e)] = n
		}
	}
	return out
}
