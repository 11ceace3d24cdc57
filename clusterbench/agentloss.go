package clusterbench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// AgentLossOptions configures AgentLoss.
type AgentLossOptions struct {
	// Binary is the agora binary the masters and agents run (required).
	Binary string
	// Agents run as processes (default 10); Rounds (default 3, at most
	// Agents) of them are killed, one per round.
	Agents, Rounds int
	// Dir holds node data and logs; "" = temp (removed).
	Dir string
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

// AgentLossResult is `agora bench agent-loss --json`. Times run from the
// SIGKILL of the agent (masters and agents on the local gossip profile).
type AgentLossResult struct {
	Rounds int `json:"rounds"`
	Agents int `json:"agents"`
	// Rescind*: the RESCIND of the framework's offer on the agent.
	RescindP50Ms float64 `json:"rescind_p50_ms"`
	RescindP99Ms float64 `json:"rescind_p99_ms"`
	// Unreachable*: the UNREACHABLE update of the framework's task there
	// (the framework is partition-aware).
	UnreachableP50Ms float64 `json:"unreachable_p50_ms"`
	UnreachableP99Ms float64 `json:"unreachable_p99_ms"`
	// SettleMs is how long the cluster took, after every agent was
	// ACTIVE, to settle in gossip (every master seeing every member alive
	// and none failed for 2 s) before the first kill.
	SettleMs      float64   `json:"settle_ms"`
	RescindMs     []float64 `json:"rescind_ms"`
	UnreachableMs []float64 `json:"unreachable_ms"`
}

// AgentLoss runs 3 masters and Agents agents as separate processes and a
// partition-aware framework with one long task on every agent to be
// killed and an offer held on it; each round SIGKILLs one such agent and
// times the RESCIND of the offer and the task's UNREACHABLE update at the
// framework. What it times is, in the masters, the agent-gone hint (the
// master the agent polled sees its connection close, waits 100 ms for a
// new poll, and the leader probes the agent's gossip endpoint twice, each
// probe missing only after a whole probe timeout, 300 ms with the local
// profile: about 0.7 s), then one Raft commit and the stream to the
// framework; gossip's failure detector (about 2 s at 100 agents) is the
// fallback. The masters' log line "agent marked unreachable" says
// hinted=true when the hint found the agent.
func AgentLoss(ctx context.Context, o AgentLossOptions) (AgentLossResult, error) {
	if o.Agents <= 0 {
		o.Agents = 10
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.Rounds > o.Agents {
		return AgentLossResult{}, fmt.Errorf("clusterbench: agent-loss: --rounds %d exceeds --agents %d (one agent is killed per round)", o.Rounds, o.Agents)
	}
	res := AgentLossResult{Rounds: o.Rounds, Agents: o.Agents}
	p := newProgress(o.Progress, "agent-loss")
	pc, err := startProcCluster(ctx, o.Binary, o.Dir, o.Agents, "default", p)
	if err != nil {
		return res, err
	}
	defer pc.close()
	settle := time.Now()
	if err := pc.waitGossipSettled(ctx, o.Agents); err != nil {
		return res, fmt.Errorf("clusterbench: waiting for gossip to settle: %w", err)
	}
	settled := time.Since(settle)
	res.SettleMs = float64(settled.Microseconds()) / 1000
	p.printf("gossip settled: every master sees %d masters and %d agents alive, none failed, for %v (%v)",
		pc.Masters(), o.Agents, gossipSettle, settled.Round(time.Millisecond))
	fctx, stopFramework := context.WithCancel(ctx)
	defer stopFramework()
	rec, fwDone, err := runFramework(fctx, pc, "bench-agent-loss", true)
	if err != nil {
		return res, err
	}
	defer func() { stopFramework(); <-fwDone }()

	// Agents by id as the masters know them: the process tier names
	// agent i "a<i>".
	victims := make([]string, o.Rounds)
	for i := range victims {
		victims[i] = "a" + strconv.Itoa(i)
	}
	var rescindDs, unreachDs []time.Duration
	// Each round sets its agent up just before the kill, so that the offer
	// held there is fresh (offers expire after the masters' offer
	// timeout): a task launched and RUNNING, and the offer of the rest
	// that follows the launch. A launch whose outcome is unknown
	// (leadership lost in flight on a loaded machine) is retried with a
	// new task on a fresh offer; any of the agent's tasks stands for it.
	tasks := map[string][]string{}
	anyState := func(a, state string) (time.Time, bool) {
		var first time.Time
		for _, id := range tasks[a] {
			if at, ok := rec.statusAt[id+"/"+state]; ok && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
		return first, !first.IsZero()
	}
	for round, a := range victims {
		var launched time.Time
		for attempt := 0; ; attempt++ {
			var off *agorav1.Offer
			if err := rec.wait(ctx, 2*time.Minute, "an offer on "+a, func() bool { off = rec.offerOn(a); return off != nil }); err != nil {
				return res, err
			}
			task := fmt.Sprintf("loss-%s-%d", a, attempt)
			tasks[a] = append(tasks[a], task)
			launched = time.Now()
			err := rec.accept(ctx, off, task, pc.TaskCommand(3600))
			if err == nil {
				break
			}
			if attempt == 4 {
				return res, fmt.Errorf("clusterbench: launch on %s: %w", a, err)
			}
			p.printf("launch on %s: %v; retrying", a, err)
			rec.mu.Lock()
			delete(rec.offers, off.GetId())
			rec.mu.Unlock()
		}
		if err := rec.wait(ctx, 2*time.Minute, "a task on "+a+" RUNNING and a fresh offer held there", func() bool {
			_, running := anyState(a, "TASK_STATE_RUNNING")
			return running && rec.freshOfferOn(a, launched) != nil
		}); err != nil {
			return res, err
		}
		rec.mu.Lock()
		var held []string
		for id, o := range rec.offers {
			if o.GetAgentId() == a {
				held = append(held, id)
			}
		}
		rec.mu.Unlock()
		t0 := time.Now()
		if err := pc.KillAgent(round); err != nil {
			return res, fmt.Errorf("clusterbench: kill %s: %w", a, err)
		}
		var rescindAt, unreachAt time.Time
		if err := rec.wait(ctx, 2*time.Minute, "RESCIND and UNREACHABLE for "+a, func() bool {
			for _, id := range held {
				if at, ok := rec.rescinded[id]; ok && rescindAt.IsZero() {
					rescindAt = at
				}
			}
			unreachAt, _ = anyState(a, "TASK_STATE_UNREACHABLE")
			return !rescindAt.IsZero() && !unreachAt.IsZero()
		}); err != nil {
			return res, err
		}
		rescindDs, unreachDs = append(rescindDs, rescindAt.Sub(t0)), append(unreachDs, unreachAt.Sub(t0))
		p.printf("round %d/%d: killed %s; RESCIND %v, UNREACHABLE %v", round+1, o.Rounds, a,
			rescindAt.Sub(t0).Round(time.Millisecond), unreachAt.Sub(t0).Round(time.Millisecond))
	}
	res.RescindP50Ms, res.RescindP99Ms = percentileMs(rescindDs, 50), percentileMs(rescindDs, 99)
	res.UnreachableP50Ms, res.UnreachableP99Ms = percentileMs(unreachDs, 50), percentileMs(unreachDs, 99)
	res.RescindMs, res.UnreachableMs = ms(rescindDs), ms(unreachDs)
	return res, nil
}
