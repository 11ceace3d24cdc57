// Command agora is the one binary of agora: masters (`agora master`), agents
// (`agora agent`), the embedded development cluster (`agora dev`, what
// `make run` starts), the operator CLI (status, roles, raft membership,
// agents, tasks, frameworks, offers, reservations), `agora run` (a
// mesos-execute-like framework), and the benchmark and chaos drivers.
//
// Client commands take --addr (default $AGORA_ADDR or
// http://127.0.0.1:7100; any master works, or a comma-separated list:
// calls sent to a follower are redirected to the leader, and a master that
// does not answer is passed over, see rpc/client), --timeout (the most a
// call may take, retries included; 30s) and --json for scripts. Errors
// print one line and exit non-zero.
package main
