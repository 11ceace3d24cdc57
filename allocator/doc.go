// Package allocator decides which free resources are offered to which
// framework. It is a pure core: no goroutines, no clock reads, no I/O, no
// global randomness. The master's leader loop drives it:
//
//  1. Build a Snapshot from replicated state: every agent's total, free
//     unreserved and free reserved resources (free = not used by tasks and
//     not already offered), every framework's roles, suppressed roles, decline
//     filters and current holdings per role, and the configured roles.
//  2. Call Allocate(snapshot, now, seed) with a leader-stamped time and a
//     seed derived from the round (for example the Raft index), so that the
//     round can be replayed exactly; or AllocateTraced with a Trace to
//     learn why each framework got what it got (Reasons, below), listing
//     the agents the master offers nothing of in Snapshot.Excluded.
//  3. Propose the returned offers as one entry; the FSM re-checks them
//     against current state, so a stale round can be rejected but never
//     double-allocates.
//
// Allocate never modifies the snapshot. Offers may share maps and slices with
// it (an offer of an agent's whole free resources reuses the agent's value):
// treat both as read-only, as resources.Resources methods do.
//
// # Rules
//
// Shares. A role's dominant share is the largest, over scalar resources, of
// its holdings (the sum of its frameworks' Allocated for it, plus what this
// round offered to it) divided by the cluster total (the sum of the agents'
// Total). Its weighted share is that divided by its weight. A framework's
// share within a role is the dominant share of its holdings in that role.
//
// Role order. Higher Priority first: every role of a higher priority is
// served before any role of a lower one. Within a priority level, lower
// weighted share first, then name. Frameworks within a role: lower share
// first, then id. Shares are updated after every offer, so the order changes
// during the round (hierarchical weighted DRF, as in Mesos).
//
// Agent order. Agents are sorted by id and shuffled with a PCG seeded from
// the seed; each pass below visits them in that order.
//
// Coarse grain. On one agent, all resources for one role go to one
// framework in a round: once a framework got something of an agent for a
// role, later passes give that agent's resources for the role to the same
// framework, and they are merged into one Offer (reserved and unreserved
// parts kept apart).
//
// Eligibility. A framework is considered for a role only if it lists the role
// and has not suppressed it, and for an agent only if it has no filter for
// that agent with Until after now.
//
// Minimum. No offer (and no part of one) is made unless it holds, for at
// least one scalar of MinAllocatable, at least that amount (default cpus 0.01
// or mem 32).
//
// Pass 1, reservations. On each agent, each role's free reservation (roles
// in name order) goes whole to the first eligible framework of that role.
// Reservations are not trimmed by the role's limit, but count towards its
// holdings (hence its share, guarantee and limit headroom).
//
// Pass 2, guarantees. On each agent, roles whose effective guarantee
// (Guarantee, clamped to Limit) is not met are served in role order. A role
// gets, of each scalar it has a guarantee for, at most what is still unmet;
// of other scalars, what is left after headroom (below). The part must
// include something the role still lacks.
//
// Pass 3, fair share. On each agent, roles in role order each get what
// remains, trimmed, until the agent's remainder is below the minimum.
//
// Trimming. Every unreserved part is trimmed per scalar to the role's limit
// headroom (Limit minus holdings) and to the headroom kept for guarantees:
// of the cluster's free unreserved amount, the sum of all roles' unmet
// guarantees is held back, except for the role's own unmet guarantee. A
// guarantee's headroom is held even when its role has no framework asking.
// Ranges and sets (ports) are not trimmed: an agent's unreserved ranges and
// sets go with its first unreserved offer of the round.
//
// Utilization cap. A role with MaxUtilization c > 0 gets no unreserved
// resources once any scalar kind d of the cluster is in use up to its cap
// (used[d] >= floor(c x total[d]), where used is total minus free
// unreserved and free reserved, updated as the round makes offers, so
// tasks, outstanding offers and this round's offers all count), and every
// unreserved part offered to it is trimmed per kind to the room left under
// the cap: no offer takes any kind past it. Its reservations are still
// offered to it.
//
// Revocable. The top priority band is the highest Priority among the
// configured roles (Snapshot.Roles) and the roles that frameworks of the
// snapshot list (an unconfigured role has priority 0). An offer to a
// framework with Revocable set (CAPABILITY_REVOCABLE_RESOURCES), for a
// role whose priority is below the top band, with an unreserved part, is
// marked Revocable: its unreserved part is revocable, and tasks launched
// on it may be preempted for the demand of a higher priority (package
// preempt). A framework without the capability is offered the same
// resources, non-revocable, and its tasks are never preempted. Reserved
// resources are never revocable. Configured roles count towards the band
// even without a framework, so a batch framework that comes first gets
// revocable resources that a prod framework arriving later can reclaim.
// Marking changes no offer's contents: the rules above decide them.
//
// Earmarks. Before the passes above, each earmark (a preemption in force:
// agent, framework, role, resources), in (agent, role, framework) order,
// holds what the agent has free unreserved of its resources. The held part
// is offered to the earmark's framework for the role, as an unreserved
// offer of its own, if the framework is in the snapshot, lists the role,
// has not suppressed it, has no filter for the agent and the part is at
// least the minimum; otherwise it is offered to nobody while the earmark
// lasts. Earmark offers are not trimmed by limits or caps: the preemption
// already judged them. The passes then run on what is left.
//
// # Reasons
//
// AllocateTraced(snapshot, now, seed, trace) returns the same offers as
// Allocate and fills trace with why each framework got what it got. For
// every distinct role R of a framework F and every agent A (the snapshot's
// Agents and Excluded), the pair (R, A) is either offered (F got an offer
// of A for R) or counted under exactly one reason: the first of the list
// below that holds. So a framework's offers plus its counts equal its
// roles times the agents. Each reason carries an example: the agent with
// the smallest id among those it counts. The reasons are judged on the
// state at the end of the round (what is left on each agent, each role's
// holdings, cluster utilization), which is what stopped the round: it
// ends only when no role can take an allocatable part of any agent.
//
//   - suppressed: F suppressed R. Every agent is counted.
//   - agent_draining, agent_restarting, agent_unreachable: A is in
//     Snapshot.Excluded with that reason; the master offers nothing of
//     such agents.
//   - declined_filter: F has a filter for A that has not expired.
//   - max_utilization: R has MaxUtilization and some resource kind of the
//     cluster is in use up to it; counted on every agent, even those with
//     nothing left: the role could not take them if they had. Or, on an
//     agent with allocatable resources left within R's limit, trimming
//     them to the room left under the cap leaves less than the minimum.
//   - role_limit: R's limit headroom (Limit minus holdings) is below the
//     minimum; or, on an agent with allocatable resources left, trimming
//     them to that headroom leaves less than the minimum.
//   - quota_headroom: the cluster has allocatable unreserved resources
//     left, within R's limit, but they are held back for other roles'
//     unmet guarantees; or, on an agent with allocatable resources left,
//     the same holds for that agent's resources.
//   - nothing_free: nothing is left on A after the round (no scalar, range
//     or set, no reservation): tasks, outstanding offers and this round's
//     offers hold it all. Being outranked by a higher priority role or a
//     lower share, or losing A to another framework of R (coarse grain),
//     shows as this reason.
//   - reserved_for_other_role: A has nothing allocatable unreserved left
//     but a reservation for another role that was not offered.
//   - below_min_allocatable: something is left on A (unreserved, or R's own
//     reservation), but less than the minimum.
//
// The role-wide reasons (max_utilization, and role_limit or quota_headroom
// when they hold for the whole cluster) come before the agent ones: they
// would stop R even on a free agent. Trimmed offers are not explained: an
// agent that was offered counts as offered, however small the offer.
//
// Earmark offers are counted apart (FrameworkTrace.Earmarked): the round
// is explained on the snapshot with the earmarked resources held back.
//
// A nil trace costs nothing: the round runs exactly as Allocate and the
// explanation is built after it. A trace costs about O(agents + roles x
// agents with something left + frameworks + offers + filters): the verdict
// of (R, A) does not depend on F except for F's own offers and filters,
// so it is computed once per role and corrected per framework.
//
// # Cost
//
// The round converts the snapshot to dense vectors (one pass over the
// agents' maps, straight into one slab), keeps roles and each role's
// frameworks in heaps keyed by share (ties broken by precomputed name and
// id ranks, not strings), visits each agent a constant number of times in
// the common case, and sorts its offers with a radix sort on the
// framework and agent ranks, so a round costs about
// O(agents x log(roles + frameworks)) plus the filters it meets, not
// O(agents x frameworks). Its largest buffers (the slab, the per-agent
// state, the pending offers) are reused by the next round through a
// sync.Pool, so a round allocates little more than the offers it returns. A naive reference implementation in the tests
// must produce identical offers on random snapshots.
//
// Bench and BenchSnapshot measure rounds with the wall clock for
// `agora bench allocator`; Allocate never calls them.
package allocator
