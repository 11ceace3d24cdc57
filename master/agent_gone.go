package master

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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
// Every agent holds a GetAssignments long poll on some master, over a
// connection it keeps between polls. When the agent's process dies, its
// kernel closes its connections, and the master it polls sees the
// connection close at once (http.Server.ConnState), whether a poll was
// open on it or the agent was between two polls. That is only a hint,
// never a verdict:
//
//  1. The master whose connection with a polling agent closed (agentConns)
//     waits pollSettle; an agent that polls this master again meanwhile
//     (over a new connection: its client dropped the old one) is no hint.
//     A poll that ends (answered, its wait over, cancelled by the agent)
//     on a connection that stays is no hint, nor is a connection that
//     closes because this master stops.
//  2. The hint goes to the leader: into its liveness task when this master
//     leads, else by a small internal RPC (AgentGoneProcedure) to the
//     leader, which answers a follower NotLeader and drops the hint.
//  3. The leader's liveness tracker (livenessTracker.Hint) probes the agent
//     at once (probeHinted: a TCP connection to its gossip endpoint
//     accepted within the probe timeout answers; refused or silent for all
//     of it, the probe misses), under the rule of a gossip-started probe:
//     probesToUnreachable misses in a row make it UNREACHABLE. An agent
//     that answers is left alone. Hints are rate limited per agent and
//     overall.
//
// A hint lost on the way (a follower that knows no leader, a failover, a
// full queue) costs only speed: gossip's failure detector still finds the
// agent, as it finds partitioned agents, whose connections do not break.

// pollSettle is how long a master waits after a polling agent's
// connection closed before it reports the agent: an agent that polls again
// within it is alive.
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
// bursts of hintBurst (a master restart or a network blip cuts many
// connections at once; the gossip path covers what the limits drop).
const (
	hintInterval = 5 * time.Second
	hintRate     = 50
	hintBurst    = 100
)

// hintQueue is how many hints the leader's liveness task may have
// waiting; maxHintForwards, how many a follower may be passing to the
// leader at once (a network blip can close thousands of agents'
// connections together: the rest is left to gossip, counted as dropped).
const (
	hintQueue       = 256
	maxHintForwards = 32
)

// pollWatch counts each agent's long polls on this master, so that a
// closed connection can tell whether its agent polled again since.
type pollWatch struct {
	mu    sync.Mutex
	polls map[string]*agentPolls
	// repolled counts closed connections whose agent polled again in time.
	repolled atomic.Int64
}

// agentPolls is one agent's polls on this master.
type agentPolls struct {
	begun   uint64 // polls begun, ever (while the entry lives)
	open    int    // polls in progress
	settles int    // closed connections in their settle wait
}

func (w *pollWatch) entry(id string) *agentPolls {
	if w.polls == nil {
		w.polls = map[string]*agentPolls{}
	}
	p := w.polls[id]
	if p == nil {
		p = &agentPolls{}
		w.polls[id] = p
	}
	return p
}

// begin records a poll of agent id.
func (w *pollWatch) begin(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.entry(id)
	p.begun++
	p.open++
}

// end records the end of a poll.
func (w *pollWatch) end(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.polls[id]
	p.open--
	w.prune(id, p)
}

// settle starts a settle wait for agent id (its connection closed) and
// returns the number of polls it had begun; call settled after.
func (w *pollWatch) settle(id string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.entry(id)
	p.settles++
	return p.begun
}

// settled ends a settle wait begun at n polls. It reports whether the
// agent has no poll open and began none since.
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

// agentConns maps the HTTP connections over which agents polled to their
// agents (usually one per connection).
type agentConns struct {
	mu    sync.Mutex
	conns map[net.Conn]*connAgents
}

// connAgents is one HTTP connection as its requests see it (in their
// context, from http.Server.ConnContext).
type connAgents struct {
	c      net.Conn
	mu     sync.Mutex
	agents []string
}

type connAgentsKey struct{}

// connContext is the HTTP server's ConnContext: it gives every connection
// a place where GetAssignments notes the agents polling over it.
func (m *Master) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connAgentsKey{}, &connAgents{c: c})
}

// connState is the HTTP server's ConnState: when a connection over which
// agents polled closes, each of them is reported (agentConnClosed).
func (m *Master) connState(c net.Conn, st http.ConnState) {
	if st != http.StateClosed && st != http.StateHijacked {
		return
	}
	a := &m.agentSrv.conns
	a.mu.Lock()
	ca := a.conns[c]
	delete(a.conns, c)
	a.mu.Unlock()
	if ca == nil || m.stopping.Load() {
		return
	}
	ca.mu.Lock()
	ids := ca.agents
	ca.mu.Unlock()
	for _, id := range ids {
		n := m.agentSrv.polls.settle(id)
		time.AfterFunc(pollSettle, func() {
			if !m.agentSrv.polls.settled(id, n) || m.stopping.Load() {
				return
			}
			// Simulated agents have no process to probe (liveness is off
			// for them); agents not up have nothing left to detect.
			if a, ok := m.State().Agent(id); ok && !a.GetSimulated() && agentUp(a.GetState()) {
				m.hintAgentGone(id)
			}
		})
	}
}

// pollBegins records agent id's poll, and the connection it came over.
func (s *agentServer) pollBegins(ctx context.Context, id string) {
	s.polls.begin(id)
	ca, ok := ctx.Value(connAgentsKey{}).(*connAgents)
	if !ok {
		return
	}
	ca.mu.Lock()
	known := slices.Contains(ca.agents, id)
	if !known {
		ca.agents = append(ca.agents, id)
	}
	ca.mu.Unlock()
	if known {
		return
	}
	s.conns.mu.Lock()
	if s.conns.conns == nil {
		s.conns.conns = map[net.Conn]*connAgents{}
	}
	s.conns.conns[ca.c] = ca
	s.conns.mu.Unlock()
}

// hintAgentGone passes a hint that agent id may be gone to the leader's
// liveness task: directly when we lead, by AgentGoneProcedure otherwise.
func (m *Master) hintAgentGone(id string) {
	if m.leader.hint(id) {
		return
	}
	leaderID, url := m.Leader()
	log := m.log.With("component", "liveness", "agent", id)
	if leaderID == "" || leaderID == m.cfg.ID || url == "" {
		log.Debug("agent's connection closed; no leader to tell", "leader", leaderID)
		return
	}
	st := &m.leader.hintStats
	if st.forwarding.Add(1) > maxHintForwards {
		st.forwarding.Add(-1)
		st.dropped.Add(1)
		log.Debug("too many agent-gone hints on their way to the leader; left to gossip")
		return
	}
	defer st.forwarding.Add(-1)
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
	st.forwarded.Add(1)
	log.Debug("agent's connection closed; told the leader", "leader", leaderID)
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

// hintRedial is how often probeHinted dials a refusing endpoint again.
const hintRedial = 50 * time.Millisecond

// probeHinted probes a hinted agent at its gossip endpoint addr (memberlist
// listens on TCP and UDP at the same port) until ctx, the probe timeout,
// ends: a TCP connection accepted answers (the process is there; whether
// it is healthy is for gossip's failure detector to judge, with its
// indirect probes and suspicion, not for a couple of UDP pings on an
// overloaded machine). Refused or silent until the end, it misses. A
// refused dial is tried again every hintRedial rather than missing at
// once, so that a miss means the same as a silent probe's, absent for a
// whole probe timeout: an agent restarted at once by its supervisor, on
// the same address, is not marked (its tasks keep running).
func probeHinted(ctx context.Context, id, addr string, log *slog.Logger, dial func(context.Context, string) error) livenessEvent {
	var err error
	for {
		if err = dial(ctx, addr); err == nil {
			log.Info("agent whose connection to a master closed accepts connections; not marking it unreachable", "agent", id, "gossip", addr)
			return livenessEvent{Kind: probeAnswered, Agent: id}
		}
		t := time.NewTimer(hintRedial)
		select {
		case <-ctx.Done():
			t.Stop()
			log.Info("agent whose connection to a master closed does not accept connections", "agent", id, "gossip", addr,
				"refused", errors.Is(err, syscall.ECONNREFUSED), "err", err)
			return livenessEvent{Kind: probeMissed, Agent: id}
		case <-t.C:
		}
	}
}

// hintCounters count what the leader's liveness task made of hints (for
// logs and tests): by tracker outcome, and the verdicts of the probes
// they started.
type hintCounters struct {
	received, probed, ignored, limited, dropped atomic.Int64
	// forwarded counts hints this master passed to a leader; forwarding,
	// those on their way.
	forwarded  atomic.Int64
	forwarding atomic.Int32
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
		m.log.Info("agent's connection to a master closed; probing it now", "component", "liveness", "agent", id)
	case hintLimited:
		l.hintStats.limited.Add(1)
		m.log.Debug("agent-gone hint over its rate; left to gossip", "component", "liveness", "agent", id)
	default:
		l.hintStats.ignored.Add(1)
	}
	return ids
}
