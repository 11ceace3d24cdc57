// Package master is one agora master: a Raft voter (hashicorp/raft over a
// bbolt log in raft-boltdb's format, package raftlog) holding the replicated [fsm.FSM], a gossip member that finds
// the other masters, and one HTTP listener serving the Connect services
// (operator, agent, scheduler), grpc.health.v1, server reflection, /metrics
// and /debug/pprof. metrics.go says which master counts what on /metrics;
// docs/metrics.md lists the series.
//
// Driving it:
//
//  1. Fill a [Config]: ID (unique and stable across restarts; it is the Raft
//     server id), DataDir (raft log, stable store and snapshots live under
//     DataDir/raft), the three listen addresses, the gossip Join list (the
//     same list for every master; it may include our own address) and
//     BootstrapExpect. Call [New].
//  2. Call [Master.Start]. Listeners are bound when it returns; joining the
//     gossip pool is retried in the background. When BootstrapExpect
//     masters (ourselves included) are alive in gossip, none of them has
//     Raft state and we have the lowest id, we bootstrap the Raft
//     configuration with all of them. A master with existing Raft state
//     never bootstraps, so restarts cannot split the cluster.
//  3. The leader adds every live master it sees in gossip but not in the
//     Raft configuration as a non-voter and records masters' addresses in
//     the FSM. Its autopilot (hashicorp/raft-autopilot, autopilot.go)
//     promotes a non-voter once it has been healthy for
//     [Config].AutopilotStabilization and removes a master failed in
//     gossip for [Config].AutopilotDeadServerCleanup while quorum allows;
//     operators remove one at once (OperatorService.RemovePeer, which
//     refuses the leader and voters quorum needs).
//  4. On winning leadership the master issues a Barrier, then the leader
//     type (leader.go) establishes its term: it starts every leader-only
//     task (master reconciliation, allocation, expiry of offers, filters,
//     failover timeouts and preemptions, agent liveness, drain deadlines,
//     preemption) with a context that is
//     cancelled when leadership is lost or the master stops, and once they
//     all returned it revokes the term: every framework stream is closed
//     with a redirect to the new leader. A new term never starts before the
//     previous one was revoked. The RPC handler types run no goroutines.
//     Agent liveness decisions are a pure tracker (liveness.go) that the
//     leader drives with gossip events, probe verdicts and the clock
//     ([Config].Now). Drain deadlines (drain.go) are read from the state
//     alone (a drained agent's deadline and whether its kill was applied),
//     so a new leader fires a deadline the old one did not reach: it
//     proposes DrainDeadline with its own time once the deadline passed.
//     Preemption (preemption.go) is likewise the pure
//     preempt.Decide, run over the state after it changes (at most every
//     100 ms): it proposes one RescindOffers entry for lower-priority
//     offers in the way of higher-priority demand and one Preempt entry
//     per decision (id, time, window [Config].PreemptionWindow, deadline
//     and status uuids stamped by the leader); the FSM rejects a decision
//     whose victims are being killed already, so a new leader that
//     recomputes after a failover kills nobody twice.
//  5. Writes go through [Master.Apply]; reads through [Master.ReadState]
//     (linearizable: VerifyLeader and wait for the commit index to be
//     applied) or [Master.State] (local, possibly stale). Apply judges a
//     command against the leader's state first (a refused one never
//     reaches the log); concurrent writes of batchable kinds
//     ([fsm.Batchable]: roles, kills, revive, suppress, demand, decline)
//     then queue while earlier entries commit and go out together as one
//     [fsm.CmdBatch] entry (coalesce.go), each caller answered with its
//     own item's verdict; acknowledgements and agents' status updates are
//     coalesced the same way into their own batch entries.
//  6. [Master.Shutdown] (or cancelling Start's context) stops gracefully:
//     leadership transfer, gossip leave, raft shutdown. [Master.Kill] is
//     abrupt, like SIGKILL, for tests.
//
// # Redirects
//
// A follower asked for something only the leader can do answers
// Unavailable with a [agorav1.LeaderRedirect] error detail and an
// "Agora-Leader: URL" response header. When no leader is known the error
// says so and carries neither. package rpc/client follows redirects.
//
// # Config fields
//
// RaftProfile "default" uses raft.DefaultConfig timings (1 s heartbeat and
// election timeouts, 500 ms leader lease); "fast" uses 600 ms / 600 ms /
// 400 ms, for loopback clusters. GossipProfile selects gossip failure
// detection timings (see package gossip). Cluster names the cluster; a
// master ignores gossip members of another cluster. The remaining fields
// (AgentGoneTimeout, AgentReregisterTimeout, AgentRemovalRate, LivenessGrace, FrameworkReconnectGrace, OfferTimeout,
// HeartbeatInterval, DefaultFailoverTimeout, AllocationInterval) configure
// the leader-only work other files of this package run.
//
// TLS (a tlsconf.Bundle whose certificate is valid for
// master.<Cluster>.agora, or New fails) turns on mutual TLS on the HTTP
// listener and the Raft transport, https URLs, and the checks described
// in tls.go: only agent certificates reach the AgentService, only master
// certificates speak Raft, and a gossip member becomes a voter only after
// proving a master certificate on its Raft address. GossipKeyring
// encrypts gossip; the GossipKeyring operator call rotates it online.
package master
