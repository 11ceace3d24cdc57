// Package executor runs agora tasks on an agent as real processes, and
// re-attaches to them after the agent restarts.
//
// Driving it:
//
//  1. NewProcess(dir, log) once per agent, with dir under the agent's data
//     directory. It checks for cgroups v2 and logs once if tasks will run
//     without resource limits.
//  2. Call Recover before launching anything: it re-attaches to tasks
//     checkpointed by a previous agent process that are still alive
//     (reported RUNNING) and reports those that ended meanwhile (FINISHED /
//     FAILED / KILLED with the recorded exit code, or FAILED "agent restarted
//     and task process was gone"). It relaunches nothing.
//  3. Read Updates for every transition (STARTING, RUNNING, then one of
//     FINISHED, FAILED, KILLED). The channel is fed from an unbounded queue,
//     so the executor never blocks on a slow reader.
//  4. Launch and Kill tasks, named by TaskKey (framework, task id): task
//     ids are unique only within a framework, as in the masters' state.
//     Kill sends SIGTERM to the task's process group, waits the grace
//     period, then SIGKILLs the group; it returns at once and the KILLED
//     update follows.
//  5. After the final update has been handled durably, Forget the task to
//     delete its checkpoint (the sandbox and its logs stay).
//  6. Close stops watching; it never kills tasks, which outlive the agent.
//
// # Layout
//
//	dir/tasks/<framework>/<task>/        sandbox: the task's working directory
//	dir/tasks/<framework>/<task>/stdout  stdout (appended)
//	dir/tasks/<framework>/<task>/stderr  stderr (appended)
//	dir/tasks/<framework>/<task>/.agora-exit  exit status, written by the wrapper
//	dir/tasks/<framework>/<task>.json    checkpoint (written with package atomicfile)
//
// The checkpoint holds the spec, the pid (which is also the process group
// id) and the process start time from /proc/<pid>/stat, so a re-attaching
// executor never mistakes a recycled pid for the task.
//
// # Exit status across agent restarts
//
// Only a parent can wait for a process, and a restarted agent is no longer
// the parent of its tasks. So the command runs under a small /bin/sh
// wrapper, the process group leader:
//
//	trap : TERM INT HUP QUIT; /bin/sh -c "$CMD"; rc=$?; <write rc to .agora-exit>; exit $rc
//
// A signal sent to the group reaches the command directly (it has default
// handlers: trapped signals are reset on exec); the wrapper, having a trap,
// survives it, waits for the command, records its status (128+n for signal
// n, as shells do) and exits with it. Only SIGKILL of the group, which is
// the end of Kill's escalation, kills the wrapper before it records; such a
// task is reported KILLED because the kill was requested (the request is
// checkpointed before any signal is sent). A re-attached task is watched by
// polling /proc every 100 ms; a zombie counts as ended.
//
// # Resource limits
//
// When /sys/fs/cgroup is a cgroup2 mount where this process may create a
// child group with the cpu and memory controllers, each task runs in its
// own group (cpu.max from CPUs, memory.max from MemMiB), entered at clone
// time. Otherwise the executor logs, once, "cgroups v2 not available: tasks
// run without resource limits" with the reason.
package executor
