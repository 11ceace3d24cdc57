package master

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/fsm"
	"github.com/agora-sched/agora/gossip"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/service/scheduler"
)

// leader owns everything that runs only while this master leads. The
// leader loop (raft.go) calls run once per term, after the term's Barrier:
// establish starts the leader-only tasks (master reconciliation,
// allocation, offer/filter/failover expiry, agent liveness, drain
// deadlines); when
// leadership or the master ends, every task is stopped and revoke closes
// every framework stream with a redirect to the new leader. The RPC
// handler types start no goroutines of their own: they read the
// leadership context (Context) where a request must not outlive it.
//
// Unacknowledged status updates are redelivered by each framework stream
// (serveStream), which exists only on the leader and ends with it.
type leader struct {
	m *Master
	// alloc is the allocator's trigger: marked dirty on every replica by
	// the FSM hook, waited on by the allocation task.
	alloc *allocState

	mu  sync.Mutex
	ctx context.Context // the current leadership; nil when not leading
	// extra are tasks tests add (before Start) beside the built-in ones.
	extra []leaderTask
	// services is the service scheduler's host while it runs (services.go).
	services *scheduler.Host

	// hints are agent-gone hints for the liveness task (agent_gone.go).
	hints     chan string
	hintStats hintCounters
}

// leaderTask is one piece of leader-only work: run returns promptly once
// ctx is done.
type leaderTask struct {
	name string
	run  func(ctx context.Context)
}

func newLeader(m *Master) *leader {
	return &leader{m: m, alloc: newAllocState(), hints: make(chan string, hintQueue)}
}

// tasks lists the leader-only work, in start order.
func (l *leader) tasks() []leaderTask {
	l.mu.Lock()
	extra := l.extra
	l.mu.Unlock()
	return append([]leaderTask{
		{name: "reconcile-masters", run: l.m.reconcileLoop},
		{name: "allocation", run: l.runAllocation},
		{name: "expiry", run: l.runExpiry},
		{name: "preemption", run: l.runPreemption},
		{name: "liveness", run: l.runLiveness},
		{name: "drain", run: l.runDrainDeadlines},
		{name: "services", run: l.runServices},
		{name: "autopilot", run: l.runAutopilot},
	}, extra...)
}

// run holds one term of leadership: establish, then wait for every task to
// end (ctx is cancelled on leadership loss or shutdown), then revoke.
func (l *leader) run(ctx context.Context, term uint64) {
	tasks := l.establish(ctx, term)
	var wg sync.WaitGroup
	for _, t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.run(ctx)
		}()
	}
	wg.Wait()
	l.revoke()
}

// establish publishes the leadership context and returns the tasks to run.
func (l *leader) establish(ctx context.Context, term uint64) []leaderTask {
	l.mu.Lock()
	l.ctx = ctx
	l.mu.Unlock()
	l.alloc.markDirty() // a new leader allocates at once
	l.m.log.Info("leadership established", "term", term, "index", l.m.raft.AppliedIndex())
	return l.tasks()
}

// revoke forgets the leadership context and closes every framework stream
// with the new leader's address.
func (l *leader) revoke() {
	l.mu.Lock()
	l.ctx = nil
	l.mu.Unlock()
	l.m.schedSrv.broker.closeAll(func() *streamEnd { return &streamEnd{leaderLost: true} })
}

// Context returns the context of the current leadership, nil when this
// master does not lead (or its Barrier is not done yet). It is cancelled
// when leadership ends.
func (l *leader) Context() context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ctx
}

// --- agent liveness ---

// livenessTick is how often the liveness task sweeps and retries
// proposals that could not be made.
const livenessTick = 250 * time.Millisecond

// probesToUnreachable is how many direct probes in a row an agent that
// gossip gave up on must miss before it is marked unreachable.
const probesToUnreachable = 2

// runLiveness drives a livenessTracker: it feeds it gossip events,
// agent-gone hints (agent_gone.go) and the verdicts of the direct probes
// it asks for, sweeps it on a ticker and proposes what it returns
// (AgentUnreachable, AgentGone).
func (l *leader) runLiveness(ctx context.Context) {
	m := l.m
	cfg := m.Config()
	log := m.log.With("component", "liveness")
	events, cancel := m.SubscribeGossip()
	defer cancel()
	tr := newLivenessTracker(livenessConfig{
		Grace:             cfg.LivenessGrace,
		GoneTimeout:       cfg.AgentGoneTimeout,
		ReregisterTimeout: cfg.AgentReregisterTimeout,
		RemovalRate:       cfg.AgentRemovalRate,
		Probes:            probesToUnreachable,
		HintInterval:      hintInterval,
		HintRate:          hintRate,
		HintBurst:         hintBurst,
	}, m.Now())
	probed := make(chan livenessEvent)
	probe := func(ids []string) {
		for _, id := range ids {
			hinted := tr.Hinted(id)
			go func() {
				ev := l.probeAgent(ctx, id, hinted, log)
				if ev.Kind == probeAnswered {
					l.hintStats.answered.Add(1)
				} else {
					l.hintStats.missed.Add(1)
				}
				select {
				case probed <- ev:
				case <-ctx.Done():
				}
			}()
		}
	}
	tick := time.NewTicker(livenessTick)
	defer tick.Stop()
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
			kind := gossipFailed
			switch ev.Type {
			case gossip.EventFailed:
			case gossip.EventLeave:
				kind = gossipLeft
			default:
				continue
			}
			a, ok := m.State().Agent(ev.Member.Tags.ID)
			if !ok {
				continue
			}
			switch a.GetState() {
			case agorav1.AgentState_AGENT_STATE_ACTIVE:
				log.Info("agent left the gossip pool", "agent", a.GetId(), "event", ev.Type.String())
			case agorav1.AgentState_AGENT_STATE_RESTARTING:
				log.Info("agent stopped for a restart left the gossip pool; waiting for it to register again",
					"agent", a.GetId(), "event", ev.Type.String(), "timeout", cfg.AgentReregisterTimeout)
			}
			probe(tr.Observe(livenessEvent{Kind: kind, Agent: a.GetId(), State: a.GetState()}))
		case id := <-l.hints:
			probe(l.takeHint(tr, id))
		case ev := <-probed:
			probe(tr.Observe(ev))
		case <-tick.C:
			probe(tr.Sweep(agentViews(m.State()), l.agentsAliveInGossip(), m.Now()))
		}
		if !tr.Queued() {
			continue // nothing to propose: no need to list the agents
		}
		due := tr.Due(agentViews(m.State()), l.agentsAliveInGossip(), m.Now())
		for i, p := range due {
			if !l.propose(ctx, p, log) {
				tr.Retry(due[i:])
				break
			}
		}
	}
}

// propose makes one liveness proposal. It returns false when the proposal
// should be retried later (not or no longer leader, overloaded).
func (l *leader) propose(ctx context.Context, p livenessProposal, log *slog.Logger) bool {
	m := l.m
	var err error
	if p.Gone {
		_, err = m.Apply(ctx, fsm.CmdAgentGone, &agorav1.AgentGoneCommand{AgentId: p.Agent, Now: timestamppb.New(m.Now())})
	} else {
		_, err = m.Apply(ctx, fsm.CmdAgentUnreachable, &agorav1.AgentUnreachableCommand{AgentId: p.Agent, Now: timestamppb.New(m.Now())})
	}
	switch {
	case err == nil && p.Gone:
		log.Warn("agent marked gone", "agent", p.Agent, "after", m.Config().AgentGoneTimeout)
	case err == nil && p.Restarted:
		log.Warn("agent stopped for a restart and did not register again in time; marked unreachable",
			"agent", p.Agent, "reregister_timeout", m.Config().AgentReregisterTimeout)
	case err == nil:
		// hinted: found by a master seeing its connection close (agent_gone.go), not by gossip.
		log.Warn("agent marked unreachable", "agent", p.Agent, "hinted", p.Direct)
	case ctx.Err() != nil || connect.CodeOf(err) == connect.CodeUnavailable:
		return false
	default:
		log.Warn("liveness proposal refused", "agent", p.Agent, "gone", p.Gone, "err", err)
	}
	return true
}

// probeTimeout bounds one direct probe attempt of an agent by profile.
func probeTimeout(p gossip.Profile) time.Duration {
	if p == gossip.ProfileLocal {
		return 300 * time.Millisecond
	}
	return time.Second
}

// probeAgent confirms a gossip verdict or checks a hint before it becomes
// a state change: gossip's view can lag behind the network (a healed
// partition, a leader that just won, serf reconnecting failed members only
// periodically), so the leader pings the agent's gossip endpoint itself.
// An agent that answers is not marked; if the pool still counts it failed,
// the leader joins it again so gossip catches up. A hinted agent (its
// connection to a master closed; gossip has said nothing) is probed by
// probeHinted instead.
func (l *leader) probeAgent(ctx context.Context, id string, hinted bool, log *slog.Logger) livenessEvent {
	missed := livenessEvent{Kind: probeMissed, Agent: id}
	pool := l.m.Gossip()
	if pool == nil {
		return missed
	}
	var name, addr string
	var status gossip.Status
	if a, ok := l.m.State().Agent(id); ok {
		addr = a.GetGossipAddress()
	}
	for _, mem := range pool.Members() {
		if mem.Tags.Role == gossip.RoleAgent && mem.Tags.ID == id {
			name, status = mem.Name, mem.Status
			if addr == "" {
				addr = mem.Addr
			}
		}
	}
	if addr == "" {
		return missed
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout(l.m.Config().GossipProfile))
	defer cancel()
	if hinted {
		return probeHinted(pctx, id, addr, log, dialProbe)
	}
	rtt, err := pool.Ping(pctx, name, addr)
	if err != nil {
		log.Info("agent missing from gossip does not answer a direct probe", "agent", id, "gossip", addr, "err", err)
		return missed
	}
	log.Info("agent missing from gossip answers a direct probe; not marking it unreachable",
		"agent", id, "gossip", addr, "rtt", rtt, "gossip_status", status)
	if status != gossip.StatusAlive {
		if _, err := pool.Join([]string{addr}); err != nil {
			log.Info("rejoining a probed agent failed", "agent", id, "err", err)
		}
	}
	return livenessEvent{Kind: probeAnswered, Agent: id}
}

// agentsAliveInGossip returns the ids of agents alive in the gossip pool.
func (l *leader) agentsAliveInGossip() map[string]bool {
	out := map[string]bool{}
	pool := l.m.Gossip()
	if pool == nil {
		return out
	}
	for _, mem := range pool.Members() {
		if mem.Tags.Role == gossip.RoleAgent && mem.Status == gossip.StatusAlive && mem.Tags.ID != "" {
			out[mem.Tags.ID] = true
		}
	}
	return out
}
