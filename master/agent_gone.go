package master

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/agora-sched/agora/fsm"
)

// Agent-gone hints: fast detection of a dead agent process, without
// waiting for gossip (issue 13; the way a Mesos master checks an agent as
// soon as its connection breaks).
//
// Every agent holds a GetAssignments long poll on some master. When the
// agent's process dies, its kernel closes its connections and the master
// serving the poll sees the request's context cancelled at once. That is
// only a hint, never a verdict:
//
//  1. The master that saw the poll cut off (pollEnded) waits pollSettle;
//     an agent that polls again on it meanwhile (it cancelled the poll
//     itself, to register again or switch masters) is no hint. A poll that
//     ends normally (answered, its wait over, a deadline) or that ends
//     because this master stops is no hint either.
//  2. The hint goes to the leader: into its liveness task when this master
//     leads, else by a small internal RPC (AgentGoneProcedure) to the
//     leader, which answers a follower NotLeader and drops the hint.
//  3. The leader's liveness tracker (livenessTracker.Hint) probes the agent
//     directly at once, under the rules of a gossip-started probe
//     (probesToUnreachable unanswered probes in a row), rate limited per
//     agent and overall. Only that verdict proposes UNREACHABLE; an agent
//     that answers is left alone.
//
// A hint lost on the way (a follower that knows no leader, a failover, a
// full queue) costs only speed: gossip's failure detector still finds the
// agent, as it finds partitioned agents, whose connections do not break.

// pollSettle is how long a master waits after an agent's long poll was cut
// off before it reports the agent: an agent that re-polls within it is
// alive.
const pollSettle = 100 * time.Millisecond

// AgentGoneProcedure is the internal RPC by which a follower passes an
// agent-gone hint to the leader: a StringValue holding the agent id,
// answered with Empty. With TLS only masters may call it; without, anyone
// who reaches the HTTP port can, which costs at most a rate-limited probe
// of a registered agent (a hint changes no state by itself).
const AgentGoneProcedure = "/agora.internal.v1.Liveness/AgentGone"

// hintForwardTimeout bounds a follower's call passing a hint to the leader.
const hintForwardTimeout = 2 * time.Second

// Leader-side rate limits of hints (livenessConfig.Hint*): one probe per
// agent per hintInterval, and hintRate per second over all agents with
// bursts of hintBurst (a master restart or a network blip cuts many polls
// at once; the gossip path covers what the limit drops).
const (
	hintInterval = 5 * time.Second
	hintRate     = 50
	hintBurst    = 100
)

// hintQueue is how many hints the leader's liveness task may have waiting.
const hintQueue = 256

// agentGoneHinter is what pollEnded needs of a master beyond backend. The
// handler tests' fake backend does not implement it: no hints there.
type agentGoneHinter interface {
	// hintAgentGone passes a hint to the leader (ourselves or by RPC).
	hintAgentGone(id string)
	// stoppingNow reports whether the master has begun to stop.
	stoppingNow() bool
}

// pollWatch counts each agent's long polls on this master, so that a poll
// cut off can tell whether its agent polled again since.
type pollWatch struct {
	mu    sync.Mutex
	polls map[string]*agentPolls
	// repolled counts cut-off polls whose agent polled again in time.
	repolled atomic.Int64
}

// agentPolls is one agent's polls on this master.
type agentPolls struct {
	begun   uint64 // polls begun, ever (while the entry lives)
	open    int    // polls in progress
	settles int    // cut-off polls in their settle wait
}

// begin records a poll of agent id and returns its number.
func (w *pollWatch) begin(id string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.polls == nil {
		w.polls = map[string]*agentPolls{}
	}
	p := w.polls[id]
	if p == nil {
		p = &agentPolls{}
		w.polls[id] = p
	}
	p.begun++
	p.open++
	return p.begun
}

// end records the end of a poll; settle: it was cut off and waits to
// settle (call settled after).
func (w *pollWatch) end(id string, settle bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.polls[id]
	p.open--
	if settle {
		p.settles++
	}
	w.prune(id, p)
}

// settled ends a cut-off poll's settle wait. It reports whether the agent
// has no poll open and began none after poll number n.
func (w *pollWatch) settled(id string, n uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.polls[id]
	p.settles--
	quiet := p.open == 0 && p.begun == n
	if !quiet {
		w.repolled.Add(1)
	}
	w.prune(id, p)
	return quiet
}

func (w *pollWatch) prune(id string, p *agentPolls) {
	if p.open == 0 && p.settles == 0 {
		delete(w.polls, id)
	}
}

// pollEnded is called as an agent's GetAssignments long poll ends; n is
// the number pollWatch.begin gave it and ctx the call's context. When the
// caller went away (ctx cancelled) and the agent does not poll again
// within pollSettle, the agent is reported to the leader as possibly gone.
func (s *agentServer) pollEnded(ctx context.Context, id string, n uint64) {
	h, ok := s.m.(agentGoneHinter)
	if !ok || !errors.Is(ctx.Err(), context.Canceled) || h.stoppingNow() {
		s.polls.end(id, false)
		return
	}
	s.polls.end(id, true)
	t := time.NewTimer(pollSettle)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.m.Done():
	}
	if s.polls.settled(id, n) && !h.stoppingNow() {
		h.hintAgentGone(id)
	}
}

// stoppingNow reports whether the master has begun to stop.
func (m *Master) stoppingNow() bool { return m.stopping.Load() }

// hintAgentGone passes a hint that agent id may be gone to the leader's
// liveness task: directly when we lead, by AgentGoneProcedure otherwise.
func (m *Master) hintAgentGone(id string) {
	if m.leader.hint(id) {
		return
	}
	leaderID, url := m.Leader()
	log := m.log.With("component", "liveness", "agent", id)
	if leaderID == "" || leaderID == m.cfg.ID || url == "" {
		log.Debug("agent's long poll was cut off; no leader to tell", "leader", leaderID)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), hintForwardTimeout)
	defer cancel()
	go func() {
		select {
		case <-m.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	c := connect.NewClient[wrapperspb.StringValue, emptypb.Empty](m.peerHTTPClient(), url+AgentGoneProcedure)
	if _, err := c.CallUnary(ctx, connect.NewRequest(wrapperspb.String(id))); err != nil {
		log.Debug("passing an agent-gone hint to the leader failed", "leader", leaderID, "err", err)
		return
	}
	m.leader.hintStats.forwarded.Add(1)
	log.Debug("agent's long poll was cut off; told the leader", "leader", leaderID)
}

// agentGoneHandler serves AgentGoneProcedure: the leader takes a
// follower's hint; a follower answers NotLeader.
func (m *Master) agentGoneHandler(opts ...connect.HandlerOption) http.Handler {
	return connect.NewUnaryHandler(AgentGoneProcedure, func(_ context.Context, req *connect.Request[wrapperspb.StringValue]) (*connect.Response[emptypb.Empty], error) {
		id := req.Msg.GetValue()
		if !fsm.ValidAgentID(id) {
			return nil, invalid("invalid agent id %q", id)
		}
		if !m.leader.hint(id) {
			return nil, m.NotLeaderError()
		}
		return connect.NewResponse(&emptypb.Empty{}), nil
	}, opts...)
}

// hintCounters count what the leader's liveness task made of hints (for
// logs and tests): by tracker outcome, and the verdicts of the probes
// they started.
type hintCounters struct {
	received, probed, ignored, limited, dropped atomic.Int64
	// forwarded counts hints this master passed to a leader.
	forwarded atomic.Int64
	// answered and missed count the verdicts of all direct probes.
	answered, missed atomic.Int64
}

// hint queues a hint for the liveness task. It reports false when this
// master does not lead (the hint is not taken); a hint that finds the
// queue full is dropped (counted) and reported taken.
func (l *leader) hint(id string) bool {
	if l.Context() == nil {
		return false
	}
	l.hintStats.received.Add(1)
	select {
	case l.hints <- id:
	default:
		l.hintStats.dropped.Add(1)
	}
	return true
}

// takeHint hands one hint to the tracker and counts the outcome.
func (l *leader) takeHint(tr *livenessTracker, id string) []string {
	m := l.m
	a, ok := m.State().Agent(id)
	if !ok || a.GetSimulated() {
		// Simulated agents are no gossip members and have no endpoint to
		// probe: liveness is off for them (agentViews).
		l.hintStats.ignored.Add(1)
		return nil
	}
	ids, outcome := tr.Hint(id, a.GetState(), m.Now())
	switch outcome {
	case hintProbed:
		l.hintStats.probed.Add(1)
		m.log.Info("agent's long poll was cut off; probing it now", "component", "liveness", "agent", id)
	case hintLimited:
		l.hintStats.limited.Add(1)
		m.log.Debug("agent-gone hint over its rate; left to gossip", "component", "liveness", "agent", id)
	default:
		l.hintStats.ignored.Add(1)
	}
	return ids
}
