// Package chaos is agora's fault-injection suite: it starts a real cluster
// (masters and agents as separate processes on 127.0.N.x, or as Docker
// containers on a private network), runs a concurrent workload through the
// framework SDK and the operator API, injects faults from a seeded schedule
// and then runs the checkers of package chaos/check.
//
// Drive it with Run:
//
//	rep, err := chaos.Run(ctx, chaos.Options{Tier: "process", Binary: "tmp/agora",
//		Seed: 7, Duration: 30 * time.Second, Out: "tmp/chaos-7", Progress: os.Stdout})
//	// err: the run could not be carried out; rep.ViolationCount: what the checkers found.
//
// or from the CLI: `agora chaos --tier process --seed 7 --duration 30s --json`.
//
// A run: lay out the cluster (Cluster), start it and wait for a leader and
// every agent; deploy the kv service (below); start Operators clients
// (SetRole/DeleteRole/ListRoles on a few roles, recorded as register
// operations), Frameworks frameworks (launching, killing, reserving,
// unreserving, creating and destroying volumes, declining;
// auto-acknowledging updates), the preemption frameworks (below) and the
// kv writer; inject the Schedule (one
// fault at a time, each healed after its hold); heal everything and wait for
// the cluster; pause the frameworks (subscribed, acknowledging, launching
// nothing) and wait for task statuses to be acknowledged; take the delivery
// cut (the leader's commit index) and let the frameworks catch up with it;
// stop every client; read the final roles; wait for the kv service's plan to
// be COMPLETE and read every acknowledged kv write back; stop the masters
// (all at once), then the agents (the process tier then kills the task
// processes the agents leave behind and unmounts their volumes); replay
// every master's Raft log through a fresh FSM; run the checkers (delivery
// against the state at the cut). Everything lands in Options.Out: node data
// and logs, faults.log, history.jsonl, summary.txt, summary.json and
// linearizability.html when the history is not linearizable.
//
// The kv service is examples/kvservice run by the service scheduler (`agora
// service`, hosted by the leader master): RunService with a spec of 3 small
// pods, each with a port and a persistent volume, running `exec AGORA
// kvservice` (the same binary as the nodes; Cluster.AgoraPath). One writer
// PUTs keys w1, w2, ... once each, with values of their own, to the primary
// (pod 0, whose address GetService's status gives, resolved again after any
// failure); a 2xx answer is an acknowledged write, anything else an unknown
// outcome. At the end check.KVLost reads every acknowledged key back from
// the primary with a consistent read. A service that is not COMPLETE within
// 60 s of the last fault, or a key that cannot be read, is an availability
// violation: every fault is healed by then. The pods' volumes are checked
// with the others at every index of the replay (no volume used by two live
// tasks).
//
// Preemption (preemption.go): at the start the runner sets role
// chaos-batch to priority 0 and chaos-prod to priority 10 (apart from the
// operators' register roles), so every other role is below the top band.
// A batch framework (chaos-batch, CAPABILITY_REVOCABLE_RESOURCES) fills
// revocable offers with tasks of 0.05 cpu / 256 MiB, up to 12 live per
// agent; a prod framework (chaos-prod, no capability) queues one task of
// 768-1280 MiB every second or two (at most 2 live, 3-6 s each), revives
// its role and sends Demand, launches the task when an offer holds it and
// then clears its demand and suppresses. The leader rescinds offers and
// preempts batch tasks to make room; check.Preemptions proves from the
// replayed logs that only revocable lower-priority tasks were victims,
// none twice, and that every PREEMPTED kill had a decision. The mixed
// frameworks and the kv service have no revocable capability: a task of
// theirs named as a victim is a violation. Paused, the prod framework
// clears its demand and suppresses, so no preemption starts while the run
// settles.
//
// Simulated agents (Options.SimAgents, `agora chaos --sim-agents N`,
// SIM_AGENTS=N chaos/soak.sh; process tier, not with Secure): one more
// process, `agora agent --simulate N` (package simagent), registers N
// agents sim-0, sim-1, ... with the masters beside the real ones; the
// runner waits for them active too. The frameworks get their offers and
// launch tasks there; a simulated task reports RUNNING, then FINISHED after
// 10 s or KILLED after its kill grace, through the simulator's batched
// UpdateStatus calls, which the leader commits as StatusUpdateBatch
// entries; the frameworks' acknowledgements become AcknowledgeBatch
// entries (the report counts both in the replayed log, and the tasks and
// statuses of simulated agents the workload saw). They offer no ports (the
// kv service's pods, which must really run, stay on the real agents) and
// 512 MiB (no prod task fits, so prod still preempts on the real agents).
// The faults never touch the simulator: kill-agent picks a real agent and
// kill-all spares it. A simulated agent is outside gossip liveness
// (simagent/doc.go), so a killed simulator would leave its agents ACTIVE
// with tasks nobody runs, and the delivery checker would wait for statuses
// that never come; masters are killed, paused, restarted and removed as
// usual, and the simulator retries its long polls and pending statuses
// until a leader answers (registering again when the masters ask).
// Every checker runs unchanged: they judge the replicated state and the
// clients' history, where a simulated agent is an agent like any other.
//
// The same seed gives the same fault schedule and the same workload
// choices; timing (and so the exact interleaving) still differs between runs.
package chaos
