// Package fsm is agora's replicated state machine: the frameworks, agents,
// offers, tasks, reservations, volumes, roles and masters that Raft keeps
// consistent on every master. It implements raft.FSM.
//
// # Command format
//
// A log entry is one type byte followed by the protobuf encoding of the
// command's message from rpc/proto/agora/v1/commands.proto:
//
//	b, err := fsm.Encode(fsm.CmdSetRole, &agorav1.SetRoleCommand{Role: role})
//	fut := r.Apply(b, timeout) // r is a *raft.Raft whose FSM is fsm.New(cfg)
//	if err := fut.Error(); err != nil { ... } // not leader, timeout
//	res := fut.Response().(fsm.Result)
//	if res.Err != nil { ... } // rejected: map res.Err.Code to a Connect code
//
// Every type has one row in the command table (commands.go): its type
// byte, name, payload message and apply function, declared once; Encode,
// Decode, Apply and CommandType.String all read that table.
//
// The high bit of the type byte (IgnoreUnknown) marks an entry that replicas
// which do not know the type skip (for rolling upgrades); an unknown type
// without it, or a payload that does not decode, panics Apply: that is a bug
// or a corrupt log, and every replica would disagree otherwise.
//
// # Determinism
//
// Apply must reach the same state and the same verdict on every replica, so:
//
//   - it never reads the clock or a random source: every time (now, offer
//     expiry, refuse-until) and every fresh id (offer, framework, reservation
//     and group ids) is stamped into the command by the leader. Uuids of
//     status updates the master generates (agent lost, re-registration) come
//     from the command's status_uuids, or are derived from (index, task);
//   - it never depends on map iteration order: tables are radix trees walked
//     in key order, and everything emitted is sorted;
//   - a command that is wrong for the current state returns
//     Result{Err: &Rejection{...}} and changes nothing: each Apply runs in one
//     radix-tree transaction that is committed only if the command is accepted.
//     Commands that re-check many items (OffersCreated) drop the invalid items
//     and report the kept ones in Result.IDs.
//
// # The one judge
//
// Apply is the only place that decides whether a command is valid. The RPC
// edge decodes a call, checks what only it can know (message sizes, the
// caller's stream token, the cluster name) and builds the command; the
// leader dry-runs it against its state after its leadership barrier
// (State.DryRun, or State.Judge, which also says whether it would change
// anything, so that a resend or a second acknowledgement is answered
// without a log entry), and every replica applies it again. A Rejection
// carries a Code that the master maps to a Connect code in one function
// and a message written for the caller.
//
// To judge late calls precisely the state keeps a bounded history
// (history.go): why the newest offers were removed (accepting one is then
// FailedPrecondition with the reason, not NotFound) and the status uuids
// that newer updates of each task superseded (acknowledging one succeeds
// and changes nothing; an agent resending one changes nothing).
//
// # Reading
//
// State returns an immutable snapshot in O(1) (a pointer to the committed
// tree); readers (RPC handlers, the allocator) never block Apply. Changed
// returns a channel closed at the next applied index, for blocking queries.
// Tasks are indexed by framework, by agent and by id; offers by framework,
// agent and expiry; reservations and volumes by agent, so lookups are prefix
// walks. Per-agent sums (reserved, used, offered) and per-framework
// allocation are kept incrementally and exposed by AgentUsage and
// FrameworkAllocated. CheckInvariants audits them against a recomputation.
//
// # Events
//
// Apply reports what framework streams must hear (offers created and
// removed, task status updates, agents lost, frameworks torn down) to
// Config.OnApply, synchronously, on every replica; only the leader forwards
// them. Config.Logger receives diagnostics (nil means slog.Default()).
//
// # Snapshots
//
// Snapshot captures the current tree; Persist then streams it as records
// uvarint(len) | type byte | deterministic protobuf, header first (magic and
// applied index), then masters, roles, agents, frameworks (with their
// demand), reservations, volumes, offers, tasks, framework records and
// preemptions, each in key order, then the history tables
// (removed offers in removal order, superseded uuids). Two FSMs that applied the
// same log write byte-equal snapshots. Persist encodes batches of records
// on worker goroutines and writes them in order. Restore (ReadState) builds
// a fresh tree aside and swaps it in: records are read in chunks, decoded
// with their index keys (and the tasks' usage summed) on worker
// goroutines, collected in order by one goroutine into a sorted run per
// table and index, and built into a tree bottom-up, with the garbage
// collector paused: nearly everything a restore allocates stays live.
//
// The tree is package fsm/internal/radix: an immutable radix tree without
// the per-node watch channels of hashicorp/go-immutable-radix (nothing
// watched them; they were a third of the heap at a million tasks), whose
// transactions change the nodes they created in place.
//
// # Semantics worth knowing
//
// Terminal task states are sticky. A terminal task is removed when its
// status is acknowledged, or at once when its framework is torn down.
// UNREACHABLE is not terminal: a partition-aware framework's task returns to
// its reported state when the agent re-registers; other frameworks' tasks
// become LOST when the agent is lost, and are marked kill_requested if the
// agent reports them again. An agent that becomes GONE (decommissioned, or
// unreachable past the gone timeout) loses its reservations and volumes in
// the same entry: its id may not register again, so nothing could offer or
// release them. A framework's failover timeout of 0 means it is torn down by
// the first Expire after it disconnects; the leader substitutes its default
// before subscribing.
//
// Drain and maintenance (drain.go): an agent's drain is a record on the
// Agent (started, deadline, whether the deadline's kill was applied, the
// frameworks' answers to the inverse offer), so it is in every snapshot and
// survives the agent's restarts and losses. A drained agent that is up is
// DRAINING while live tasks run there and DRAINED once none does (settled
// whenever a task on it ends); nothing is offered on it. The leader proposes
// DrainDeadline once the deadline has passed: live tasks become KILLING with
// kill_reason DRAINED, and the agent's KILLED update is recorded with that
// reason. CheckInvariants audits the drain states.
//
// Revocable resources and preemption (preempt.go): an offer may be
// revocable (OffersCreated drops one to a framework without
// CAPABILITY_REVOCABLE_RESOURCES); a task launched on the unreserved part
// of a revocable offer is revocable, and launching one without the
// capability is FailedPrecondition. SetDemand replaces a framework's
// demand (InvalidArgument for bad shapes or counts, PermissionDenied for
// a role it does not hold); Suppress clears the suppressed roles' demand.
// Preempt records a leader's decision: every victim must be a live,
// revocable task on the named agent, of a role of a lower priority than
// the demanding role, not being killed already (a decision proposed twice
// is rejected, so nobody is killed twice); victims get a master KILLING
// status with reason PREEMPTED and their agent's KILLED update is recorded
// with reason PREEMPTED. The preemption earmarks its resources for the
// demanding framework until its window after the last victim ended (or its
// deadline); Expire removes it then.
package fsm
