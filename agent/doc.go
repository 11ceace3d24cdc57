// Package agent is the agora agent: the process on every machine that
// offers the machine's resources to the masters, runs the tasks assigned
// to it through an executor and reports their status, at least once, end
// to end.
//
// Driving it:
//
//  1. Build a [Config]: a stable ID and DataDir (keep both across restarts),
//     a gossip bind address, the gossip addresses to join (the masters'),
//     optionally an HTTP address for /health and /metrics, the resources
//     ([DefaultResources] measures the machine; [ParseAttributes] reads
//     'rack:r1;zone:a') and the cluster name the masters run.
//  2. [New] opens the data dir (checkpoints, the executor) and binds the
//     listeners; [Agent.Run] runs until its context ends. Run returns an
//     error only when the masters refuse the agent for good (wrong
//     cluster, invalid registration). Tasks outlive Run and [Agent.Kill]:
//     a restarted agent re-attaches to those still alive and reports those
//     that died as FAILED, without relaunching anything on its own.
//
// What Run does:
//
//   - Joins the gossip pool (tags: role "agent", id, HTTP address) and
//     finds the masters there (members with role "master").
//   - Registers through AgentService.RegisterAgent with its resources,
//     attributes and the latest status of every task it runs, retrying
//     with backoff until a registration is committed.
//   - Follows its assignments with GetAssignments blocking queries against
//     any master (answers from masters behind what it already saw are
//     ignored). New tasks are launched once: the launch is checkpointed
//     (launched.json) before it happens, so neither a restart nor a slow
//     status update leads to a second launch. Tasks with kill_requested
//     are killed; tasks the masters no longer assign are killed. When the
//     masters answer known=false (unknown, unreachable or gone agent) the
//     agent registers again.
//   - A graceful stop (Run's context ends) says goodbye before it leaves
//     gossip: AgentService.StopAgent makes the agent RESTARTING in Raft. Its
//     tasks keep running under their process groups and stay RUNNING for
//     the masters, who offer nothing on it and wait their re-registration
//     timeout (10 min by default) before the usual unreachable/lost path;
//     frameworks see nothing. On start, Recover re-attaches to the tasks
//     and the registration reports them unchanged. A crash (Kill, SIGKILL)
//     says nothing; an agent back before the masters' failure detection
//     (gossip failed, direct probes missed) gets the same. With
//     Config.Decommission (agora agent --decommission) or Decommission, the
//     stop kills the tasks first, waits for their KILLED updates to be
//     delivered (longest kill grace + 10 s at most) and tells the masters
//     the agent is gone for good.
//   - A drained agent (agora drain) runs on as before: the masters offer
//     nothing on it, and at the drain's deadline they mark its remaining
//     tasks kill_requested (kill_reason DRAINED), which the agent kills
//     like any other kill; the masters record the KILLED update with
//     reason DRAINED. A drained agent that restarts comes back drained.
//   - LAUNCH_GROUP tasks (same group id) start together in one pass; when
//     one ends other than FINISHED (failed, killed, could not launch) the
//     agent kills the others of the group.
//   - Every executor update becomes a TaskStatus with a fresh uuid, appended
//     to a durable outbox (outbox.json, rewritten atomically) and sent in
//     order with UpdateStatus, retried with exponential backoff (50 ms to
//     2 s) until committed, following the leader across failovers. An
//     update is dropped only when the masters refuse it for good (unknown
//     task, task of another agent, invalid).
//
// Persistent volumes are directories DataDir/volumes/<role>/<id>, with a
// marker <id>.created holding the Raft index of the volume's CREATE. A task
// sees its volume at the volume's container path inside its sandbox: a
// bind mount where the agent may mount (root with CAP_SYS_ADMIN), else a
// symlink; the RUNNING update's message says which ("volume v1 at data
// (bind mount)"). AGORA_VOLUME_<ID> also names the directory. Rules:
//   - A directory whose marker differs from the assigned volume's index is
//     left from an earlier volume with that id (DESTROY, then CREATE) and is
//     emptied before use.
//   - Once the masters no longer assign a volume (destroyed) and no task
//     here uses it, its directory is deleted.
//   - The masters let one live task use a volume; a task still running on
//     a volume when another is assigned to it is stale (it was lost in a
//     partition) and is killed before the new one starts.
//   - Every 10 s the agent measures its running tasks' volumes; a task whose
//     volume holds more than the volume's size is killed and reported
//     FAILED ("volume v1 over its size: ...").
package agent
