package story

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/agora-sched/agora/rpc/client"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// utilWatch samples the cluster's utilization by tasks: for each scalar
// kind, what running tasks hold over the total of the agents that are not
// gone; the largest kind's fraction. (The allocator counts outstanding
// offers too, when it cuts an offer to a capped role; offers to uncapped
// roles may fill the rest of the cluster, so they are left out here: what
// the cap promises is that the capped role's tasks never take the cluster
// past it.)
type utilWatch struct {
	mu       sync.Mutex
	cur, max float64
	frozen   bool
}

func (u *utilWatch) run(ctx context.Context, cl *client.Client) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if v, ok := sample(ctx, cl); ok {
			u.mu.Lock()
			u.cur = v
			if !u.frozen && v > u.max {
				u.max = v
			}
			u.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (u *utilWatch) current() float64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cur
}

// maxSeen returns the highest utilization sampled so far and stops
// tracking it: later work of uncapped roles may fill the cluster.
func (u *utilWatch) maxSeen() float64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.frozen = true
	return u.max
}

func sample(ctx context.Context, cl *client.Client) (float64, bool) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := cl.Operator.ListAgents(cctx, connect.NewRequest(&agorav1.ListAgentsRequest{}))
	if err != nil {
		return 0, false
	}
	total, held := map[string]float64{}, map[string]float64{}
	for _, av := range res.Msg.GetAgents() {
		if av.GetAgent().GetState() == agorav1.AgentState_AGENT_STATE_GONE {
			continue
		}
		for _, r := range av.GetAgent().GetResources() {
			total[r.GetName()] += r.GetScalar()
		}
		for _, r := range av.GetUsed() {
			held[r.GetName()] += r.GetScalar()
		}
	}
	m := 0.0
	for n, t := range total {
		if t > 0 {
			m = max(m, held[n]/t)
		}
	}
	return m, true
}
