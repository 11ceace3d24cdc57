// Package execute is the logic of `agora run` (like mesos-execute): it
// registers a framework through the Go SDK, launches a number of instances
// of one command from offers, prints every task state change, relaunches
// tasks that fail or are lost, and either stays until its context ends (then
// tears the framework down) or, with Detach, returns once every task is
// RUNNING and leaves the framework registered.
//
//	err := execute.Run(ctx, execute.Options{
//		Masters: []string{"http://127.0.0.1:7100"},
//		Name: "web", Cmd: "sleep 600", Instances: 4, CPUs: 0.1, MemMiB: 16,
//		FailoverTimeout: time.Hour, Detach: true, Out: os.Stdout,
//	})
//
// Task ids are "<name>-<n>" for n in 1..Instances; a relaunch of instance n
// is "<name>-<n>.<attempt>" (task ids are never reused within a framework).
// An instance that fails MaxAttempts times in a row ends the run with an
// error.
package execute
