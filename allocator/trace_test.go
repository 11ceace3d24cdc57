package allocator

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/resources"
	"pgregory.net/rapid"
)

// formatTrace prints one line per framework: its roles, offers and the
// reasons it got no offer elsewhere, each with its example agent.
func formatTrace(tr *Trace) string {
	var b strings.Builder
	for _, f := range tr.Frameworks {
		fmt.Fprintf(&b, "why %s roles=%s: offered=%d", f.ID, strings.Join(f.Roles, ","), f.Offered)
		for _, rc := range f.Reasons {
			fmt.Fprintf(&b, " %s=%d (%s)", rc.Reason, rc.Count, rc.ExampleAgent)
		}
		if f.Earmarked > 0 {
			fmt.Fprintf(&b, " earmarked=%d", f.Earmarked)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// checkTrace checks what a trace promises against the snapshot and the
// offers alone: counts add up, examples exist and their agents are in the
// state the reason claims after the round.
func checkTrace(s Snapshot, now time.Time, offers []Offer, tr *Trace) error {
	if len(tr.Frameworks) != len(s.Frameworks) {
		return fmt.Errorf("trace has %d frameworks, snapshot %d", len(tr.Frameworks), len(s.Frameworks))
	}
	if !slices.IsSortedFunc(tr.Frameworks, func(a, b FrameworkTrace) int { return strings.Compare(a.ID, b.ID) }) {
		return fmt.Errorf("trace frameworks not in id order")
	}
	minRes := s.MinAllocatable
	if len(minRes.Names()) == 0 {
		minRes = DefaultMinAllocatable
	}
	allocatable := func(r resources.Resources) bool {
		for n, m := range minRes.Scalars {
			if m > 0 && r.Milli(n) >= m {
				return true
			}
		}
		return false
	}
	agents := map[string]Agent{}
	for _, a := range s.Agents {
		agents[a.ID] = a
	}
	excluded := map[string]Reason{}
	for _, e := range s.Excluded {
		excluded[e.ID] = e.Reason
	}
	// What is left on each agent after the round.
	leftUnres := map[string]resources.Resources{}
	resOffered := map[[2]string]bool{} // (agent, role)
	offered := map[string]int{}
	for _, a := range s.Agents {
		leftUnres[a.ID] = a.Unreserved
	}
	for _, o := range offers {
		left, err := leftUnres[o.AgentID].Subtract(o.Unreserved)
		if err != nil {
			return fmt.Errorf("offer %+v: %v", o, err)
		}
		leftUnres[o.AgentID] = left
		if !o.Reserved.IsEmpty() {
			resOffered[[2]string{o.AgentID, o.Role}] = true
		}
		offered[o.FrameworkID]++
	}
	resLeft := func(agent string, other func(role string) bool) bool {
		for role, r := range agents[agent].Reserved {
			if !r.IsEmpty() && !resOffered[[2]string{agent, role}] && other(role) {
				return true
			}
		}
		return false
	}
	nAgents := len(s.Agents) + len(s.Excluded)
	cfg := map[string]Role{}
	for _, r := range s.Roles {
		cfg[r.Name] = r
	}
	// Utilization after the round: used is total minus what is left.
	var total, left resources.Resources
	for _, ag := range s.Agents {
		total = total.Add(resources.Resources{Scalars: ag.Total.Scalars})
		left = left.Add(resources.Resources{Scalars: leftUnres[ag.ID].Scalars})
		for role, r := range ag.Reserved {
			if !resOffered[[2]string{ag.ID, role}] {
				left = left.Add(resources.Resources{Scalars: r.Scalars})
			}
		}
	}
	// capTight: some scalar kind has less room under r's cap than the
	// minimum allocatable of it (none at all for kinds without a minimum):
	// the only ways max_utilization can be named (the whole role at the
	// cap, or an agent's remainder cut below the minimum by it).
	capTight := func(r string) bool {
		m := cfg[r].MaxUtilization
		if m <= 0 {
			return false
		}
		for n, t := range total.Scalars {
			if t > 0 && int64(m*float64(t)+1e-6)-(t-left.Milli(n)) < max(minRes.Milli(n), 1) {
				return true
			}
		}
		return false
	}
	for i, ft := range tr.Frameworks {
		f := s.Frameworks[slices.IndexFunc(s.Frameworks, func(f Framework) bool { return f.ID == ft.ID })]
		var roles []string
		for _, r := range f.Roles {
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
		if !slices.Equal(roles, ft.Roles) {
			return fmt.Errorf("%s: roles %v, want %v", ft.ID, ft.Roles, roles)
		}
		if ft.Offered != offered[ft.ID] {
			return fmt.Errorf("%s: offered %d, but %d offers", ft.ID, ft.Offered, offered[ft.ID])
		}
		sum := ft.Offered
		for j, rc := range ft.Reasons {
			sum += rc.Count
			if rc.Count <= 0 || (j > 0 && ft.Reasons[j-1].Reason >= rc.Reason) {
				return fmt.Errorf("%s: reasons not positive and in order: %+v", ft.ID, ft.Reasons)
			}
			a := rc.ExampleAgent
			_, known := agents[a]
			_, isExcluded := excluded[a]
			if !known && !isExcluded {
				return fmt.Errorf("%s: %s example agent %q is unknown", ft.ID, rc.Reason, a)
			}
			bad := false
			switch rc.Reason {
			case ReasonSuppressed:
				bad = !slices.ContainsFunc(roles, func(r string) bool { return f.Suppressed[r] })
			case ReasonAgentDraining, ReasonAgentRestarting, ReasonAgentUnreachable:
				bad = excluded[a] != rc.Reason
			case ReasonDeclinedFilter:
				bad = !slices.ContainsFunc(f.Filters, func(flt Filter) bool { return flt.AgentID == a && flt.Until.After(now) })
			case ReasonNothingFree:
				bad = !known || !leftUnres[a].IsEmpty() || resLeft(a, func(string) bool { return true })
			case ReasonReservedForOtherRole:
				bad = !known || allocatable(leftUnres[a]) || !resLeft(a, func(r string) bool { return true })
			case ReasonBelowMinAllocatable:
				bad = !known || allocatable(leftUnres[a])
			case ReasonMaxUtilization:
				bad = !slices.ContainsFunc(roles, capTight)
			case ReasonRoleLimit:
				bad = !slices.ContainsFunc(roles, func(r string) bool { return len(cfg[r].Limit.Names()) > 0 })
			case ReasonQuotaHeadroom:
				bad = !slices.ContainsFunc(s.Roles, func(r Role) bool { return len(r.Guarantee.Names()) > 0 })
			}
			if bad {
				return fmt.Errorf("%s: example agent %s does not show %s (left %s)", ft.ID, a, rc.Reason, leftUnres[a])
			}
		}
		if want := len(roles) * nAgents; sum != want {
			return fmt.Errorf("%s: offered plus reasons is %d, want roles x agents = %d: %+v", ft.ID, sum, want, tr.Frameworks[i])
		}
	}
	return nil
}

func genExcluded(t *rapid.T, s *Snapshot) {
	for i := range rapid.IntRange(0, 2).Draw(t, "excluded") {
		s.Excluded = append(s.Excluded, ExcludedAgent{
			ID:     fmt.Sprintf("x%d", i),
			Reason: rapid.SampledFrom([]Reason{ReasonAgentDraining, ReasonAgentRestarting, ReasonAgentUnreachable}).Draw(t, "exreason"),
		})
	}
}

func TestTraceProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, now := genSnapshot(t)
		genExcluded(t, &s)
		seed := rapid.Uint64().Draw(t, "seed")
		var tr Trace
		offers := AllocateTraced(s, now, seed, &tr)
		if got, want := formatOffers(offers), formatOffers(Allocate(s, now, seed)); got != want {
			t.Fatalf("AllocateTraced offers differ from Allocate:\n%s\nwant:\n%s", got, want)
		}
		if err := checkTrace(s, now, offers, &tr); err != nil {
			t.Fatalf("%v\n%s", err, formatTrace(&tr))
		}
		var again Trace
		AllocateTraced(s, now, seed, &again)
		if formatTrace(&again) != formatTrace(&tr) {
			t.Fatalf("trace not deterministic")
		}
	})
}

// TestVerdictIsWhyTheRoundStopped checks the claim verdict relies on: at
// the end of a round, for a framework of role r that neither suppressed r
// nor filtered agent a and got no offer of a for r, what r could still take
// of a (its free unreserved part trimmed by capacity, or its reservation
// there) is below the minimum, or r is over its utilization cap. So the
// role-level reasons name a real obstacle, and quota_headroom (the last
// one) is not a catch-all.
func TestVerdictIsWhyTheRoundStopped(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, now := genSnapshot(t)
		seed := rapid.Uint64().Draw(t, "seed")
		st := newRound(s, now)
		order := shuffledAgents(s.Agents, seed)
		st.reservedPass(order)
		st.fairPass(order, true)
		st.fairPass(order, false)
		for _, r := range st.roles {
			for _, fe := range r.fws.items {
				for ai := range st.agents {
					a := &st.agents[ai]
					if st.isFiltered(fe.fw, int32(ai)) || slices.ContainsFunc(a.assigned, func(as assignment) bool { return as.role == r }) {
						continue
					}
					for i := range a.reserved {
						if rp := &a.reserved[i]; rp.role == r && st.allocatable(rp.res) {
							t.Fatalf("%s: role %s left its allocatable reservation on %s", st.fws[fe.fw].id, r.name, a.id)
						}
					}
					if st.atCap(r) {
						continue
					}
					o := make(vec, len(a.free))
					for d, f := range a.free {
						o[d] = min(f, st.capacity(r, d, false))
					}
					if st.allocatable(o) {
						t.Fatalf("%s: role %s could still take %v of %s (verdict %s)", st.fws[fe.fw].id, r.name, o, a.id, st.verdict(r, int32(ai)))
					}
				}
			}
		}
	})
}

// TestNilTraceAllocatesNothingMore holds the hot path to its promise: a
// nil trace allocates no more than the round did before tracing existed
// (Allocate is AllocateTraced with nil).
func TestNilTraceAllocatesNothingMore(t *testing.T) {
	// Counted without the buffer pool: what a sync.Pool hands back varies
	// from run to run (under -race it drops Puts at random), which made
	// the two counts differ by one now and then.
	poolBuffers = false
	t.Cleanup(func() { poolBuffers = true })
	s := BenchSnapshot(200, 20)
	now := time.Unix(0, 0)
	plain := testing.AllocsPerRun(5, func() { Allocate(s, now, 1) })
	nilTrace := testing.AllocsPerRun(5, func() { AllocateTraced(s, now, 1, nil) })
	traced := testing.AllocsPerRun(5, func() { AllocateTraced(s, now, 1, &Trace{}) })
	if nilTrace != plain {
		t.Fatalf("AllocateTraced(nil) allocates %v times, Allocate %v", nilTrace, plain)
	}
	if traced <= plain {
		t.Fatalf("a real trace allocated %v times, no more than none (%v): is it filled at all?", traced, plain)
	}
}

// TestEveryReasonHasAScenario: the datadriven scenarios (whose output
// TestScenarios checks) show every reason at least once.
func TestEveryReasonHasAScenario(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	var all strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	for _, r := range Reasons() {
		if !strings.Contains(all.String(), " "+r.String()+"=") {
			t.Errorf("no scenario shows reason %s", r)
		}
	}
}

func TestReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		n := r.String()
		if n == "unknown" || seen[n] {
			t.Fatalf("reason %d: name %q missing or repeated", r, n)
		}
		seen[n] = true
	}
	if len(seen) != numReasons-1 || Reason(0).String() != "unknown" {
		t.Fatalf("want %d named reasons, got %v", numReasons-1, seen)
	}
}
