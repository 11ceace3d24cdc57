package master

import (
	"time"

	"github.com/agora-sched/agora/fsm"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// tokenBucket paces work: rate tokens per second, bursts of burst. It reads
// no clock: every call is given the time.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

// newTokenBucket returns a full bucket.
func newTokenBucket(rate, burst float64, now time.Time) *tokenBucket {
	return &tokenBucket{rate: rate, burst: burst, tokens: burst, last: now}
}

// refill adds the tokens earned since the last call.
func (b *tokenBucket) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// wait is how long from now until a token is available (0 when one is).
func (b *tokenBucket) wait(now time.Time) time.Duration {
	b.refill(now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// spend takes one token, available or not (the bucket may go negative,
// which delays the next one).
func (b *tokenBucket) spend() { b.tokens-- }

// take spends a token if one is available now.
func (b *tokenBucket) take(now time.Time) bool {
	if b.wait(now) > 0 {
		return false
	}
	b.spend()
	return true
}

// livenessConfig configures a liveness tracker.
type livenessConfig struct {
	// Grace delays decisions about agents missing from gossip after
	// leadership begins, and spaces the sweeps that find them.
	Grace time.Duration
	// GoneTimeout is how long an agent stays UNREACHABLE before GONE,
	// counted from max(its state_since, the start of leadership).
	GoneTimeout time.Duration
	// ReregisterTimeout is how long an agent that stopped for a restart
	// (RESTARTING) may stay away before it is proposed UNREACHABLE,
	// counted from max(its state_since, the start of leadership).
	ReregisterTimeout time.Duration
	// RemovalRate caps liveness proposals per second (burst max(1, rate)).
	RemovalRate float64
	// Probes is how many direct probes in a row must fail before an agent
	// is marked unreachable.
	Probes int
	// HintInterval is the least time between two probes of one agent
	// started by connection-drop hints (Hint); HintRate and HintBurst cap
	// such probes over all agents (a token bucket). Zero HintRate turns
	// hints off.
	HintInterval time.Duration
	HintRate     float64
	HintBurst    float64
}

// agentView is what liveness needs to know of an agent in the state.
type agentView struct {
	ID    string
	State agorav1.AgentState
	Since time.Time
}

// agentViews extracts the liveness view of the agents of st, in id order.
// Simulated agents (package simagent) are left out: they are no gossip
// members, so gossip-based liveness is off for them.
func agentViews(st *fsm.State) []agentView {
	var out []agentView
	st.EachAgent(func(a *agorav1.Agent) {
		if a.GetSimulated() {
			return
		}
		v := agentView{ID: a.GetId(), State: a.GetState()}
		if ss := a.GetStateSince(); ss != nil {
			v.Since = ss.AsTime()
		}
		out = append(out, v)
	})
	return out
}

// livenessEventKind is what happened to an agent.
type livenessEventKind int

const (
	// gossipFailed: gossip declared the agent failed.
	gossipFailed livenessEventKind = iota
	// gossipLeft: the agent left the gossip pool (said so in gossip).
	gossipLeft
	// probeAnswered: a direct probe of the agent was answered.
	probeAnswered
	// probeMissed: a direct probe of the agent was not answered.
	probeMissed
)

// hintOutcome is what the tracker made of a connection-drop hint.
type hintOutcome int

const (
	// hintProbed: the agent is probed now.
	hintProbed hintOutcome = iota
	// hintIgnored: the agent is not up (unknown, restarting, unreachable,
	// gone) or a probe of it is in flight already.
	hintIgnored
	// hintLimited: the agent was hinted less than HintInterval ago, or the
	// hints of all agents are over their rate.
	hintLimited
)

// livenessEvent is one input to the tracker.
type livenessEvent struct {
	Kind  livenessEventKind
	Agent string
	// State is the agent's state in the replicated state when it happened.
	State agorav1.AgentState
}

// livenessProposal is a state change the leader should propose.
type livenessProposal struct {
	Agent string
	// Direct: the probes were started by a connection-drop hint, so the
	// verdict stands whatever gossip says (gossip still counts a freshly
	// killed agent alive for seconds: that lag is what hints skip).
	Direct bool
	// Gone proposes AgentGone (from UNREACHABLE); otherwise
	// AgentUnreachable (from ACTIVE, or from RESTARTING with Restarted).
	Gone bool
	// Restarted: the agent said it stops for a restart and did not
	// register again within the re-registration timeout.
	Restarted bool
}

// livenessTracker is the leader's failure detector for agents, as a pure
// state machine: it reads no clock, starts no goroutine and does no I/O.
// Its driver (leader.runLiveness) feeds it gossip events and probe
// verdicts (Observe), calls Sweep and Due on a ticker with the current
// time, carries out the probes it asks for and proposes what Due returns.
//
// Rules (an agent that is up but drained, DRAINING or DRAINED, counts as
// ACTIVE here: a drain does not stop failure detection):
//   - An ACTIVE agent that gossip reports failed is probed directly; after
//     Probes unanswered probes in a row it is proposed UNREACHABLE. An
//     answered probe clears the count and nothing is proposed.
//   - An ACTIVE agent that left gossip is probed like one that failed: a
//     graceful stop says goodbye first (RESTARTING, or GONE when
//     decommissioned), so a leave of an ACTIVE agent is either an agent
//     whose goodbye was lost or, after a quick restart, the previous
//     incarnation's leave arriving late while the new one runs, which
//     answers the probe.
//   - A RESTARTING agent (it said it stops for a restart before it left)
//     is not suspected at all: neither gossip leaving nor failing nor
//     missing from gossip counts against it. Only when it has not
//     registered again within ReregisterTimeout, counted from
//     max(state_since, start of leadership), is it proposed UNREACHABLE,
//     whether or not it is alive in gossip (alive but unregistered, it
//     reports none of its tasks). Registering again makes it ACTIVE,
//     which drops the proposal.
//   - Sweeps run Grace apart, the first at the start of leadership: an
//     ACTIVE agent missing from gossip at two sweeps in a row is probed.
//     So an agent is never suspected for being missing before Grace has
//     passed since leadership began, and a failover never marks agents
//     unreachable en masse.
//   - An agent UNREACHABLE for GoneTimeout, counted from max(state_since,
//     start of leadership), is proposed GONE.
//   - A hint (a master saw the connection of the agent's long polls
//     close, as when its process dies and the kernel closes its
//     connections) makes an ACTIVE
//     agent be probed at once, under the same rule: Probes unanswered
//     probes in a row, and it is proposed UNREACHABLE. A hint is only a
//     reason to look: an agent that answers is left alone (the driver's
//     probe of a hinted agent, Hinted, takes an accepted connection for an
//     answer: gossip judges live but unhealthy processes). At most one
//     hint per agent per HintInterval is acted on, and hints of all
//     agents are rate limited (HintRate, HintBurst), so a flapping network
//     cannot make a probe storm.
//   - Proposals are rate limited (RemovalRate); one whose agent is no
//     longer in the expected state, or (for UNREACHABLE from gossip's
//     verdict, not a hint's) is alive in gossip again, is dropped when it
//     comes up.
type livenessTracker struct {
	cfg    livenessConfig
	start  time.Time
	bucket *tokenBucket

	queue  []livenessProposal
	queued map[livenessProposal]bool
	// probing holds the agents with a probe in flight, missed their
	// consecutive unanswered probes.
	probing map[string]bool
	missed  map[string]int
	// missing holds the ACTIVE agents absent from gossip at the last
	// sweep; swept is when it ran (zero before the first).
	missing map[string]bool
	swept   time.Time
	// hinted holds the agents whose probes a hint started (until the
	// verdict); lastHint, when each agent's last hint was acted on.
	hinted     map[string]bool
	lastHint   map[string]time.Time
	hintBucket *tokenBucket
}

// newLivenessTracker returns a tracker for a leadership that began at start.
func newLivenessTracker(cfg livenessConfig, start time.Time) *livenessTracker {
	if cfg.Probes < 1 {
		cfg.Probes = 1
	}
	return &livenessTracker{
		cfg:     cfg,
		start:   start,
		bucket:  newTokenBucket(cfg.RemovalRate, max(1, cfg.RemovalRate), start),
		queued:  map[livenessProposal]bool{},
		probing: map[string]bool{},
		missed:  map[string]int{},
		missing: map[string]bool{},

		hinted:     map[string]bool{},
		lastHint:   map[string]time.Time{},
		hintBucket: newTokenBucket(cfg.HintRate, max(1, cfg.HintBurst), start),
	}
}

// Queued reports whether proposals wait for Due.
func (t *livenessTracker) Queued() bool { return len(t.queue) > 0 }

func (t *livenessTracker) enqueue(p livenessProposal) {
	if !t.queued[p] {
		t.queued[p] = true
		t.queue = append(t.queue, p)
	}
}

// suspect returns the agent as one to probe unless a probe is in flight.
func (t *livenessTracker) suspect(id string) []string {
	if t.probing[id] {
		return nil
	}
	t.probing[id] = true
	return []string{id}
}

// Observe takes one event and returns the agents to probe now.
func (t *livenessTracker) Observe(ev livenessEvent) []string {
	switch ev.Kind {
	case gossipFailed, gossipLeft:
		if agentUp(ev.State) {
			return t.suspect(ev.Agent)
		}
	case probeAnswered:
		delete(t.probing, ev.Agent)
		delete(t.missed, ev.Agent)
		delete(t.hinted, ev.Agent)
	case probeMissed:
		delete(t.probing, ev.Agent)
		t.missed[ev.Agent]++
		if t.missed[ev.Agent] < t.cfg.Probes {
			return t.suspect(ev.Agent)
		}
		delete(t.missed, ev.Agent)
		t.enqueue(livenessProposal{Agent: ev.Agent, Direct: t.hinted[ev.Agent]})
		delete(t.hinted, ev.Agent)
	}
	return nil
}

// Hinted reports whether the agent's probes were started by a hint.
func (t *livenessTracker) Hinted(id string) bool { return t.hinted[id] }

// Hint takes a connection-drop hint for an agent in state st (its state
// in the replicated state now) and returns the agents to probe now.
func (t *livenessTracker) Hint(id string, st agorav1.AgentState, now time.Time) ([]string, hintOutcome) {
	if t.cfg.HintRate <= 0 || !agentUp(st) || t.probing[id] {
		return nil, hintIgnored
	}
	if last, ok := t.lastHint[id]; ok && now.Sub(last) < t.cfg.HintInterval {
		return nil, hintLimited
	}
	if !t.hintBucket.take(now) {
		return nil, hintLimited
	}
	t.lastHint[id] = now
	t.hinted[id] = true
	return t.suspect(id), hintProbed
}

// Sweep looks for ACTIVE agents missing from gossip (alive holds the ids
// alive there) when a sweep is due, for RESTARTING agents past the
// re-registration timeout and for UNREACHABLE agents past the gone
// timeout. It returns the agents to probe now.
func (t *livenessTracker) Sweep(agents []agentView, alive map[string]bool, now time.Time) []string {
	for _, a := range agents {
		since := t.start
		if a.Since.After(since) {
			since = a.Since
		}
		switch a.State {
		case agorav1.AgentState_AGENT_STATE_UNREACHABLE:
			if now.Sub(since) >= t.cfg.GoneTimeout {
				t.enqueue(livenessProposal{Agent: a.ID, Gone: true})
			}
		case agorav1.AgentState_AGENT_STATE_RESTARTING:
			if now.Sub(since) >= t.cfg.ReregisterTimeout {
				t.enqueue(livenessProposal{Agent: a.ID, Restarted: true})
			}
		}
	}
	for id, at := range t.lastHint {
		if now.Sub(at) >= t.cfg.HintInterval {
			delete(t.lastHint, id)
		}
	}
	if !t.swept.IsZero() && now.Sub(t.swept) < t.cfg.Grace {
		return nil
	}
	first := t.swept.IsZero()
	t.swept = now
	var probe []string
	missing := map[string]bool{}
	for _, a := range agents {
		if !agentUp(a.State) || alive[a.ID] {
			continue
		}
		missing[a.ID] = true
		if !first && t.missing[a.ID] {
			probe = append(probe, t.suspect(a.ID)...)
		}
	}
	t.missing = missing
	return probe
}

// Due returns the proposals to make now, in the order they were found, as
// many as the rate limit allows; the rest stay queued. A proposal whose
// agent is no longer in the state it was found in, or is alive in gossip
// again, is dropped. A proposal the driver could not make (not leader,
// overloaded) goes back with Retry.
func (t *livenessTracker) Due(agents []agentView, alive map[string]bool, now time.Time) []livenessProposal {
	if len(t.queue) == 0 {
		return nil
	}
	state := make(map[string]agorav1.AgentState, len(agents))
	for _, a := range agents {
		state[a.ID] = a.State
	}
	var out []livenessProposal
	for len(t.queue) > 0 {
		p := t.queue[0]
		want := agorav1.AgentState_AGENT_STATE_ACTIVE
		switch {
		case p.Gone:
			want = agorav1.AgentState_AGENT_STATE_UNREACHABLE
		case p.Restarted:
			want = agorav1.AgentState_AGENT_STATE_RESTARTING
		}
		st, ok := state[p.Agent]
		if want == agorav1.AgentState_AGENT_STATE_ACTIVE && agentUp(st) {
			st = want // a drained agent that is up is watched like an active one
		}
		if !ok || st != want || (want == agorav1.AgentState_AGENT_STATE_ACTIVE && !p.Direct && alive[p.Agent]) {
			t.queue = t.queue[1:]
			delete(t.queued, p)
			continue
		}
		if !t.bucket.take(now) {
			break
		}
		t.queue = t.queue[1:]
		delete(t.queued, p)
		out = append(out, p)
	}
	return out
}

// Retry puts back, at the front and in order, proposals that Due returned
// but the driver could not make.
func (t *livenessTracker) Retry(ps []livenessProposal) {
	var back []livenessProposal
	for _, p := range ps {
		if !t.queued[p] {
			t.queued[p] = true
			back = append(back, p)
		}
	}
	t.queue = append(back, t.queue...)
}
