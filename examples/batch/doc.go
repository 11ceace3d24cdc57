// Package batch is a Spark-like batch framework for agora: a job of many
// small work units, each run as a short task on whatever slack its role is
// offered, that gives resources back without losing work.
//
// The job counts the ERROR lines of N generated log files ("units"). Unit i
// generates its file from a seed derived from i alone (Lines), so the exact
// answer is known in advance and a test, or `make demo`, can check it:
// Expected(units, lines) computes it locally; the framework never does.
//
// How a unit runs:
//
//  1. The framework (Run) accepts an offer of its role and launches tasks
//     `<agora> batch unit --unit I --lines L --report URL`, one per unit,
//     as many as the offer fits. With Config.Revocable it subscribes with
//     the revocable-resources capability: its tasks may run on revocable
//     slack and be preempted when priority work needs the room.
//  2. The task counts its file (RunUnit) and POSTs {unit, count} to the
//     framework's HTTP endpoint; the framework records the count durably
//     as the framework record "unit/<I>" (compare-and-set create, in Raft,
//     so it survives a master failover and a restart of the framework
//     process with the same framework id) and only then answers 200. The
//     task exits 0 after that answer, so FINISHED means recorded.
//  3. A task that ends any other way (KILLED by preemption or a drain's
//     deadline, LOST with its agent, FAILED) puts its unit back in the
//     queue unless the unit was recorded: it runs again. A late or
//     duplicate report of a recorded unit is answered 200 and ignored (the
//     count is the same: the work is deterministic).
//
// The job ends when every unit is recorded: the answer is the sum of the
// recorded counts, read from the records. Progress is printed as it runs:
// units done / total, running, preemptions, reruns.
package batch
