package master

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/gossip"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// tokenBucket paces proposals: rate tokens per second, bursts of burst.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newTokenBucket(rate float64, now time.Time) *tokenBucket {
	burst := max(1, rate)
	return &tokenBucket{rate: rate, burst: burst, tokens: burst, last: now}
}

// take spends a token if one is available; otherwise it returns how long
// until one is.
func (b *tokenBucket) take(now time.Time) (bool, time.Duration) {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// livenessTick is how often the leader looks for agents that must become
// gone, and retries proposals that failed.
const livenessTick = 250 * time.Millisecond

// runLiveness is the leader's failure detector for agents. It acts on the
// gossip pool's verdicts: a failed or departed agent that is ACTIVE in
// the state is marked UNREACHABLE (paced by Config.AgentRemovalRate), and
// an agent UNREACHABLE for Config.AgentGoneTimeout is marked GONE.
//
// Every timer starts afresh when leadership is won: an agent missing from
// gossip is marked only if it is still missing Config.LivenessGrace after
// the leadership began (and, later, in two sweeps LivenessGrace apart),
// and the gone timeout counts from max(state_since, leadership start). So
// a failover never marks agents unreachable en masse.
func (s *agentServer) runLiveness(ctx context.Context) {
	m := s.m
	cfg := m.Config()
	log := m.log.With("component", "liveness")
	events, cancel := m.SubscribeGossip()
	defer cancel()
	start := time.Now()
	bucket := newTokenBucket(cfg.AgentRemovalRate, start)

	type proposal struct {
		id   string
		gone bool
	}
	var queue []proposal
	queued := map[proposal]bool{}
	enqueue := func(p proposal) {
		if !queued[p] {
			queued[p] = true
			queue = append(queue, p)
		}
	}
	// missing holds the agents absent from gossip at the previous sweep.
	missing := s.agentsMissingFromGossip()
	sweep := time.NewTicker(cfg.LivenessGrace)
	defer sweep.Stop()
	tick := time.NewTicker(livenessTick)
	defer tick.Stop()
	goneTimeout := cfg.AgentGoneTimeout

	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Member.Tags.Role != gossip.RoleAgent || ev.Member.Tags.ID == "" {
				continue
			}
			switch ev.Type {
			case gossip.EventFailed, gossip.EventLeave:
				if a, ok := m.State().Agent(ev.Member.Tags.ID); ok && a.GetState() == agorav1.AgentState_AGENT_STATE_ACTIVE {
					log.Info("agent left the gossip pool", "agent", a.GetId(), "event", ev.Type.String())
					enqueue(proposal{id: a.GetId()})
				}
			}
		case <-sweep.C:
			now := s.agentsMissingFromGossip()
			for id := range now {
				if missing[id] {
					enqueue(proposal{id: id})
				}
			}
			missing = now
		case <-tick.C:
			now := time.Now()
			for _, a := range m.State().Agents() {
				if a.GetState() != agorav1.AgentState_AGENT_STATE_UNREACHABLE {
					continue
				}
				since := start
				if ss := a.GetStateSince(); ss != nil && ss.AsTime().After(since) {
					since = ss.AsTime()
				}
				if now.Sub(since) >= goneTimeout {
					enqueue(proposal{id: a.GetId(), gone: true})
				}
			}
		}
		// Propose what the bucket allows; the rest waits for the next tick.
		alive := map[string]bool(nil)
		for len(queue) > 0 && ctx.Err() == nil {
			p := queue[0]
			st := m.State()
			a, ok := st.Agent(p.id)
			want := agorav1.AgentState_AGENT_STATE_ACTIVE
			if p.gone {
				want = agorav1.AgentState_AGENT_STATE_UNREACHABLE
			}
			if !ok || a.GetState() != want {
				queue = queue[1:]
				delete(queued, p)
				continue
			}
			if !p.gone {
				if alive == nil {
					alive = s.agentsAliveInGossip()
				}
				if alive[p.id] { // it came back before we got to it
					queue = queue[1:]
					delete(queued, p)
					continue
				}
			}
			okTake, _ := bucket.take(time.Now())
			if !okTake {
				break
			}
			var err error
			if p.gone {
				_, err = m.Apply(ctx, fsm.CmdAgentGone, &agorav1.AgentGoneCommand{AgentId: p.id, Now: timestamppb.New(m.Now())})
			} else {
				_, err = m.Apply(ctx, fsm.CmdAgentUnreachable, &agorav1.AgentUnreachableCommand{AgentId: p.id, Now: timestamppb.New(m.Now())})
			}
			if err != nil {
				if ctx.Err() != nil || connect.CodeOf(err) == connect.CodeUnavailable {
					break // not (or no longer) leader, or overloaded: retried at the next tick
				}
				log.Warn("liveness proposal refused", "agent", p.id, "gone", p.gone, "err", err)
			}
			queue = queue[1:]
			delete(queued, p)
			if err == nil {
				if p.gone {
					log.Warn("agent marked gone", "agent", p.id, "after", goneTimeout)
				} else {
					log.Warn("agent marked unreachable", "agent", p.id)
				}
			}
		}
	}
}

// agentsAliveInGossip returns the ids of agents alive in the gossip pool.
func (s *agentServer) agentsAliveInGossip() map[string]bool {
	out := map[string]bool{}
	pool := s.m.Gossip()
	if pool == nil {
		return out
	}
	for _, mem := range pool.Members() {
		if mem.Tags.Role == gossip.RoleAgent && mem.Status == "alive" && mem.Tags.ID != "" {
			out[mem.Tags.ID] = true
		}
	}
	return out
}

// agentsMissingFromGossip returns the ACTIVE agents not alive in gossip.
func (s *agentServer) agentsMissingFromGossip() map[string]bool {
	alive := s.agentsAliveInGossip()
	out := map[string]bool{}
	for _, a := range s.m.State().Agents() {
		if a.GetState() == agorav1.AgentState_AGENT_STATE_ACTIVE && !alive[a.GetId()] {
			out[a.GetId()] = true
		}
	}
	return out
}
