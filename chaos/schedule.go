package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The faults the suite injects.
const (
	// KillLeader SIGKILLs the Raft leader and restarts it (data intact) after Hold.
	KillLeader Kind = "kill-leader"
	// KillFollower SIGKILLs a follower master and restarts it after Hold.
	KillFollower Kind = "kill-follower"
	// KillAgent SIGKILLs an agent and restarts it (checkpoints intact) after Hold.
	KillAgent Kind = "kill-agent"
	// PauseMaster SIGSTOPs a master (the leader half the time) for Hold,
	// longer than the election timeout, then SIGCONTs it.
	PauseMaster Kind = "pause-master"
	// RestartMaster stops a master gracefully (SIGTERM) and starts it again.
	RestartMaster Kind = "restart-master"
	// KillAll SIGKILLs every master and agent, then restarts them all.
	KillAll Kind = "kill-all"
	// RemoveMaster SIGKILLs a follower, removes it from the Raft
	// configuration (RemovePeer), wipes its data and starts it again under
	// the same id: the leader re-adds it when gossip sees it (online
	// membership change; it catches up from a snapshot or the log).
	RemoveMaster Kind = "remove-master"
	// PartitionLeader cuts the leader off the network for Hold (docker tier).
	PartitionLeader Kind = "partition-leader"
	// PartitionMinority cuts a minority of masters off for Hold (docker tier).
	PartitionMinority Kind = "partition-minority"
	// PartitionAgent cuts an agent off for Hold (docker tier).
	PartitionAgent Kind = "partition-agent"
)

// ProcessKinds are the faults the process tier can inject.
var ProcessKinds = []Kind{KillLeader, KillFollower, KillAgent, PauseMaster, RestartMaster, KillAll, RemoveMaster}

// DockerKinds are the faults the docker tier can inject.
var DockerKinds = append(slices.Clone(ProcessKinds), PartitionLeader, PartitionMinority, PartitionAgent)

// ParseKinds parses a comma-separated list of kinds ("" or "all" = every
// kind the tier supports, given as allowed).
func ParseKinds(s string, allowed []Kind) ([]Kind, error) {
	if s == "" || s == "all" {
		return slices.Clone(allowed), nil
	}
	var out []Kind
	for _, p := range strings.Split(s, ",") {
		k := Kind(strings.TrimSpace(p))
		if k == "" {
			continue
		}
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("chaos: fault %q not supported here (have %v)", k, allowed)
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("chaos: empty fault list")
	}
	return out, nil
}

// Fault is one scheduled fault.
type Fault struct {
	// At is when the fault starts, from the start of the run.
	At   time.Duration
	Kind Kind
	// Hold is how long the fault lasts before it is healed (restart,
	// SIGCONT, reconnect).
	Hold time.Duration
	// Pick chooses the victim among the candidates at injection time
	// (Pick mod len(candidates)): which master leads is only known then.
	Pick uint64
}

// String formats the fault for the log.
func (f Fault) String() string {
	return fmt.Sprintf("%s at %s hold %s pick %d", f.Kind, f.At.Round(time.Millisecond), f.Hold.Round(time.Millisecond), f.Pick)
}

// ScheduleConfig shapes a schedule.
type ScheduleConfig struct {
	Seed     uint64
	Duration time.Duration
	Kinds    []Kind
	// Warmup passes before the first fault (default 3s); Cooldown is kept
	// free of faults at the end so the cluster settles (default 3s).
	Warmup, Cooldown time.Duration
	// MinGap and MaxGap bound the time between the end of one fault and the
	// start of the next (defaults 1s and 4s). MinHold and MaxHold bound a
	// fault's length (defaults 1s and 4s).
	MinGap, MaxGap, MinHold, MaxHold time.Duration
}

// Schedule returns the faults of a run: one at a time, each healed before
// the next, chosen with a PCG generator seeded from Seed. The same config
// gives the same schedule.
func Schedule(c ScheduleConfig) []Fault {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Warmup, 3*time.Second)
	def(&c.Cooldown, 3*time.Second)
	def(&c.MinGap, time.Second)
	def(&c.MaxGap, 4*time.Second)
	def(&c.MinHold, time.Second)
	def(&c.MaxHold, 4*time.Second)
	if len(c.Kinds) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	var out []Fault
	t := c.Warmup
	for {
		f := Fault{At: t, Kind: c.Kinds[rng.IntN(len(c.Kinds))], Hold: between(c.MinHold, c.MaxHold), Pick: rng.Uint64()}
		if f.At+f.Hold > c.Duration-c.Cooldown {
			return out
		}
		out = append(out, f)
		t = f.At + f.Hold + between(c.MinGap, c.MaxGap)
	}
}
