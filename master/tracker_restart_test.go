package master

import (
	"slices"
	"testing"
	"time"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// An agent that said it stops for a restart (a1) is not suspected while it
// is away, however gossip reports it, until the re-registration timeout;
// an agent that crashed (a2: no goodbye, gossip failed, probes missed)
// takes the unreachable path at once.
func TestTrackerRestartingAgentWaitsReregisterTimeout(t *testing.T) {
	start := time.Unix(1000, 0)
	clk := &fakeClock{t: start}
	tr := newLivenessTracker(testLiveness, clk.Now())
	said := start.Add(time.Second) // a1's goodbye, stamped by the leader
	agents := []agentView{{ID: "a1", State: restarting, Since: said}, {ID: "a2", State: active, Since: start}}
	alive := map[string]bool{} // both are missing from gossip

	clk.Advance(time.Second)
	if got := tr.Observe(livenessEvent{Kind: gossipLeft, Agent: "a1", State: restarting}); len(got) != 0 {
		t.Fatalf("restarting agent left: probe %v, want none", got)
	}
	if got := tr.Observe(livenessEvent{Kind: gossipFailed, Agent: "a1", State: restarting}); len(got) != 0 {
		t.Fatalf("restarting agent failed in gossip: probe %v, want none", got)
	}
	// The crashed one is probed and, after two misses, proposed.
	if got := tr.Observe(livenessEvent{Kind: gossipFailed, Agent: "a2", State: active}); !slices.Equal(got, []string{"a2"}) {
		t.Fatalf("crashed agent: probe %v, want [a2]", got)
	}
	tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a2"})
	tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a2"})
	if due := tr.Due(agents, alive, clk.Now()); !slices.Equal(due, []livenessProposal{{Agent: "a2"}}) {
		t.Fatalf("crashed agent after two missed probes: due %v, want a2 unreachable", due)
	}
	agents[1].State = unreachable

	// Sweeps all along the timeout: a1 is missing from gossip, but it said
	// it would be; nothing is probed, nothing proposed.
	for clk.Now().Before(said.Add(testLiveness.ReregisterTimeout)) {
		if got := tr.Sweep(agents[:1], alive, clk.Now()); len(got) != 0 {
			t.Fatalf("sweep at +%v: probe %v, want none", clk.Now().Sub(said), got)
		}
		if due := tr.Due(agents[:1], alive, clk.Now()); len(due) != 0 {
			t.Fatalf("due at +%v, before the re-registration timeout: %v", clk.Now().Sub(said), due)
		}
		clk.Advance(testLiveness.Grace)
	}
	clk.t = said.Add(testLiveness.ReregisterTimeout)
	tr.Sweep(agents[:1], alive, clk.Now())
	if due := tr.Due(agents[:1], alive, clk.Now()); !slices.Equal(due, []livenessProposal{{Agent: "a1", Restarted: true}}) {
		t.Fatalf("at the re-registration timeout: due %v, want a1 unreachable (restarted)", due)
	}
}

// An agent that registers again in time is ACTIVE: nothing is proposed,
// and a proposal already queued for it is dropped. One alive in gossip but
// still not registered past the timeout is proposed all the same.
func TestTrackerRestartingAgentBackInTime(t *testing.T) {
	start := time.Unix(1000, 0)
	clk := &fakeClock{t: start}
	tr := newLivenessTracker(testLiveness, clk.Now())
	agents := []agentView{{ID: "a1", State: restarting, Since: start}, {ID: "a2", State: restarting, Since: start}}
	clk.Advance(testLiveness.ReregisterTimeout)
	tr.Sweep(agents, nil, clk.Now())
	// a1 registered again between the sweep and Due; a2 is alive in gossip
	// but never registered.
	agents[0].State = active
	alive := map[string]bool{"a1": true, "a2": true}
	if due := tr.Due(agents, alive, clk.Now()); !slices.Equal(due, []livenessProposal{{Agent: "a2", Restarted: true}}) {
		t.Fatalf("due %v, want only a2 (a1 is back)", due)
	}
	clk.Advance(time.Hour)
	tr.Sweep(agents[:1], alive, clk.Now())
	if due := tr.Due(agents[:1], alive, clk.Now()); len(due) != 0 {
		t.Fatalf("active agent back in gossip: due %v, want none", due)
	}
}

// The re-registration timeout counts from the start of leadership when the
// agent stopped earlier: a new leader gives a restarting agent the whole
// timeout again rather than acting on an old clock.
func TestTrackerReregisterTimeoutFromLeadership(t *testing.T) {
	said := time.Unix(1000, 0)
	start := said.Add(time.Hour) // leadership began long after the goodbye
	clk := &fakeClock{t: start}
	tr := newLivenessTracker(testLiveness, clk.Now())
	agents := []agentView{{ID: "a1", State: agorav1.AgentState_AGENT_STATE_RESTARTING, Since: said}}
	clk.Advance(testLiveness.ReregisterTimeout - time.Second)
	tr.Sweep(agents, nil, clk.Now())
	if due := tr.Due(agents, nil, clk.Now()); len(due) != 0 {
		t.Fatalf("1s before the timeout from leadership: due %v", due)
	}
	clk.Advance(time.Second)
	tr.Sweep(agents, nil, clk.Now())
	if due := tr.Due(agents, nil, clk.Now()); !slices.Equal(due, []livenessProposal{{Agent: "a1", Restarted: true}}) {
		t.Fatalf("at the timeout from leadership: due %v", due)
	}
}
