// Package preempt decides how demand of a higher priority is made room for:
// which outstanding offers of lower priorities to rescind and which
// revocable tasks of lower priorities to kill. Like the allocator it is a
// pure core: no goroutines, no clock, no I/O. The master's leader drives
// it:
//
//  1. Build an Input from replicated state: active agents with their free
//     unreserved resources, outstanding offers (with their role's
//     priority) and revocable live tasks not being killed already (with
//     their role's priority and launch time); the demand of connected
//     frameworks for roles they have not suppressed; the preemptions in
//     force as earmarks.
//  2. Call Decide(input).
//  3. Propose the rescinds (one RescindOffers entry) and each preemption
//     (one Preempt entry, leader-stamped: id, time, window, status uuids).
//     The FSM re-checks every preemption against current state, so a
//     stale or repeated decision is rejected and kills nobody twice.
//
// # Rules
//
// Demands are served in order: higher priority first, then framework id,
// role, and the order the framework gave. Each demand is Count units of
// Shape; each unit is placed in the first of:
//
//   - placed: an earmark of the demand's framework and role has room for
//     it (a preemption in force: the room is counted whether or not its
//     victims have ended, so a decision is not made twice); or an agent
//     (id order, first fit) has it in free unreserved resources not held
//     by an earmark, plus the framework's own offers for the role there;
//   - rescinding: on the first agent (id order) where free resources plus
//     outstanding offers of lower priorities hold it, those offers are
//     rescinded, lowest priority first, until the units fit; as many units
//     as then fit are served at once;
//   - preempting: the agent and victims are chosen as Kubernetes'
//     scheduler does. On each agent, start with every revocable task and
//     offer of a lower priority gone; then reprieve tasks in order
//     (highest priority first, then the earliest launched, then framework
//     and task id) while the unit still fits without them, then offers
//     (highest priority first); what is not reprieved goes. Of the agents
//     where this makes room, the one whose victims' highest priority is
//     lowest wins, then the one with the fewest victims, then the one
//     whose earliest launched victim of that highest priority is the most
//     recent, then the smallest id. So victims are the lowest priority
//     first, then the fewest tasks, then the most recently started; never a
//     task of an equal or higher priority, never a non-revocable task
//     (they are not in the input), and never more than one unit needs:
//     keeping any one victim would leave the unit without room. As many
//     further units as the freed room holds are served by the same
//     decision;
//   - unmet: unsatisfiable if the shape is larger than every agent's
//     total, no_victims otherwise.
//
// Agents the demanding framework filtered (Demand.Excluded: it declined
// them) are skipped in every step: their room would not be offered to it.
//
// Every unit placed, rescinded for or preempted for reduces what the
// following units and demands see, so one pass never plans the same room
// twice.
//
// # Cost
//
// Scalars are dense vectors, converted once per pass (one linear pass
// over the tasks, no per-task allocation). A caller that keeps them
// between passes hands them over in Agent.Dense (the master's cache
// does): Decide then reads no map at all, uses the task vectors in place
// when the demanded kinds lead Input.Kinds, and with Dense.Sorted (tasks
// in reprieve order, SortTasks) sorts no agent's tasks and bounds each
// agent in one walk over its lower tasks. A unit placed in free
// resources costs at most one scan of the agents. A demand's first
// preemption decision scans every agent's candidate tasks once, without
// sorting them, for a bound on the agent's best victim set (the victims'
// highest priority exactly, their number and their latest start at
// most); only the agents that come up best in that order have their
// tasks sorted in reprieve order and their victims chosen, and the
// winner is the same as if every agent had been (BenchmarkDecide:
// 10,000 agents, 100,000 revocable tasks).
package preempt
