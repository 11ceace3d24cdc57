// Package clusterbench holds the cluster-level benchmarks behind
// `agora bench`: replicated writes beside bare hashicorp/raft (Write), the
// store at scale (State: RSS, heap, snapshot, restore, a follower's
// catch-up), leader failover as seen by a framework (Failover) and agent
// loss as seen by a framework (AgentLoss), plus the SVG plots and
// BENCHMARKS.md tables that `make bench` regenerates (Report).
//
// Every benchmark is a measuring tool, not a test: it returns figures and
// checks only correctness (counts, that the old offer was accepted, that
// every RESCIND and UNREACHABLE arrived). Failover and AgentLoss run the
// masters and agents as separate processes of the agora binary
// (chaos.NewProcessCluster), so a SIGKILL is a real one; Write and State
// run masters in this process (devcluster), as does the in-process
// FSM snapshot/restore measurement.
//
// Each benchmark writes progress lines to Options.Progress (the CLI passes
// stderr) while it runs; the CLI prints the result as one JSON object.
package clusterbench
