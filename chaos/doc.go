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
// every agent; start Operators clients (SetRole/DeleteRole/ListRoles on a few
// roles, recorded as register operations) and Frameworks frameworks
// (launching, killing, reserving, unreserving, creating and destroying
// volumes, declining; auto-acknowledging updates); inject the Schedule (one
// fault at a time, each healed after its hold); heal everything and wait for
// the cluster; pause the frameworks (subscribed, acknowledging, launching
// nothing) and wait for task statuses to be acknowledged; take the delivery
// cut (the leader's commit index) and let the frameworks catch up with it;
// read the final roles; stop the frameworks, then the masters (all at
// once), then the agents; replay every master's Raft log through a fresh
// FSM; run the checkers (delivery against the state at the cut). Everything lands in Options.Out: node data and
// logs, faults.log, history.jsonl, summary.txt, summary.json and
// linearizability.html when the history is not linearizable.
//
// The same seed gives the same fault schedule and the same workload
// choices; timing (and so the exact interleaving) still differs between runs.
package chaos
