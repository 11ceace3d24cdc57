// Package check holds the chaos suite's checkers. Each one takes a history
// recorded by the workload or a state (live or replayed from a Raft log) and
// returns the violations it finds; none of them talks to a cluster.
//
//   - Roles: linearizability of role configuration as the clients saw it,
//     with porcupine (SetRole/DeleteRole are writes of a per-role register,
//     ListRoles is a read of every tracked role). On failure
//     LinResult.Visualize writes porcupine's HTML view.
//   - LostWrites: every acknowledged role write is in the final state, or
//     was superseded by a write that may have been ordered after it.
//   - CheckAllocation / ViewOf: at one index, for every agent, used +
//     offered <= reserved per role and used + offered + reserved-for-others
//     <= total in the unreserved pool, computed from tasks, volumes, offers
//     and reservations (not from the FSM's own accounting).
//   - CheckVolumeExclusive / VolumeUsesOf: at one index, no persistent
//     volume is used by two live (non-terminal) tasks, and a live task's
//     volume is on the task's agent.
//   - Replay: opens a stopped master's Raft storage read-only, restores its
//     latest snapshot into a fresh fsm.FSM and applies every later entry,
//     running CheckAllocation and CheckVolumeExclusive after each one, and tracks the life of every
//     offer, every teardown and every preemption (Preemptions).
//   - Preemptions: run by Replay over the applied commands. Every applied
//     Preempt decision is judged against the state it was applied to: each
//     victim exists, is revocable and of a role whose priority then is
//     lower than the demanding role's, and is named in no earlier decision;
//     every task that gets a status with reason PREEMPTED (or whose
//     kill_reason is PREEMPTED) is a victim of a decision applied at or
//     before that index. A replay from a snapshot counts the preemptions in
//     force there, and the tasks already being killed for preemption, as
//     decided.
//   - Delivery: every task's latest committed status reached its framework.
//   - KVLost: every write the kv service (examples/kvservice, run as a
//     service by the service scheduler) acknowledged is read back from it
//     after the run with the value written.
//
// Drive it: record ops during a run, stop the cluster, then call Replay on a
// surviving master's data directory and the history checkers; sum the
// violations.
package check
