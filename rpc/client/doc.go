// Package client is agora's one way of talking to the masters: leader
// discovery, redirect following and retry for the CLI, the framework SDK
// and the agent.
//
// # Masters
//
// A Client knows several master addresses: those given to New (a
// comma-separated list) or AddMasters, the leaders followers name in
// redirects, and the masters listed by GetStatus and ListPeers answers that
// pass through it. One of them is preferred: the last that answered, which
// after a redirect is the leader. Calls and streams go there first.
//
// A follower answers a call that needs the leader with Unavailable, a
// LeaderRedirect error detail and an "Agora-Leader" header (see
// LeaderFromError); a master that knows no leader, or is becoming the
// leader, answers a plain Unavailable.
//
// # One unary call
//
//  1. The call gets a total bound: WithCallTimeout (default 30s), or the
//     context's deadline if it is sooner. Nothing waits longer, so no
//     caller can hang on a master that does not answer.
//  2. Each attempt goes to one master with its own deadline,
//     WithAttemptTimeout (default 5s). A long poll (a request with
//     wait_seconds, GetAssignments) gets its wait added to both bounds.
//  3. An answer ends the call, except:
//     - a redirect: the next attempt goes to the named leader at once (at
//     most WithMaxRedirects, default 5, per call, so two masters naming
//     each other cannot loop), unless the leader named is one that just
//     failed to answer;
//     - Unavailable (no leader known, leader not ready): the next master
//     is tried.
//  4. A master that does not answer within the attempt deadline (or a
//     dial's timeout) is passed over by every call of the Client for 10s;
//     one whose failure comes at once (connection refused, or reset under
//     the call: a killed master) for 1s only, since it may restart and
//     lead within seconds. The next known master is tried. A master that
//     answered, even "no leader", is never passed over.
//  5. When every master was tried, the Client pauses (jittered, doubling
//     from 50ms to 1s, WithBackoff) and starts another round, until the
//     total bound.
//  6. InvalidArgument, NotFound, PermissionDenied, FailedPrecondition,
//     AlreadyExists and every other code are returned at once.
//
// # Which calls retry
//
// A failed attempt either certainly changed nothing or has an unknown
// outcome. Certainly nothing:
//   - the request never left (the dial failed or never completed);
//   - a follower's redirect, or an Unavailable the master answered before
//     proposing (no leader known, leader not ready, shutting down).
//
// Unknown outcome:
//   - no answer within the attempt deadline after the request was sent
//     (a paused or partitioned master may still apply it), a broken
//     connection, DeadlineExceeded or Canceled answered by the master;
//   - Unavailable with the header "Agora-Outcome: unknown": the master
//     had proposed the write when it lost leadership (or raft shut down).
//
// Every call retries after "certainly nothing". After an unknown outcome,
// reads and writes whose second application leaves the same state and
// answer as one retry (RetryAlways); the others fail with
// ErrOutcomeUnknown (RetryIfNotApplied), and the caller reads the state
// to learn what happened. PolicyOf gives a procedure's policy:
//
//	OperatorService
//	  GetStatus, List*,          always      reads
//	  ExplainFramework
//	  SetRole                    not-applied a duplicate applied after a concurrent SetRole would
//	  SetRoles                               undo it (not linearizable; chaos seed 301 found it).
//	                                         The CLI's "role set", one operator's last-writer-
//	                                         wins tool, tries again itself
//	  TeardownFramework          always      tearing down a torn-down framework is a no-op
//	  DeleteRole                 not-applied a second delete answers NotFound
//	  RemovePeer                 not-applied a second removal answers NotFound
//	  ListServices, GetService   always      reads
//	  ScaleService,              not-applied set the target count or spec: a duplicate after
//	  UpdateService                          another operator's change would undo it
//	  RunService                 not-applied a second run answers AlreadyExists
//	  ReplaceServicePod          not-applied a second replace moves the pod again
//	  RemoveService              not-applied a second may answer NotFound (the service is gone)
//	  DrainAgent                 not-applied a duplicate after another operator's undrain would
//	                                         drain the agent again
//	  UndrainAgent               not-applied a second answers FailedPrecondition (not draining)
//	  GossipKeyring              always      install, use or remove a key twice leaves the
//	                                         keyrings as once; list is a read
//	SchedulerService
//	  Reconcile                  always      a read; its answers are resent as updates, which
//	                                         frameworks must tolerate anyway
//	  Revive, Suppress           always      set flags
//	  Kill                       always      an already killed task is answered OK
//	  Acknowledge                always      a duplicate is answered OK (an acknowledged terminal
//	                                         task is gone: NotFound, which the SDK treats as done)
//	  UpdateFramework            always      replaces the framework info
//	  AnswerInverseOffer         always      the same answer again is a no-op
//	  Demand                     always      replaces the framework's demand
//	  Accept, Decline            not-applied the offers are used up by the first: a second answers
//	                                         NotFound or FailedPrecondition, though the first
//	                                         launched the tasks
//	  Teardown                   not-applied a second is refused: the framework is torn down
//	  ListRecords                always      a read
//	  PutRecord, DeleteRecord    not-applied compare-and-set: a second answers FailedPrecondition
//	                                         (the version moved) though the first applied
//	AgentService
//	  RegisterAgent              always      re-registering from the same address is the agent's
//	                                         normal way back
//	  UpdateStatus               always      statuses carry uuids; a resent uuid is skipped
//	  GetAssignments             always      a read (long poll)
//	  StopAgent                  always      saying goodbye twice is a no-op (the agent is
//	                                         already RESTARTING or GONE)
//
// Why a late first attempt is harmless for RetryAlways writes: once a
// retry committed at a newer leader, an entry the deposed leader appended
// is either in the new leader's log ahead of the retry's (so applied
// before the call returns) or truncated. Only a paused master that still
// leads when it resumes (no election meanwhile) can apply the stuck first
// attempt after the call returned; for these writes that sets again what
// the call set, which a concurrent writer in between would see undone, as
// with any PUT retried after a timeout.
//
// # Concurrent SetRole calls travel together
//
// A Client keeps at most WithWritesInFlight (default 4) SetRole RPCs in
// flight. The SetRole calls made while they are all in flight queue, and
// when one returns, one of the waiting callers sends the whole queue (up
// to 1024 calls) as one SetRoles RPC; with fewer calls in flight each goes
// alone, as a plain SetRole. Every call carried still gets its own answer:
// the master validates and judges each role alone and commits it on a
// quorum before answering (the leader puts concurrent writes into shared
// log entries either way), and a refused role fails only its own call.
// What is shared is the RPC: a failure of the RPC itself (no leader, the
// write's outcome unknown) is every carried call's error, and the retry
// policy applies to the RPC as to a single SetRole. A call that sets
// request headers of its own goes alone. A call whose context ends while
// it is queued returns at once and is never sent; one already sent
// returns its context's error, as a lone call would. A master without
// SetRoles (older than it) answers Unimplemented, after which the Client
// sends every call alone. This saves the HTTP/2 and Connect work per call
// (about 110 us of CPU for client and master together on loopback) for
// programs that write roles from many goroutines; WithWritesInFlight(-1)
// turns it off.
//
// # Server streams
//
// Subscribe is not retried by the Client: its caller (the SDK)
// resubscribes. The stream goes to the preferred master and must deliver
// its first message within WithStreamOpenTimeout (default 10s), else it
// is cancelled and that master passed over. Afterwards it has no deadline:
// DefaultHTTPClient pings an idle connection after 5s and closes it when
// the ping is not answered within 5s, and the stream's heartbeats let the
// SDK notice a silent master. A stream that ends with a redirect makes the
// leader the preferred master (Follow), so reopening the stream reaches
// it; a caller whose stream a master answered without serving it (no
// leader known, or a redirect to a master being passed over) calls Pass
// to try the next master without passing that one over. A stream's
// opening names the masters being passed over (UnreachableHeader): a
// follower whose leader is one of them, or that knows no leader, holds
// its answer until an election names a leader the client can reach, so
// that a framework resubscribing during a failover reaches the new leader
// as soon as the followers know it.
//
// # Usage
//
//	c := client.New("http://10.0.0.1:7100,http://10.0.0.2:7100")
//	resp, err := c.Operator.SetRole(ctx, connect.NewRequest(&agorav1.SetRoleRequest{...}))
//
// By default requests use HTTP/2 without TLS (prior knowledge) and the
// Connect protocol; WithGRPC switches to the gRPC protocol.
package client
