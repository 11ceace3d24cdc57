package executor

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is a task state as the executor reports it.
type State string

// Task states, in lifecycle order. FINISHED, FAILED and KILLED are terminal.
const (
	StateStarting State = "STARTING"
	StateRunning  State = "RUNNING"
	StateFinished State = "FINISHED"
	StateFailed   State = "FAILED"
	StateKilled   State = "KILLED"
)

// Terminal reports whether no transition follows s.
func (s State) Terminal() bool {
	return s == StateFinished || s == StateFailed || s == StateKilled
}

// DefaultKillGrace is the time between SIGTERM and SIGKILL when neither
// Kill nor the spec says otherwise.
const DefaultKillGrace = 3 * time.Second

// Sentinel errors.
var (
	// ErrTaskRunning is returned by Launch for a task that is running.
	ErrTaskRunning = errors.New("executor: task already running")
	// ErrUnknownTask is returned for a task the executor does not run.
	ErrUnknownTask = errors.New("executor: unknown task")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("executor: closed")
	// ErrBadSpec is returned by Launch for an invalid TaskSpec.
	ErrBadSpec = errors.New("executor: invalid task spec")
)

// TaskKey names a task on an agent. Task ids are unique only within their
// framework (as in the masters' state), so two frameworks may run tasks
// with the same id side by side.
type TaskKey struct {
	FrameworkID, TaskID string
}

// String returns "framework/task".
func (k TaskKey) String() string { return k.FrameworkID + "/" + k.TaskID }

// Compare orders keys by framework, then task id.
func (k TaskKey) Compare(o TaskKey) int {
	if c := strings.Compare(k.FrameworkID, o.FrameworkID); c != 0 {
		return c
	}
	return strings.Compare(k.TaskID, o.TaskID)
}

// TaskSpec is what to run.
type TaskSpec struct {
	// TaskID and FrameworkID name the task; they become directory names, so
	// they may not be empty, ".", "..", or contain '/' or NUL.
	TaskID, FrameworkID string
	// Name is for humans.
	Name string
	// Command runs with /bin/sh -c in the sandbox directory.
	Command string
	// Env is added to the task's environment (after PATH and before the
	// AGORA_* and PORT* variables, which win).
	Env map[string]string
	// CPUs and MemMiB become cgroup limits where cgroups v2 is available;
	// zero means unlimited.
	CPUs   float64
	MemMiB int64
	// Ports are exported as PORT0..PORTn and PORTS (comma separated).
	Ports []uint64
	// KillGrace is the SIGTERM-to-SIGKILL delay; zero means DefaultKillGrace.
	KillGrace time.Duration
	// Volumes are persistent volumes attached in the sandbox at their
	// container paths (a bind mount where the agent may mount, else a
	// symlink; the RUNNING update's message says which).
	Volumes []Volume `json:",omitempty"`
}

// Key returns the spec's task key.
func (s TaskSpec) Key() TaskKey { return TaskKey{FrameworkID: s.FrameworkID, TaskID: s.TaskID} }

// Update is one task transition.
type Update struct {
	TaskID, FrameworkID string
	State               State
	// ExitCode is the command's exit status for terminal states: 128+n when
	// killed by signal n, -1 when unknown.
	ExitCode int
	// Reason says why, e.g. "exited with code 3".
	Reason string
	// Message carries detail, e.g. the sandbox path.
	Message string
}

// Key returns the key of the task the update is about.
func (u Update) Key() TaskKey { return TaskKey{FrameworkID: u.FrameworkID, TaskID: u.TaskID} }

// Executor runs tasks. Implementations: Process (plain processes); a
// container executor can implement the same interface.
type Executor interface {
	// Launch starts a task; ErrTaskRunning if the framework already runs
	// a task with that id.
	Launch(spec TaskSpec) error
	// Kill stops a task: SIGTERM, grace (0 means the spec's), SIGKILL. It
	// returns once the first signal is sent; KILLED follows on Updates.
	Kill(key TaskKey, grace time.Duration) error
	// Recover re-attaches to checkpointed tasks after an agent restart; see
	// the package documentation.
	Recover() ([]Update, error)
	// Running lists the tasks being watched, sorted by framework then id.
	Running() []TaskKey
	// Updates delivers every transition.
	Updates() <-chan Update
	// Close stops watching without killing tasks.
	Close() error
}

// validate checks that both ids can be directory names.
func (k TaskKey) validate() error {
	for what, id := range map[string]string{"task id": k.TaskID, "framework id": k.FrameworkID} {
		if id == "" || id == "." || id == ".." || len(id) > 200 {
			return fmt.Errorf("%w: bad %s %q", ErrBadSpec, what, id)
		}
		for _, r := range id {
			if r == '/' || r == 0 {
				return fmt.Errorf("%w: bad %s %q", ErrBadSpec, what, id)
			}
		}
	}
	return nil
}

func (s TaskSpec) validate() error {
	if err := s.Key().validate(); err != nil {
		return err
	}
	if s.Command == "" {
		return fmt.Errorf("%w: empty command", ErrBadSpec)
	}
	if s.CPUs < 0 || s.MemMiB < 0 || s.KillGrace < 0 {
		return fmt.Errorf("%w: negative resources or grace", ErrBadSpec)
	}
	return nil
}
