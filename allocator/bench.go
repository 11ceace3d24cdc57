package allocator

import (
	"fmt"
	"slices"
	"time"

	"github.com/agora-sched/agora/resources"
)

// BenchResult is what Bench measured. The JSON names are those of
// `agora bench allocator --json`.
type BenchResult struct {
	Agents         int     `json:"agents"`
	Frameworks     int     `json:"frameworks"`
	CycleMsP50     float64 `json:"cycle_ms_p50"`
	CycleMsP99     float64 `json:"cycle_ms_p99"`
	OffersPerCycle int     `json:"offers_per_cycle"`
}

// BenchSnapshot builds the benchmark cluster: agents identical machines
// (cpus:16;mem:65536;disk:100000;ports:[31000-32000]) with everything free,
// and frameworks spread over max(1, frameworks/10) roles with weights 1 to 3
// and nothing allocated.
func BenchSnapshot(agents, frameworks int) Snapshot {
	var s Snapshot
	capacity := resources.MustParse("cpus:16;mem:65536;disk:100000;ports:[31000-32000]")
	s.Agents = make([]Agent, agents)
	for i := range s.Agents {
		s.Agents[i] = Agent{ID: fmt.Sprintf("agent-%06d", i), Total: capacity, Unreserved: capacity}
	}
	nRoles := max(1, frameworks/10)
	for i := range nRoles {
		s.Roles = append(s.Roles, Role{Name: fmt.Sprintf("role-%04d", i), Weight: float64(1 + i%3)})
	}
	s.Frameworks = make([]Framework, frameworks)
	for i := range s.Frameworks {
		s.Frameworks[i] = Framework{ID: fmt.Sprintf("fw-%06d", i), Roles: []string{s.Roles[i%nRoles].Name}}
	}
	return s
}

// Bench runs rounds allocation rounds (at least one) over
// BenchSnapshot(agents, frameworks), each with its own seed derived from
// seed, and reports the wall-clock duration of a round. It is a measuring
// tool for `agora bench allocator`; Allocate itself never reads the clock.
func Bench(agents, frameworks, rounds int, seed uint64) BenchResult {
	s := BenchSnapshot(agents, frameworks)
	rounds = max(rounds, 1)
	durs := make([]float64, rounds)
	offers := 0
	now := time.Unix(0, 0)
	for i := range durs {
		start := time.Now()
		out := Allocate(s, now, seed+uint64(i))
		durs[i] = float64(time.Since(start).Nanoseconds()) / 1e6
		offers = len(out)
	}
	slices.Sort(durs)
	pct := func(p float64) float64 {
		i := int(p*float64(len(durs))+0.5) - 1
		return durs[min(max(i, 0), len(durs)-1)]
	}
	return BenchResult{
		Agents:         agents,
		Frameworks:     frameworks,
		CycleMsP50:     pct(0.50),
		CycleMsP99:     pct(0.99),
		OffersPerCycle: offers,
	}
}

// IncrementalResult is what BenchIncremental measured. The JSON names are
// those of `agora bench allocator --incremental --json`.
type IncrementalResult struct {
	Agents     int `json:"agents"`
	Frameworks int `json:"frameworks"`
	// FullRoundMs is the full round that offers every agent
	// (Incremental.Round: Allocate, recording the offers in the mirrored
	// snapshot and building the cache).
	FullRoundMs float64 `json:"full_round_ms"`
	// FreedMsP50 and FreedMsP99: one agent's offer returned, then the
	// offer decision (Incremental.FreeAndAllocate).
	FreedMsP50 float64 `json:"freed_ms_p50"`
	FreedMsP99 float64 `json:"freed_ms_p99"`
	// FastRounds of Rounds took the one-agent path; every one re-offered
	// the freed agent (checked).
	Rounds     int `json:"rounds"`
	FastRounds int `json:"fast_rounds"`
}

// BenchIncremental offers the whole BenchSnapshot(agents, frameworks) in
// one full round, then rounds times returns one agent's offer (agents in
// turn) and times the decision that re-offers it. It fails if a freed
// agent is not offered again in full, or not alone.
func BenchIncremental(agents, frameworks, rounds int, seed uint64) (IncrementalResult, error) {
	res := IncrementalResult{Agents: agents, Frameworks: frameworks, Rounds: max(rounds, 1)}
	now := time.Unix(0, 0)
	inc := NewIncremental(BenchSnapshot(agents, frameworks), now)
	start := time.Now()
	first := inc.Round(seed)
	res.FullRoundMs = float64(time.Since(start).Nanoseconds()) / 1e6
	if len(first) != agents {
		return res, fmt.Errorf("allocator: bench: the full round made %d offers for %d agents", len(first), agents)
	}
	byAgent := make(map[string]Offer, len(first))
	for _, o := range first {
		byAgent[o.AgentID] = o
	}
	durs := make([]float64, res.Rounds)
	for i := range durs {
		o := byAgent[first[(i*7919)%len(first)].AgentID]
		start := time.Now()
		out, err := inc.FreeAndAllocate(o.AgentID, o.FrameworkID, o.Role, o.Unreserved, seed+uint64(i)+1)
		durs[i] = float64(time.Since(start).Nanoseconds()) / 1e6
		if err != nil {
			return res, err
		}
		if len(out) != 1 || out[0].AgentID != o.AgentID || !out[0].Unreserved.Equal(o.Unreserved) {
			return res, fmt.Errorf("allocator: bench: freeing %s gave %d offers, want its whole resources again", o.AgentID, len(out))
		}
		byAgent[o.AgentID] = out[0]
	}
	slices.Sort(durs)
	pct := func(p float64) float64 {
		i := int(p*float64(len(durs))+0.5) - 1
		return durs[min(max(i, 0), len(durs)-1)]
	}
	res.FreedMsP50, res.FreedMsP99, res.FastRounds = pct(0.50), pct(0.99), inc.FastRounds
	return res, nil
}
