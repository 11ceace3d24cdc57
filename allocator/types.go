package allocator

import (
	"time"

	"github.com/agora-sched/agora/resources"
)

// Snapshot is the allocator's whole input besides time and seed. The master
// builds it from replicated state; the allocator never modifies it. Agent,
// framework and role ids must be unique within their slice.
type Snapshot struct {
	// Agents are the machines whose free resources may be offered.
	Agents []Agent
	// Frameworks are the subscribed frameworks that may receive offers.
	Frameworks []Framework
	// Roles are the configured roles. A role that a framework uses but that
	// is not configured has weight 1, no guarantee, no limit, priority 0.
	Roles []Role
	// MinAllocatable is the smallest useful offer: an offer is made only if,
	// for at least one scalar of MinAllocatable, it holds at least that much.
	// With no scalars it defaults to DefaultMinAllocatable (cpus 0.01 OR mem 32).
	MinAllocatable resources.Resources
	// Excluded are agents the master offers nothing of (draining or
	// unreachable). Allocate ignores them; AllocateTraced counts them for
	// every framework, so that `agora explain` can name them. Their ids
	// must not repeat those of Agents.
	Excluded []ExcludedAgent
	// Earmarks hold free unreserved resources of agents for one framework
	// and role (what a preemption freed for its demand); see the package
	// documentation.
	Earmarks []Earmark
}

// DefaultMinAllocatable is used when Snapshot.MinAllocatable has no scalars:
// an offer needs at least 0.01 cpus or 32 MiB of memory.
var DefaultMinAllocatable = resources.MustParse("cpus:0.01;mem:32")

// Agent is one machine as the allocator sees it.
type Agent struct {
	// ID identifies the agent; offers name it.
	ID string
	// Total is the agent's whole capacity. Cluster totals (the denominators
	// of every share, and of utilization) are sums of Total.
	Total resources.Resources
	// Unreserved is what is free and unreserved right now: not used by
	// tasks, not offered, not reserved.
	Unreserved resources.Resources
	// Reserved maps a role to the resources reserved for it on this agent
	// that are free right now. They are offered only to that role.
	Reserved map[string]resources.Resources
}

// Framework is one subscribed framework.
type Framework struct {
	// ID identifies the framework; offers name it.
	ID string
	// Roles are the roles the framework may receive offers for.
	Roles []string
	// Suppressed marks roles for which the framework wants no offers.
	Suppressed map[string]bool
	// Filters refuse offers from one agent until a time (decline filters).
	Filters []Filter
	// Allocated maps a role to what the framework holds in that role now
	// (used by its tasks plus outstanding offers). It drives DRF shares and
	// counts against the role's guarantee and limit.
	Allocated map[string]resources.Resources
	// Revocable: the framework has the revocable resources capability, so
	// its offers for roles below the top priority band are revocable.
	Revocable bool
}

// Filter refuses offers from AgentID to its framework until Until. A filter
// with Until <= now is ignored.
type Filter struct {
	AgentID string
	Until   time.Time
}

// Role is a configured role.
type Role struct {
	// Name is the role's name, as used in Framework.Roles.
	Name string
	// Weight scales the role's fair share: a role with weight 2 is entitled to
	// twice the dominant share of a role with weight 1. <= 0 means 1.
	Weight float64
	// Guarantee (quota) is served before any fair sharing, and unreserved
	// headroom is held back for it while it is not met.
	Guarantee resources.Resources
	// Limit caps the role's allocation per scalar; empty means unlimited,
	// and scalars it does not name are unlimited.
	Limit resources.Resources
	// Priority orders roles before DRF: every role of a higher priority is
	// served before any role of a lower one.
	Priority int32
	// MaxUtilization, if > 0, stops new unreserved offers to the role once
	// cluster utilization reaches it (0.9 = at 90%, no more).
	MaxUtilization float64
}

// Offer is a set of one agent's resources offered to one framework for one role.
type Offer struct {
	FrameworkID, AgentID, Role string
	// Unreserved is the unreserved part of the offer.
	Unreserved resources.Resources
	// Reserved is the part reserved for Role.
	Reserved resources.Resources
	// Revocable marks the unreserved part revocable: the framework has the
	// capability and either Role is below the top priority band (and the
	// offer is not Guaranteed) or Role has a guarantee and this offer lies
	// wholly beyond it.
	Revocable bool
	// Guaranteed: part of the unreserved resources counts toward Role's
	// unmet guarantee (the allocator's guarantee pass), so the offer is
	// never revocable: a guarantee is a promise, not slack.
	Guaranteed bool
}

// Resources returns the whole offer (unreserved plus reserved).
func (o Offer) Resources() resources.Resources {
	return o.Unreserved.Add(o.Reserved)
}
