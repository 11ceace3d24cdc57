package master

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/agora-sched/agora/freeport"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// hintLiveness is testLiveness with hints on.
func hintLiveness() livenessConfig {
	cfg := testLiveness
	cfg.HintInterval, cfg.HintRate, cfg.HintBurst = 5*time.Second, 10, 3
	return cfg
}

// A hint makes an ACTIVE agent be probed at once; after Probes misses it
// is proposed UNREACHABLE although gossip still counts it alive (gossip
// lags a freshly killed agent: that is what hints are for).
func TestTrackerHintProbesAndMarksDespiteGossip(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := newLivenessTracker(hintLiveness(), clk.Now())
	agents := views(map[string]agorav1.AgentState{"a1": active, "a2": active}, clk.Now())
	alive := map[string]bool{"a1": true, "a2": true}

	got, outcome := tr.Hint("a1", active, clk.Now())
	if outcome != hintProbed || !slices.Equal(got, []string{"a1"}) || !tr.Hinted("a1") {
		t.Fatalf("hint: probe %v (outcome %v, hinted %v), want [a1] probed", got, outcome, tr.Hinted("a1"))
	}
	if got := tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a1"}); !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("first missed probe: probe again %v, want [a1]", got)
	}
	if due := tr.Due(agents, alive, clk.Now()); len(due) != 0 {
		t.Fatalf("after 1 of 2 missed probes: due %v, want none", due)
	}
	tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a1"})
	if tr.Hinted("a1") {
		t.Fatal("a1 still hinted after its verdict")
	}
	if due := tr.Due(agents, alive, clk.Now()); !slices.Equal(due, []livenessProposal{{Agent: "a1", Direct: true}}) {
		t.Fatalf("after 2 missed probes: due %v, want a1 unreachable (direct)", due)
	}
	// A gossip-started verdict still yields to gossip's alive view.
	markMissing(tr, "a2")
	if tr.Hinted("a2") {
		t.Fatal("a2's gossip-started probe counts as hinted")
	}
	if due := tr.Due(agents, alive, clk.Now()); len(due) != 0 {
		t.Fatalf("gossip verdict on an agent alive in gossip: due %v, want none", due)
	}
}

// A hint for an agent that answers changes nothing, and the next hint
// starts the miss count afresh.
func TestTrackerHintAnsweredMarksNothing(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := newLivenessTracker(hintLiveness(), clk.Now())
	agents := views(map[string]agorav1.AgentState{"a1": active}, clk.Now())
	tr.Hint("a1", active, clk.Now())
	tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a1"})
	tr.Observe(livenessEvent{Kind: probeAnswered, Agent: "a1"})
	if due := tr.Due(agents, nil, clk.Now()); len(due) != 0 {
		t.Fatalf("answered probe: due %v, want none", due)
	}
	clk.Advance(5 * time.Second)
	if _, outcome := tr.Hint("a1", active, clk.Now()); outcome != hintProbed {
		t.Fatalf("hint after the interval: %v, want probed", outcome)
	}
	tr.Observe(livenessEvent{Kind: probeMissed, Agent: "a1"})
	if due := tr.Due(agents, nil, clk.Now()); len(due) != 0 {
		t.Fatalf("one miss after an answer: due %v, want none", due)
	}
}

// Hints are acted on at most once per agent per HintInterval and within
// the overall rate; hints for agents that are not up, or already being
// probed, are ignored.
func TestTrackerHintRateLimits(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := newLivenessTracker(hintLiveness(), clk.Now())
	if _, o := tr.Hint("a1", active, clk.Now()); o != hintProbed {
		t.Fatalf("first hint: %v, want probed", o)
	}
	tr.Observe(livenessEvent{Kind: probeAnswered, Agent: "a1"})
	// A flapping connection: hints every 100 ms probe a1 once per interval.
	probes := 0
	for range 100 {
		clk.Advance(100 * time.Millisecond)
		ids, o := tr.Hint("a1", active, clk.Now())
		if o == hintProbed {
			probes++
			tr.Observe(livenessEvent{Kind: probeAnswered, Agent: ids[0]})
		} else if o != hintLimited {
			t.Fatalf("hint at %v: %v, want probed or limited", clk.Now(), o)
		}
	}
	if probes != 2 { // at 5 s and 10 s after the first
		t.Fatalf("10 s of hints every 100 ms: %d probes, want 2", probes)
	}

	// The overall bucket: burst 3 at 10/s.
	clk.Advance(time.Minute)
	var outcomes []hintOutcome
	for _, id := range []string{"b1", "b2", "b3", "b4"} {
		_, o := tr.Hint(id, active, clk.Now())
		outcomes = append(outcomes, o)
	}
	if want := []hintOutcome{hintProbed, hintProbed, hintProbed, hintLimited}; !slices.Equal(outcomes, want) {
		t.Fatalf("4 hints at once with a burst of 3: %v, want %v", outcomes, want)
	}
	clk.Advance(100 * time.Millisecond)
	if _, o := tr.Hint("b4", active, clk.Now()); o != hintProbed {
		t.Fatalf("b4 after a token came back: %v, want probed", o)
	}

	for _, st := range []agorav1.AgentState{restarting, unreachable, gone, agorav1.AgentState_AGENT_STATE_UNSPECIFIED} {
		if ids, o := tr.Hint("c-"+st.String(), st, clk.Now()); o != hintIgnored || len(ids) != 0 {
			t.Fatalf("hint for an agent %v: %v %v, want ignored", st, ids, o)
		}
	}
	// b1's probe is in flight: a second hint starts none.
	clk.Advance(10 * time.Second)
	if ids, o := tr.Hint("b1", active, clk.Now()); o != hintIgnored || len(ids) != 0 {
		t.Fatalf("hint during a probe: %v %v, want ignored", ids, o)
	}
	// Zero rate: hints are off.
	off := testLiveness
	tr = newLivenessTracker(off, clk.Now())
	if _, o := tr.Hint("a1", active, clk.Now()); o != hintIgnored {
		t.Fatalf("hints off: %v, want ignored", o)
	}
}

// Sweeps forget hint times past the interval (no growth with churn).
func TestTrackerHintTimesPruned(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := newLivenessTracker(hintLiveness(), clk.Now())
	tr.Hint("a1", active, clk.Now())
	tr.Observe(livenessEvent{Kind: probeAnswered, Agent: "a1"})
	tr.Sweep(nil, nil, clk.Now())
	if len(tr.lastHint) != 1 {
		t.Fatalf("hint times after a sweep within the interval: %v", tr.lastHint)
	}
	clk.Advance(5 * time.Second)
	tr.Sweep(nil, nil, clk.Now())
	if len(tr.lastHint) != 0 || len(tr.hinted) != 0 {
		t.Fatalf("hint state after the interval: %v %v", tr.lastHint, tr.hinted)
	}
}

// pollWatch tells a closed connection whether its agent polled again.
func TestPollWatch(t *testing.T) {
	var w pollWatch
	check := func(what string, got, want bool) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: quiet = %v, want %v", what, got, want)
		}
	}
	// Between two polls.
	w.begin("a1")
	w.end("a1")
	check("closed between polls", w.settled("a1", w.settle("a1")), true)
	// During a poll, which the close ends.
	w.begin("a1")
	n := w.settle("a1")
	w.end("a1")
	check("closed during a poll", w.settled("a1", n), true)
	// Polled again, still open.
	n = w.settle("a1")
	w.begin("a1")
	check("polled again (open)", w.settled("a1", n), false)
	w.end("a1")
	// Polled again, ended since.
	n = w.settle("a1")
	w.begin("a1")
	w.end("a1")
	check("polled again (ended)", w.settled("a1", n), false)
	if len(w.polls) != 0 || w.repolled.Load() != 2 {
		t.Fatalf("entries left %v, repolled %d", w.polls, w.repolled.Load())
	}
}

// probeHinted: an endpoint that accepts answers; one that refuses for the
// whole probe misses; one that refuses and then accepts within the probe
// (an agent restarted at once on the same address) answers.
func TestProbeHinted(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	port, err := freeport.TCP("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	probe := func(d time.Duration, dial func(context.Context, string) error) livenessEventKind {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return probeHinted(ctx, "a1", addr, log, dial).Kind
	}
	if k := probe(200*time.Millisecond, dialProbe); k != probeMissed {
		t.Fatalf("refusing endpoint: %v, want missed", k)
	}
	// The agent comes back on its address after the probe's first three
	// dials were refused.
	restarted := make(chan net.Listener, 1)
	dials := 0
	restartAfterThree := func(ctx context.Context, a string) error {
		err := dialProbe(ctx, a)
		if dials++; dials == 3 {
			if err == nil {
				t.Error("third dial answered before the endpoint was back")
			}
			ln, lerr := net.Listen("tcp", addr)
			if lerr != nil {
				t.Error(lerr)
			}
			restarted <- ln
		}
		return err
	}
	if k := probe(30*time.Second, restartAfterThree); k != probeAnswered {
		t.Fatalf("endpoint back within the probe: %v, want answered", k)
	}
	ln := <-restarted
	defer ln.Close()
	if k := probe(200*time.Millisecond, dialProbe); k != probeAnswered {
		t.Fatalf("accepting endpoint: %v, want answered", k)
	}
}
