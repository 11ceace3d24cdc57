// Package story is `make demo`: the whole story agora is built for, told on
// an in-process dev cluster (3 masters, 6 agents on loopback) and narrated
// step by step with the numbers as they happen.
//
//  1. A replicated key-value service (examples/kvservice, 3 pods on
//     reservations and persistent volumes) runs on the high-priority role
//     "kv"; keys are written to it.
//  2. A batch job (examples/batch) fills the slack on the low-priority role
//     "batch", capped at 90% utilization: the highest utilization seen is
//     printed and checked against the cap.
//  3. Priority work arrives: a second high-priority service ("web") is
//     deployed on a full cluster; the batch job gives its resources back
//     and the web pods run. The time until they run and the batch tasks
//     preempted are printed.
//  4. The kv service is scaled 3 -> 5 with one command; the first 3 pods
//     keep their tasks.
//  5. The agent of a kv pod crashes with the pod's process and comes back:
//     the pod is relaunched in place and its data is still there.
//  6. The leader master is killed: reservations, volumes, tasks and the
//     batch job's recorded progress are all still there under the new one.
//  7. An agent is drained with a deadline: its kv pod moves to another
//     agent with its data, its batch units yield and run again elsewhere.
//  8. The batch job finishes with the exact answer, and every kv key is
//     read back.
//
// Run ends with one JSON line (Summary) and returns an error when anything
// was lost or wrong. Options.Short is the CI form (under 2 minutes).
package story
