// Package simagent simulates many agents in one process, for benchmarks
// and tests at scale: `agora agent --simulate N` and devcluster use it.
//
// A simulated agent speaks the real AgentService, like agent.Agent: it
// registers with real resources (RegisterAgent, with simulated set), follows
// its assignments with GetAssignments long polls, and reports each new task
// RUNNING through UpdateStatus (one call carrying every task that a poll
// brought), FINISHED after Config.TaskDuration when that is set, and KILLED
// when the masters ask for a kill. It runs no process, keeps no checkpoint
// and joins no gossip pool.
//
// Kills are those of a real agent whose tasks ignore SIGTERM: a kill
// assignment (kill_requested; the master already made the task KILLING)
// ends the task KILLED once its kill grace is over (kill_grace_seconds,
// else Config.KillGrace, default executor.DefaultKillGrace), with the
// executor's reason "killed on request: killed by signal 9 (SIGKILL)" and
// exit code 137; the masters record the kill's reason (PREEMPTED, DRAINED)
// in its place. A task whose duration ends during its grace ends KILLED
// then ("killed on request: exited with code 0"), never FINISHED; a task
// first seen with its kill requested is KILLED at once ("killed before
// launch"). So a kill takes the longest a real one may take.
//
// Liveness: the leader's failure detector works on gossip, and simulated
// agents are no gossip members, so the masters do not watch agents
// registered as simulated at all (liveness off for them): they stay ACTIVE
// until they stop (Run returns after StopAgent for each, decommissioning
// them when Config.Decommission is set). A simulator killed with SIGKILL
// leaves its agents ACTIVE; that is the price of not running 10,000 gossip
// members on one machine.
//
// Driving it: New, then Run(ctx) until ctx ends; Stats reports progress.
package simagent
