package fsm

import (
	"strings"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// ScalarSums is the cluster's scalar accounting, name -> milli-units.
type ScalarSums struct {
	Total, Used, Offered, Reserved map[string]int64
}

// ClusterUsage sums the scalar accounting (AgentUsage) of every agent
// that is not gone, every pool together, without copying any agent's
// pools: the web UI's overview reads it at 10,000 agents.
func (s *State) ClusterUsage() ScalarSums {
	c := ScalarSums{Total: map[string]int64{}, Used: map[string]int64{}, Offered: map[string]int64{}, Reserved: map[string]int64{}}
	s.root.Root().WalkPrefix([]byte(uAgent), func(k []byte, v interface{}) bool {
		id := strings.TrimPrefix(string(k), uAgent)
		if a, ok := s.Agent(id); !ok || a.GetState() == agorav1.AgentState_AGENT_STATE_GONE {
			return false
		}
		u := v.(*agentUsage)
		for n, m := range u.total.Scalars {
			c.Total[n] += m
		}
		for _, r := range u.used {
			for n, m := range r.Scalars {
				c.Used[n] += m
			}
		}
		for _, r := range u.offered {
			for n, m := range r.Scalars {
				c.Offered[n] += m
			}
		}
		for _, r := range u.reserved {
			for n, m := range r.Scalars {
				c.Reserved[n] += m
			}
		}
		return false
	})
	return c
}
