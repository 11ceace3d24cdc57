package executor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// wrapperScript runs the command ($1) and records its exit status; see the
// package documentation. The trap keeps the wrapper alive through signals
// sent to the whole group so that it can record how the command ended.
const wrapperScript = `trap : TERM INT HUP QUIT
/bin/sh -c "$1"
rc=$?
printf '%d\n' "$rc" > .agora-exit.tmp && mv -f .agora-exit.tmp .agora-exit
exit "$rc"`

const (
	exitFile     = ".agora-exit"
	pollInterval = 100 * time.Millisecond
	defaultPath  = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Process runs each task as a process group under /bin/sh. It implements
// Executor.
type Process struct {
	dir string
	log *slog.Logger
	cg  *cgroups

	mu     sync.Mutex
	tasks  map[TaskKey]*task
	closed bool

	queue *updateQueue
}

var _ Executor = (*Process)(nil)

// task is a task being watched.
type task struct {
	spec     TaskSpec
	ckptPath string
	ckpt     *checkpoint
	cgroup   string
	done     chan struct{} // closed when the task's final update is recorded
}

// NewProcess returns an executor keeping sandboxes and checkpoints under
// dir. It logs through log (nil means slog.Default()) with component=executor
// added, so callers pass their own logger without that key.
func NewProcess(dir string, log *slog.Logger) (*Process, error) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "executor")
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("executor dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(abs, "tasks"), 0o755); err != nil {
		return nil, fmt.Errorf("executor dir: %w", err)
	}
	p := &Process{dir: abs, log: log, tasks: make(map[TaskKey]*task), queue: newUpdateQueue()}
	p.cg = cgroupsOnce(log)
	return p, nil
}

var (
	cgOnce   sync.Once
	cgShared *cgroups
)

// cgroupsOnce probes cgroups v2 once per process and logs the verdict once.
func cgroupsOnce(log *slog.Logger) *cgroups {
	cgOnce.Do(func() {
		cg, err := detectCgroups()
		if err != nil {
			log.Warn("cgroups v2 not available: tasks run without resource limits", "reason", err.Error())
			return
		}
		log.Info("cgroups v2 available: tasks get cpu.max and memory.max", "parent", cg.parent)
		cgShared = cg
	})
	return cgShared
}

func (p *Process) sandbox(spec TaskSpec) string {
	return filepath.Join(p.dir, "tasks", spec.FrameworkID, spec.TaskID)
}

// Launch starts spec.Command. It emits STARTING, then RUNNING once the
// process runs and is checkpointed (or FAILED if it could not start).
func (p *Process) Launch(spec TaskSpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	if spec.KillGrace == 0 {
		spec.KillGrace = DefaultKillGrace
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if _, ok := p.tasks[spec.Key()]; ok {
		return fmt.Errorf("%w: %s", ErrTaskRunning, spec.Key())
	}
	sandbox := p.sandbox(spec)
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		return fmt.Errorf("create sandbox: %w", err)
	}
	// A stale exit record from an earlier run of the same id would be read
	// as this run's result.
	if err := os.Remove(filepath.Join(sandbox, exitFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("clear exit record: %w", err)
	}
	t := &task{
		spec:     spec,
		ckptPath: sandbox + ".json",
		ckpt:     &checkpoint{Spec: spec, LaunchedAt: time.Now().UTC()},
		done:     make(chan struct{}),
	}
	// Checkpoint before forking, so a crash in between leaves a record
	// (pid 0) that Recover reports as FAILED instead of nothing.
	if err := saveCheckpoint(t.ckptPath, t.ckpt); err != nil {
		return err
	}
	p.emit(t, StateStarting, 0, "", "")

	fail := func(err error) error {
		p.finishLocked(t, Update{State: StateFailed, ExitCode: -1, Reason: "failed to start: " + err.Error()})
		return fmt.Errorf("launch %s: %w", spec.Key(), err)
	}
	attached, err := attachVolumes(sandbox, spec.Volumes)
	if err != nil {
		return fail(err)
	}
	stdout, err := os.OpenFile(filepath.Join(sandbox, "stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(filepath.Join(sandbox, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer stderr.Close()

	cmd := exec.Command("/bin/sh", "-c", wrapperScript, "agora-task", spec.Command)
	cmd.Dir = sandbox
	cmd.Env = taskEnv(spec, sandbox)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if p.cg != nil {
		dir, err := p.cg.create(groupName(spec), spec)
		if err != nil {
			p.log.Warn("task runs without resource limits", "task", spec.TaskID, "err", err)
		} else {
			fd, err := os.Open(dir)
			if err != nil {
				p.cg.remove(dir)
				return fail(fmt.Errorf("open cgroup: %w", err))
			}
			defer fd.Close()
			t.cgroup = dir
			cmd.SysProcAttr.UseCgroupFD = true
			cmd.SysProcAttr.CgroupFD = int(fd.Fd())
		}
	}
	if err := cmd.Start(); err != nil {
		if t.cgroup != "" {
			p.cg.remove(t.cgroup)
		}
		return fail(err)
	}
	pid := cmd.Process.Pid
	start, _, err := procStat(pid)
	if err != nil {
		// The wrapper cannot have been reaped (we have not waited), so this
		// is an unreadable /proc; watch it anyway, re-attach will not work.
		p.log.Warn("cannot read task start time", "task", spec.TaskID, "err", err)
	}
	t.ckpt.Pid, t.ckpt.Pgid, t.ckpt.StartTime = pid, pid, start
	if err := saveCheckpoint(t.ckptPath, t.ckpt); err != nil {
		p.log.Error("checkpoint of running task failed; it cannot be re-attached after a restart", "task", spec.TaskID, "err", err)
	}
	p.tasks[spec.Key()] = t
	p.emit(t, StateRunning, 0, "", attached)
	p.log.Info("task running", "task", spec.TaskID, "framework", spec.FrameworkID, "pid", pid, "sandbox", sandbox, "volumes", attached)
	go p.waitChild(t, cmd)
	return nil
}

func taskEnv(spec TaskSpec, sandbox string) []string {
	env := map[string]string{"PATH": defaultPath, "HOME": sandbox}
	if path := os.Getenv("PATH"); path != "" {
		env["PATH"] = path
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	env["AGORA_TASK_ID"] = spec.TaskID
	env["AGORA_FRAMEWORK_ID"] = spec.FrameworkID
	env["AGORA_SANDBOX"] = sandbox
	ports := make([]string, len(spec.Ports))
	for i, port := range spec.Ports {
		ports[i] = strconv.FormatUint(port, 10)
		env["PORT"+strconv.Itoa(i)] = ports[i]
	}
	if len(ports) > 0 {
		env["PORTS"] = strings.Join(ports, ",")
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// waitChild reaps a task this process launched.
func (p *Process) waitChild(t *task, cmd *exec.Cmd) {
	err := cmd.Wait()
	var status syscall.WaitStatus
	if cmd.ProcessState != nil {
		status, _ = cmd.ProcessState.Sys().(syscall.WaitStatus)
	} else if err != nil {
		p.log.Error("wait for task", "task", t.spec.TaskID, "err", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return // a later executor re-attaches and reads the exit record
	}
	p.finishLocked(t, p.outcome(t, &status))
}

// watchPid polls /proc for a re-attached task, whose parent we are not.
func (p *Process) watchPid(t *task) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for range tick.C {
		if processAlive(t.ckpt.Pid, t.ckpt.StartTime) {
			continue
		}
		p.mu.Lock()
		if !p.closed {
			p.finishLocked(t, p.outcome(t, nil))
		}
		p.mu.Unlock()
		return
	}
}

// outcome decides the final update of an ended task from its exit record,
// or from the wrapper's wait status when it died before recording.
func (p *Process) outcome(t *task, status *syscall.WaitStatus) Update {
	code, recorded := readExit(p.sandbox(t.spec))
	if !recorded && status != nil {
		switch {
		case status.Exited():
			code, recorded = status.ExitStatus(), true
		case status.Signaled():
			code, recorded = 128+int(status.Signal()), true
		}
	}
	return decide(t.ckpt.KillRequested, code, recorded, "")
}

// decide maps how a task ended to its final update.
func decide(killed bool, code int, recorded bool, gone string) Update {
	desc := describeExit(code)
	switch {
	case killed:
		if !recorded {
			code, desc = 128+int(syscall.SIGKILL), "killed by signal 9 (SIGKILL)"
		}
		return Update{State: StateKilled, ExitCode: code, Reason: "killed on request: " + desc}
	case !recorded:
		return Update{State: StateFailed, ExitCode: -1, Reason: gone}
	case code == 0:
		return Update{State: StateFinished, ExitCode: 0, Reason: desc}
	default:
		return Update{State: StateFailed, ExitCode: code, Reason: desc}
	}
}

func describeExit(code int) string {
	if code > 128 && code < 128+65 {
		sig := syscall.Signal(code - 128)
		return fmt.Sprintf("killed by signal %d (%s)", code-128, sig)
	}
	return fmt.Sprintf("exited with code %d", code)
}

func readExit(sandbox string) (int, bool) {
	data, err := os.ReadFile(filepath.Join(sandbox, exitFile))
	if err != nil {
		return 0, false
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, false
	}
	return code, true
}

// finishLocked records a task's final update in its checkpoint, emits it
// and stops watching the task. p.mu must be held.
func (p *Process) finishLocked(t *task, u Update) {
	u.TaskID, u.FrameworkID = t.spec.TaskID, t.spec.FrameworkID
	if u.Message == "" {
		u.Message = "sandbox " + p.sandbox(t.spec)
	}
	t.ckpt.Terminal, t.ckpt.Final = true, &u
	if err := saveCheckpoint(t.ckptPath, t.ckpt); err != nil {
		p.log.Error("checkpoint of final task state failed; a restart reports the task again", "task", t.spec.TaskID, "err", err)
	}
	if t.cgroup != "" && p.cg != nil {
		p.cg.remove(t.cgroup)
	}
	detachVolumes(p.sandbox(t.spec), t.spec.Volumes)
	if p.tasks[t.spec.Key()] == t {
		delete(p.tasks, t.spec.Key())
	}
	p.queue.push(u)
	p.log.Info("task ended", "task", u.TaskID, "framework", u.FrameworkID, "state", u.State, "exit_code", u.ExitCode, "reason", u.Reason)
	close(t.done)
}

func (p *Process) emit(t *task, s State, code int, reason, msg string) {
	p.queue.push(Update{TaskID: t.spec.TaskID, FrameworkID: t.spec.FrameworkID, State: s, ExitCode: code, Reason: reason, Message: msg})
}

// Kill sends SIGTERM to the task's process group and, if it has not ended
// after grace (0 means the spec's KillGrace), SIGKILL. It returns after the
// SIGTERM; the KILLED update follows on Updates.
func (p *Process) Kill(key TaskKey, grace time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	t, ok := p.tasks[key]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownTask, key)
	}
	if grace <= 0 {
		grace = t.spec.KillGrace
	}
	if !t.ckpt.KillRequested {
		t.ckpt.KillRequested = true
		if err := saveCheckpoint(t.ckptPath, t.ckpt); err != nil {
			p.log.Warn("checkpoint of kill request failed", "task", key.TaskID, "framework", key.FrameworkID, "err", err)
		}
	}
	if err := p.signalLocked(t, syscall.SIGTERM); err != nil {
		return err
	}
	go func() {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-t.done:
		case <-timer.C:
			p.mu.Lock()
			defer p.mu.Unlock()
			select {
			case <-t.done:
				return
			default:
			}
			p.log.Info("task outlived its kill grace; sending SIGKILL", "task", key.TaskID, "framework", key.FrameworkID, "grace", grace)
			if err := p.signalLocked(t, syscall.SIGKILL); err != nil {
				p.log.Warn("SIGKILL failed", "task", key.TaskID, "framework", key.FrameworkID, "err", err)
			}
		}
	}()
	return nil
}

// signalLocked signals the task's process group, after checking that the
// group leader is still the process we started (pid reuse).
func (p *Process) signalLocked(t *task, sig syscall.Signal) error {
	pgid := t.ckpt.Pgid
	if pgid <= 0 {
		return fmt.Errorf("signal %s: %w: no process recorded", t.spec.TaskID, ErrUnknownTask)
	}
	if start, _, err := procStat(pgid); err == nil && start != t.ckpt.StartTime {
		return nil // the leader is gone and its pid was reused; nothing of ours to signal
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s with %v: %w", t.spec.TaskID, sig, err)
	}
	return nil
}

// Recover re-attaches to the non-terminal checkpointed tasks: a live one is
// watched again and returned as RUNNING; one that ended while no executor
// watched it is returned with its final state (recorded exit code, or
// FAILED "agent restarted and task process was gone"), and its checkpoint
// is marked terminal. These updates are returned, not sent on Updates;
// later transitions of re-attached tasks are. Terminal checkpoints are
// skipped (see Terminal). Nothing is relaunched.
func (p *Process) Recover() ([]Update, error) {
	paths, err := filepath.Glob(filepath.Join(p.dir, "tasks", "*", "*.json"))
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	sort.Strings(paths)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	var out []Update
	var errs []error
	for _, path := range paths {
		c, err := loadCheckpoint(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if c.Terminal {
			continue
		}
		if _, ok := p.tasks[c.Spec.Key()]; ok {
			continue
		}
		t := &task{spec: c.Spec, ckptPath: path, ckpt: c, done: make(chan struct{})}
		if p.cg != nil {
			t.cgroup = filepath.Join(p.cg.parent, groupName(c.Spec))
		}
		if processAlive(c.Pid, c.StartTime) {
			p.tasks[c.Spec.Key()] = t
			go p.watchPid(t)
			out = append(out, Update{TaskID: c.Spec.TaskID, FrameworkID: c.Spec.FrameworkID, State: StateRunning, Reason: "re-attached after agent restart"})
			p.log.Info("re-attached to task", "task", c.Spec.TaskID, "framework", c.Spec.FrameworkID, "pid", c.Pid)
			continue
		}
		code, recorded := readExit(p.sandbox(c.Spec))
		gone := "agent restarted and task process was gone"
		if c.Pid == 0 {
			gone = "agent restarted while launching the task"
		}
		u := decide(c.KillRequested, code, recorded, gone)
		u.TaskID, u.FrameworkID = c.Spec.TaskID, c.Spec.FrameworkID
		u.Message = "sandbox " + p.sandbox(c.Spec)
		if recorded {
			u.Reason += " while the agent was down"
		}
		c.Terminal, c.Final = true, &u
		if err := saveCheckpoint(path, c); err != nil {
			errs = append(errs, err)
		}
		detachVolumes(p.sandbox(c.Spec), c.Spec.Volumes)
		out = append(out, u)
	}
	return out, errors.Join(errs...)
}

// Terminal returns the final updates of ended tasks whose checkpoints have
// not been forgotten, so a restarted agent can re-send any it had not
// delivered before it crashed.
func (p *Process) Terminal() ([]Update, error) {
	paths, err := filepath.Glob(filepath.Join(p.dir, "tasks", "*", "*.json"))
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	sort.Strings(paths)
	var out []Update
	for _, path := range paths {
		c, err := loadCheckpoint(path)
		if err != nil {
			return nil, err
		}
		if c.Terminal && c.Final != nil {
			out = append(out, *c.Final)
		}
	}
	return out, nil
}

// Forget deletes the checkpoint of an ended task; its sandbox stays.
func (p *Process) Forget(key TaskKey) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.tasks[key]; ok {
		return fmt.Errorf("forget %s: %w", key, ErrTaskRunning)
	}
	if key.validate() != nil {
		return fmt.Errorf("forget %q: %w", key.String(), ErrUnknownTask)
	}
	if err := os.Remove(p.Sandbox(key.FrameworkID, key.TaskID) + ".json"); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("forget %s: %w", key, ErrUnknownTask)
		}
		return fmt.Errorf("forget %s: %w", key, err)
	}
	return nil
}

// KillGrace returns the kill grace of a watched task (DefaultKillGrace
// for one not watched).
func (p *Process) KillGrace(key TaskKey) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.tasks[key]; ok && t.spec.KillGrace > 0 {
		return t.spec.KillGrace
	}
	return DefaultKillGrace
}

// Running returns the watched tasks, sorted by framework then task id.
func (p *Process) Running() []TaskKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([]TaskKey, 0, len(p.tasks))
	for k := range p.tasks {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, TaskKey.Compare)
	return keys
}

// Spec returns the spec of a watched task (false when it is not running).
func (p *Process) Spec(key TaskKey) (TaskSpec, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.tasks[key]
	if !ok {
		return TaskSpec{}, false
	}
	return t.spec, true
}

// Ended returns a channel closed once the task is not running: at once
// for a task the executor does not watch, else when its final update is
// recorded.
func (p *Process) Ended(key TaskKey) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.tasks[key]; ok {
		return t.done
	}
	c := make(chan struct{})
	close(c)
	return c
}

// Sandbox returns the sandbox directory a task with this spec uses.
func (p *Process) Sandbox(frameworkID, taskID string) string {
	return p.sandbox(TaskSpec{FrameworkID: frameworkID, TaskID: taskID})
}

// Updates returns the transition channel. It is closed by Close; updates
// not yet read by then are dropped (the checkpoints still hold final
// states, see Terminal).
func (p *Process) Updates() <-chan Update { return p.queue.out }

// Close stops watching tasks and closes Updates. Tasks keep running.
func (p *Process) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.tasks = make(map[TaskKey]*task)
	p.mu.Unlock()
	p.queue.close()
	return nil
}

// updateQueue is an unbounded FIFO feeding a channel, so the executor never
// blocks on its reader.
type updateQueue struct {
	mu      sync.Mutex
	pending []Update
	wake    chan struct{}
	stop    chan struct{}
	out     chan Update
	stopped chan struct{}
}

func newUpdateQueue() *updateQueue {
	q := &updateQueue{wake: make(chan struct{}, 1), stop: make(chan struct{}), out: make(chan Update), stopped: make(chan struct{})}
	go q.run()
	return q
}

func (q *updateQueue) push(u Update) {
	q.mu.Lock()
	q.pending = append(q.pending, u)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *updateQueue) run() {
	defer close(q.stopped)
	defer close(q.out)
	for {
		q.mu.Lock()
		var next *Update
		if len(q.pending) > 0 {
			u := q.pending[0]
			q.pending = q.pending[1:]
			next = &u
		}
		q.mu.Unlock()
		if next == nil {
			select {
			case <-q.wake:
				continue
			case <-q.stop:
				return
			}
		}
		select {
		case q.out <- *next:
		case <-q.stop:
			return
		}
	}
}

func (q *updateQueue) close() {
	close(q.stop)
	<-q.stopped
}
