package master

import (
	"slices"
	"testing"
	"time"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

const (
	active      = agorav1.AgentState_AGENT_STATE_ACTIVE
	unreachable = agorav1.AgentState_AGENT_STATE_UNREACHABLE
	gone        = agorav1.AgentState_AGENT_STATE_GONE
	restarting  = agorav1.AgentState_AGENT_STATE_RESTARTING
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

var testLiveness = livenessConfig{Grace: 3 * time.Second, GoneTimeout: time.Minute, ReregisterTimeout: 10 * time.Minute, RemovalRate: 1, Probes: 2}

func views(states map[string]agorav1.AgentState, since time.Time) []agentView {
	var out []agentView
	for id, st := range states {
		out = append(out, agentView{ID: id, State: st, Since: since})
	}
	slices.SortFunc(out, func(a, b agentView) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

func TestTrackerUnreachableAfterMissedProbes(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := newLivenessTracker(testLiveness, clk.Now())
	agents := views(map[string]agorav1.AgentState{"a1": active, "a2": active}, clk.Now())
	alive := map[string]bool{"a2": true}

	if got := tr.Observe(livenessEvent{Kind: gossipFailed, Agent: "a1", State: active}); !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("gossip failure: probe %v, want [a1]", got)
	}
	// A second failure report while the probe is in flight starts no
	// second probe.
	if got := tr.Observe(livenessEvent{Kind: gossipFailed, Agent: "a1", State: active}); len(got) != 0 {
		t.Fatalf("second report: probe %v, want none", got)
	}
	if got := tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a1"}); !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("first missed probe: probe again %v, want [a1]", got)
	}
	if due := tr.Due(agents, alive, clk.Now()); len(due) != 0 {
		t.Fatalf("after 1 of 2 missed probes: due %v, want none", due)
	}
	if got := tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a1"}); len(got) != 0 {
		t.Fatalf("second missed probe: probe %v, want none", got)
	}
	due := tr.Due(agents, alive, clk.Now())
	if !slices.Equal(due, []livenessProposal{{Agent: "a1"}}) {
		t.Fatalf("after 2 missed probes: due %v, want a1 unreachable", due)
	}
	if due := tr.Due(agents, alive, clk.Now()); len(due) != 0 {
		t.Fatalf("proposal returned twice: %v", due)
	}
}

func TestTrackerAnsweredProbeMarksNothing(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := newLivenessTracker(testLiveness, clk.Now())
	agents := views(map[string]agorav1.AgentState{"a1": active}, clk.Now())
	tr.Observe(livenessEvent{Kind: gossipFailed, Agent: "a1", State: active})
	tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a1"})
	tr.Observe(livenessEvent{Kind: probeAnswered, Agent: "a1"})
	if due := tr.Due(agents, nil, clk.Now()); len(due) != 0 {
		t.Fatalf("answered probe: due %v, want none", due)
	}
	// The count starts afresh: one more miss is not enough.
	tr.Observe(livenessEvent{Kind: gossipFailed, Agent: "a1", State: active})
	tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a1"})
	if due := tr.Due(agents, nil, clk.Now()); len(due) != 0 {
		t.Fatalf("one miss after an answer: due %v, want none", due)
	}
}

// markMissing makes the tracker propose agent id unreachable: gossip
// failed and every probe missed.
func markMissing(tr *livenessTracker, id string) {
	tr.Observe(livenessEvent{Kind: gossipFailed, Agent: id, State: active})
	for range tr.cfg.Probes {
		tr.Observe(livenessEvent{Kind: probeMissed, Agent: id})
	}
}

// An ACTIVE agent that leaves gossip without a goodbye is probed, not
// trusted: after a quick restart the previous incarnation's leave can
// arrive while the new one runs (it answers), and an agent whose goodbye
// was lost and that is really away misses the probes.
func TestTrackerLeaveWithoutGoodbyeIsProbed(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := newLivenessTracker(testLiveness, clk.Now())
	agents := views(map[string]agorav1.AgentState{"a1": active}, clk.Now())
	if got := tr.Observe(livenessEvent{Kind: gossipLeft, Agent: "a1", State: active}); !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("leave: probe %v, want [a1]", got)
	}
	tr.Observe(livenessEvent{Kind: probeAnswered, Agent: "a1"})
	if due := tr.Due(agents, nil, clk.Now()); len(due) != 0 {
		t.Fatalf("stale leave of a running agent: due %v, want none", due)
	}
	tr.Observe(livenessEvent{Kind: gossipLeft, Agent: "a1", State: active})
	tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a1"})
	tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a1"})
	if due := tr.Due(agents, nil, clk.Now()); !slices.Equal(due, []livenessProposal{{Agent: "a1"}}) {
		t.Fatalf("leave and missed probes: due %v, want a1 unreachable", due)
	}
	// A leave of an agent that is not ACTIVE proposes nothing.
	tr.Observe(livenessEvent{Kind: gossipLeft, Agent: "a2", State: unreachable})
	if due := tr.Due(views(map[string]agorav1.AgentState{"a2": unreachable}, clk.Now()), nil, clk.Now()); len(due) != 0 {
		t.Fatalf("leave of an unreachable agent: due %v", due)
	}
}

func TestTrackerGraceAfterLeadership(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := newLivenessTracker(testLiveness, clk.Now())
	// a1 is ACTIVE in the state but missing from gossip: the new leader's
	// gossip view may simply lag behind.
	agents := views(map[string]agorav1.AgentState{"a1": active, "a2": active}, clk.Now())
	alive := map[string]bool{"a2": true}
	for i := 0; i < 11; i++ { // every 250ms up to Grace - 250ms
		if got := tr.Sweep(agents, alive, clk.Now()); len(got) != 0 {
			t.Fatalf("sweep at +%v (inside the grace): probe %v, want none", clk.Now().Sub(time.Unix(1000, 0)), got)
		}
		clk.Advance(250 * time.Millisecond)
	}
	clk.Advance(250 * time.Millisecond) // now start + Grace
	if got := tr.Sweep(agents, alive, clk.Now()); !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("sweep at the end of the grace: probe %v, want [a1]", got)
	}
	// An agent that shows up in gossip in between is not suspected.
	tr2 := newLivenessTracker(testLiveness, clk.Now())
	tr2.Sweep(agents, alive, clk.Now())
	clk.Advance(testLiveness.Grace)
	if got := tr2.Sweep(agents, map[string]bool{"a1": true, "a2": true}, clk.Now()); len(got) != 0 {
		t.Fatalf("agent back in gossip: probe %v, want none", got)
	}
}

func TestTrackerRateLimit(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	cfg := testLiveness
	cfg.RemovalRate = 2 // burst 2, then one every 500ms
	tr := newLivenessTracker(cfg, clk.Now())
	states := map[string]agorav1.AgentState{}
	for _, id := range []string{"a1", "a2", "a3", "a4", "a5"} {
		states[id] = active
		markMissing(tr, id)
	}
	agents := views(states, clk.Now())
	var got []string
	take := func() int {
		due := tr.Due(agents, nil, clk.Now())
		for _, p := range due {
			got = append(got, p.Agent)
		}
		return len(due)
	}
	if n := take(); n != 2 {
		t.Fatalf("burst: %d proposals, want 2", n)
	}
	clk.Advance(400 * time.Millisecond)
	if n := take(); n != 0 {
		t.Fatalf("after 400ms: %d proposals, want 0", n)
	}
	clk.Advance(100 * time.Millisecond)
	if n := take(); n != 1 {
		t.Fatalf("after 500ms: %d proposals, want 1", n)
	}
	// A proposal that could not be made goes back to the front.
	clk.Advance(500 * time.Millisecond)
	due := tr.Due(agents, nil, clk.Now())
	if len(due) != 1 || due[0].Agent != "a4" {
		t.Fatalf("after 1s: %v, want a4", due)
	}
	tr.Retry(due)
	clk.Advance(500 * time.Millisecond)
	take()
	clk.Advance(500 * time.Millisecond)
	take()
	if want := []string{"a1", "a2", "a3", "a4", "a5"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestTrackerDropsStaleProposals(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := newLivenessTracker(testLiveness, clk.Now())
	markMissing(tr, "a1")
	markMissing(tr, "a2")
	// a1 came back to gossip, a2 was re-registered as something else.
	agents := views(map[string]agorav1.AgentState{"a1": active, "a2": gone}, clk.Now())
	if due := tr.Due(agents, map[string]bool{"a1": true}, clk.Now()); len(due) != 0 {
		t.Fatalf("due %v, want none", due)
	}
}

func TestTrackerGoneTimeout(t *testing.T) {
	start := time.Unix(1000, 0)
	clk := &fakeClock{t: start}
	tr := newLivenessTracker(testLiveness, clk.Now())
	// a1 has been unreachable since long before this leadership began: the
	// timeout counts from the start of leadership. a2 became unreachable
	// 30s into it.
	agents := []agentView{
		{ID: "a1", State: unreachable, Since: start.Add(-time.Hour)},
		{ID: "a2", State: unreachable, Since: start.Add(30 * time.Second)},
	}
	clk.Advance(testLiveness.GoneTimeout - time.Millisecond)
	tr.Sweep(agents, nil, clk.Now())
	if due := tr.Due(agents, nil, clk.Now()); len(due) != 0 {
		t.Fatalf("before the timeout: due %v", due)
	}
	clk.Advance(time.Millisecond)
	tr.Sweep(agents, nil, clk.Now())
	if due := tr.Due(agents, nil, clk.Now()); !slices.Equal(due, []livenessProposal{{Agent: "a1", Gone: true}}) {
		t.Fatalf("at the timeout: due %v, want a1 gone", due)
	}
	agents[0].State = gone // the proposal applied
	clk.Advance(30 * time.Second)
	tr.Sweep(agents, nil, clk.Now())
	if due := tr.Due(agents, nil, clk.Now()); !slices.Equal(due, []livenessProposal{{Agent: "a2", Gone: true}}) {
		t.Fatalf("a2 at its timeout: due %v, want a2 gone", due)
	}
}

func TestTokenBucket(t *testing.T) {
	now := time.Unix(0, 0)
	b := newTokenBucket(10, 3, now)
	for i := 0; i < 3; i++ {
		if !b.take(now) {
			t.Fatalf("burst token %d refused", i)
		}
	}
	if b.take(now) {
		t.Fatal("a fourth token at once")
	}
	if w := b.wait(now); w != 100*time.Millisecond {
		t.Fatalf("wait %v, want 100ms", w)
	}
	if !b.take(now.Add(100 * time.Millisecond)) {
		t.Fatal("token after 100ms refused")
	}
	// Time going backwards earns nothing.
	if b.take(now) {
		t.Fatal("token earned from a clock going backwards")
	}
}
