package chaos

import (
	"context"
	"errors"
	"time"
)

// ErrUnsupported is returned by a Cluster for a fault its tier cannot inject.
var ErrUnsupported = errors.New("chaos: fault not supported by this tier")

// ErrSlowStop is wrapped by StopMaster and Close when a master did not exit
// within stopTimeout of SIGTERM and had to be killed: an operator expects a
// master to stop promptly, so the runner counts it as a violation.
var ErrSlowStop = errors.New("chaos: master did not stop within the grace period of SIGTERM")

// stopTimeout is how long a graceful stop may take before SIGKILL.
const stopTimeout = 10 * time.Second

// Cluster is a running cluster of agora masters and agents that the fault
// injector drives. Masters and agents are numbered from 0. Implementations:
// the process tier (NewProcessCluster) and the docker tier
// (NewDockerCluster).
type Cluster interface {
	// Tier names the driver: "process" or "docker".
	Tier() string
	// Masters and Agents are the numbers of nodes.
	Masters() int
	Agents() int
	// MasterID is master i's id (stable across restarts).
	MasterID(i int) string
	// MasterURLs are the masters' HTTP base URLs as the chaos process
	// reaches them.
	MasterURLs() []string
	// MasterDataDir is master i's data directory on this host, for the
	// Raft log replay after the run.
	MasterDataDir(i int) string
	// TaskCommand is a shell command that sleeps for secs seconds on an
	// agent of this tier.
	TaskCommand(secs int) string
	// AgoraPath is the agora binary's path as a task on an agent of this
	// tier runs it (the kv service's pods run `exec PATH kvservice`).
	AgoraPath() string
	// AgentAddr turns host:port on an agent, the host named as the agent
	// reports it (its hostname, as in a service pod's address), into an
	// address the chaos process can dial.
	AgentAddr(hostport string) string

	// StartMaster starts master i (with the data it has).
	StartMaster(ctx context.Context, i int) error
	// KillMaster SIGKILLs master i and waits for it to die.
	KillMaster(i int) error
	// StopMaster stops master i gracefully (SIGTERM) and waits.
	StopMaster(i int) error
	// WipeMaster deletes master i's data; it must be down.
	WipeMaster(i int) error
	// PauseMaster and ResumeMaster SIGSTOP and SIGCONT master i.
	PauseMaster(i int) error
	ResumeMaster(i int) error
	// StartAgent and KillAgent start and SIGKILL agent i.
	StartAgent(ctx context.Context, i int) error
	KillAgent(i int) error
	// Isolate cuts master i (agent i when agent is true) off the network;
	// Heal reconnects every isolated node. ErrUnsupported where the tier
	// cannot partition.
	Isolate(i int, agent bool) error
	Heal() error

	// Close stops every node and releases the tier's resources (networks,
	// containers); data directories stay for the checkers.
	Close() error
}
