package fsm

import (
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
	c := Census{
		Tasks:      map[agorav1.TaskState]int{},
		Agents:     map[agorav1.AgentState]int{},
		Frameworks: map[agorav1.FrameworkState]int{},
	}
	root := s.root.Root()
	root.WalkPrefix([]byte(pTask), func(_ []byte, v interface{}) bool {
		c.Tasks[v.(*agorav1.Task).GetState()]++
		return false
	})
	root.WalkPrefix([]byte(pAgent), func(_ []byte, v interface{}) bool {
		c.Agents[v.(*agorav1.Agent).GetState()]++
		return false
	})
	root.WalkPrefix([]byte(pFramework), func(_ []byte, v interface{}) bool {
		c.Frameworks[v.(*agorav1.Framework).GetState()]++
		return false
	})
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
