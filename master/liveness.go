package master

import (
	"context"
	"log/slog"
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
// Before an agent that gossip reports failed (or that stays missing from
// gossip for two sweeps) is marked, the leader probes it directly
// (probeAgent); one that answers is left ACTIVE. A graceful leave needs no
// confirmation.
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
	// An agent gossip gives up on is probed directly before it is marked:
	// probing holds the agents being probed, probed their verdicts.
	probing := map[string]bool{}
	probed := make(chan probeResult)
	suspect := func(id string) {
		if probing[id] {
			return
		}
		probing[id] = true
		go func() {
			r := s.probeAgent(ctx, id, log)
			select {
			case probed <- r:
			case <-ctx.Done():
			}
		}()
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
					if ev.Type == gossip.EventLeave {
						enqueue(proposal{id: a.GetId()}) // it said goodbye itself
					} else {
						suspect(a.GetId())
					}
				}
			}
		case r := <-probed:
			delete(probing, r.id)
			if !r.alive {
				enqueue(proposal{id: r.id})
			}
		case <-sweep.C:
			now := s.agentsMissingFromGossip()
			for id := range now {
				if missing[id] {
					suspect(id)
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

// probeResult is the verdict of a direct probe of one agent.
type probeResult struct {
	id    string
	alive bool
}

// probeTimeout bounds one direct probe attempt of an agent by profile.
func probeTimeout(p gossip.Profile) time.Duration {
	if p == gossip.ProfileLocal {
		return 300 * time.Millisecond
	}
	return time.Second
}

// probeAgent confirms a gossip verdict before it becomes a state change:
// gossip's view can lag behind the network (a healed partition, a leader
// that just won, serf reconnecting failed members only periodically), so
// the leader pings the agent's gossip endpoint itself, twice. An agent
// that answers is not marked; if the pool still counts it failed, the
// leader joins it again so gossip catches up.
func (s *agentServer) probeAgent(ctx context.Context, id string, log *slog.Logger) probeResult {
	pool := s.m.Gossip()
	if pool == nil {
		return probeResult{id: id}
	}
	var name, addr, status string
	if a, ok := s.m.State().Agent(id); ok {
		addr = a.GetGossipAddress()
	}
	for _, mem := range pool.Members() {
		if mem.Tags.Role == gossip.RoleAgent && mem.Tags.ID == id {
			name, status = mem.Name, string(mem.Status)
			if addr == "" {
				addr = mem.Addr
			}
		}
	}
	if addr == "" {
		return probeResult{id: id}
	}
	pctx, cancel := context.WithTimeout(ctx, 2*probeTimeout(s.m.Config().GossipProfile))
	defer cancel()
	rtt, err := pool.Ping(pctx, name, addr)
	if err != nil {
		log.Info("agent missing from gossip does not answer a direct probe either", "agent", id, "gossip", addr, "err", err)
		return probeResult{id: id}
	}
	log.Info("agent missing from gossip answers a direct probe; not marking it unreachable",
		"agent", id, "gossip", addr, "rtt", rtt, "gossip_status", status)
	if status != "alive" {
		if _, err := pool.Join([]string{addr}); err != nil {
			log.Info("rejoining a probed agent failed", "agent", id, "err", err)
		}
	}
	return probeResult{id: id, alive: true}
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
