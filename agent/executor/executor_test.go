package executor

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func quietLog() *slog.Logger {
	if os.Getenv("AGORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newExec(t *testing.T, dir string) *Process {
	t.Helper()
	p, err := NewProcess(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// killGroupOnCleanup makes sure no test leaves a process behind, whatever
// the executor did.
func killGroupOnCleanup(t *testing.T, p *Process, fw, id string) {
	t.Cleanup(func() {
		c, err := loadCheckpoint(p.Sandbox(fw, id) + ".json")
		if err == nil && c.Pgid > 0 && processAlive(c.Pid, c.StartTime) {
			_ = syscall.Kill(-c.Pgid, syscall.SIGKILL)
		}
	})
}

// fw1 names task id of framework fw1, the framework launch defaults to.
func fw1(id string) TaskKey { return TaskKey{FrameworkID: "fw1", TaskID: id} }

func launch(t *testing.T, p *Process, spec TaskSpec) {
	t.Helper()
	if spec.FrameworkID == "" {
		spec.FrameworkID = "fw1"
	}
	killGroupOnCleanup(t, p, spec.FrameworkID, spec.TaskID)
	if err := p.Launch(spec); err != nil {
		t.Fatalf("launch %s: %v", spec.TaskID, err)
	}
}

// next returns the next update for taskID, skipping others, within d.
func next(t *testing.T, p *Process, taskID string, d time.Duration) Update {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case u, ok := <-p.Updates():
			if !ok {
				t.Fatalf("updates closed while waiting for %s", taskID)
			}
			if u.TaskID == taskID {
				return u
			}
		case <-timer.C:
			t.Fatalf("no update for %s within %v", taskID, d)
		}
	}
}

// terminal skips STARTING and RUNNING updates and returns the final one.
func terminal(t *testing.T, p *Process, taskID string, d time.Duration) Update {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		u := next(t, p, taskID, time.Until(deadline))
		if u.State.Terminal() {
			return u
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	p := newExec(t, t.TempDir())
	launch(t, p, TaskSpec{TaskID: "ok", Command: "echo hello; echo oops >&2"})
	if u := next(t, p, "ok", 10*time.Second); u.State != StateStarting || u.FrameworkID != "fw1" {
		t.Fatalf("first update = %+v, want STARTING", u)
	}
	if u := next(t, p, "ok", 10*time.Second); u.State != StateRunning {
		t.Fatalf("second update = %+v, want RUNNING", u)
	}
	u := next(t, p, "ok", 10*time.Second)
	if u.State != StateFinished || u.ExitCode != 0 || u.Reason != "exited with code 0" {
		t.Fatalf("final = %+v, want FINISHED 0", u)
	}
	sb := p.Sandbox("fw1", "ok")
	if out, _ := os.ReadFile(filepath.Join(sb, "stdout")); string(out) != "hello\n" {
		t.Fatalf("stdout = %q", out)
	}
	if out, _ := os.ReadFile(filepath.Join(sb, "stderr")); string(out) != "oops\n" {
		t.Fatalf("stderr = %q", out)
	}

	launch(t, p, TaskSpec{TaskID: "three", Command: "exit 3"})
	u = terminal(t, p, "three", 10*time.Second)
	if u.State != StateFailed || u.ExitCode != 3 || !strings.Contains(u.Reason, "code 3") {
		t.Fatalf("final = %+v, want FAILED 3", u)
	}
	if len(p.Running()) != 0 {
		t.Fatalf("running after exit: %v", p.Running())
	}
	c, err := loadCheckpoint(p.Sandbox("fw1", "three") + ".json")
	if err != nil || !c.Terminal || c.Final == nil || c.Final.ExitCode != 3 {
		t.Fatalf("checkpoint not terminal with exit code: %+v %v", c, err)
	}
}

func TestEnvAndWorkingDirectory(t *testing.T) {
	t.Parallel()
	p := newExec(t, t.TempDir())
	launch(t, p, TaskSpec{
		TaskID: "env", FrameworkID: "fwE", Command: `pwd > out; env >> out`,
		Env:   map[string]string{"GREETING": "hi there", "AGORA_TASK_ID": "spoofed"},
		Ports: []uint64{31000, 31005},
	})
	if u := terminal(t, p, "env", 10*time.Second); u.State != StateFinished {
		t.Fatalf("final = %+v", u)
	}
	sb := p.Sandbox("fwE", "env")
	data, err := os.ReadFile(filepath.Join(sb, "out"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	if lines[0] != sb {
		t.Fatalf("cwd = %q, want %q", lines[0], sb)
	}
	env := map[string]string{}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	want := map[string]string{
		"AGORA_TASK_ID": "env", "AGORA_FRAMEWORK_ID": "fwE", "AGORA_SANDBOX": sb,
		"PORT0": "31000", "PORT1": "31005", "PORTS": "31000,31005", "GREETING": "hi there",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if env["PATH"] == "" {
		t.Error("PATH not set")
	}
}

func TestKillTermTrapped(t *testing.T) {
	t.Parallel()
	p := newExec(t, t.TempDir())
	// The task exits 7 on TERM and records that it saw it.
	launch(t, p, TaskSpec{TaskID: "trap", Command: `trap 'echo term > got; exit 7' TERM; echo ready > ready; while :; do sleep 0.05; done`})
	sb := p.Sandbox("fw1", "trap")
	waitFor(t, 10*time.Second, "task ready", func() bool { _, err := os.Stat(filepath.Join(sb, "ready")); return err == nil })
	start := time.Now()
	if err := p.Kill(fw1("trap"), time.Minute); err != nil {
		t.Fatal(err)
	}
	u := terminal(t, p, "trap", 10*time.Second)
	if u.State != StateKilled || u.ExitCode != 7 {
		t.Fatalf("final = %+v, want KILLED with the task's exit code 7", u)
	}
	// A minute of grace was allowed; ending well before it means the task
	// reacted to SIGTERM rather than waiting for SIGKILL.
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("TERM-handling task took %v to end", took)
	}
	if got, _ := os.ReadFile(filepath.Join(sb, "got")); string(got) != "term\n" {
		t.Fatalf("task did not see SIGTERM: %q", got)
	}
	if err := p.Kill(fw1("trap"), 0); !errors.Is(err, ErrUnknownTask) {
		t.Fatalf("kill of ended task = %v", err)
	}
}

func TestKillEscalatesToSIGKILL(t *testing.T) {
	t.Parallel()
	p := newExec(t, t.TempDir())
	launch(t, p, TaskSpec{TaskID: "stubborn", Command: `trap '' TERM; echo ready > ready; while :; do sleep 0.05; done`})
	sb := p.Sandbox("fw1", "stubborn")
	waitFor(t, 10*time.Second, "task ready", func() bool { _, err := os.Stat(filepath.Join(sb, "ready")); return err == nil })
	grace := 300 * time.Millisecond
	start := time.Now()
	if err := p.Kill(fw1("stubborn"), grace); err != nil {
		t.Fatal(err)
	}
	u := terminal(t, p, "stubborn", 10*time.Second)
	if u.State != StateKilled || u.ExitCode != 137 || !strings.Contains(u.Reason, "signal 9") {
		t.Fatalf("final = %+v, want KILLED by SIGKILL", u)
	}
	if took := time.Since(start); took < grace {
		t.Fatalf("SIGKILL came after %v, before the %v grace", took, grace)
	}
}

func TestLaunchErrors(t *testing.T) {
	t.Parallel()
	p := newExec(t, t.TempDir())
	bad := []TaskSpec{
		{TaskID: "", FrameworkID: "f", Command: "true"},
		{TaskID: "../x", FrameworkID: "f", Command: "true"},
		{TaskID: "x", FrameworkID: "..", Command: "true"},
		{TaskID: "x", FrameworkID: "f"},
		{TaskID: "x", FrameworkID: "f", Command: "true", CPUs: -1},
	}
	for _, s := range bad {
		if err := p.Launch(s); !errors.Is(err, ErrBadSpec) {
			t.Errorf("Launch(%+v) = %v, want ErrBadSpec", s, err)
		}
	}
	launch(t, p, TaskSpec{TaskID: "dup", Command: "sleep 30"})
	if err := p.Launch(TaskSpec{TaskID: "dup", FrameworkID: "fw1", Command: "true"}); !errors.Is(err, ErrTaskRunning) {
		t.Fatalf("duplicate launch = %v", err)
	}
	if err := p.Forget(fw1("dup")); !errors.Is(err, ErrTaskRunning) {
		t.Fatalf("forget running = %v", err)
	}
	if got := p.Running(); len(got) != 1 || got[0] != fw1("dup") {
		t.Fatalf("running = %v", got)
	}
	if err := p.Kill(fw1("dup"), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	terminal(t, p, "dup", 10*time.Second)
	if err := p.Forget(fw1("dup")); err != nil {
		t.Fatal(err)
	}
	if err := p.Forget(fw1("dup")); !errors.Is(err, ErrUnknownTask) {
		t.Fatalf("second forget = %v", err)
	}
}

func TestReattachAfterRestartThenKill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := newExec(t, dir)
	launch(t, a, TaskSpec{TaskID: "long", Command: "echo ready > ready; sleep 30", KillGrace: 5 * time.Second})
	if u := next(t, a, "long", 10*time.Second); u.State != StateStarting {
		t.Fatalf("got %+v", u)
	}
	if u := next(t, a, "long", 10*time.Second); u.State != StateRunning {
		t.Fatalf("got %+v", u)
	}
	// The agent "crashes": A stops watching, the task keeps running.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := newExec(t, dir)
	ups, err := b.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 1 || ups[0].TaskID != "long" || ups[0].State != StateRunning || ups[0].FrameworkID != "fw1" {
		t.Fatalf("recover = %+v, want long RUNNING", ups)
	}
	if got := b.Running(); len(got) != 1 || got[0] != fw1("long") {
		t.Fatalf("running = %v", got)
	}
	// A second Recover finds nothing new.
	if again, err := b.Recover(); err != nil || len(again) != 0 {
		t.Fatalf("second recover = %+v, %v", again, err)
	}
	if err := b.Kill(fw1("long"), 0); err != nil {
		t.Fatal(err)
	}
	u := terminal(t, b, "long", 10*time.Second)
	if u.State != StateKilled || u.ExitCode != 128+int(syscall.SIGTERM) {
		t.Fatalf("final = %+v, want KILLED by SIGTERM (143)", u)
	}
	// Restarting once more reports nothing: the task is terminal.
	c := newExec(t, dir)
	if ups, err := c.Recover(); err != nil || len(ups) != 0 {
		t.Fatalf("recover after terminal = %+v, %v", ups, err)
	}
	fin, err := c.Terminal()
	if err != nil || len(fin) != 1 || fin[0].State != StateKilled {
		t.Fatalf("terminal = %+v, %v", fin, err)
	}
}

func TestReattachedTaskExitCodeIsReported(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := newExec(t, dir)
	sb := a.Sandbox("fw1", "later")
	launch(t, a, TaskSpec{TaskID: "later", Command: "while [ ! -e go ]; do sleep 0.05; done; exit 5"})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := newExec(t, dir)
	if ups, err := b.Recover(); err != nil || len(ups) != 1 || ups[0].State != StateRunning {
		t.Fatalf("recover = %+v, %v", ups, err)
	}
	if err := os.WriteFile(filepath.Join(sb, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	u := terminal(t, b, "later", 10*time.Second)
	if u.State != StateFailed || u.ExitCode != 5 {
		t.Fatalf("final = %+v, want FAILED 5 from the wrapper's record", u)
	}
}

func TestTasksThatDiedWhileAgentWasDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := newExec(t, dir)
	// "recorded" ends by itself with code 4; "vanished" is SIGKILLed with
	// its wrapper, so no exit code is recorded.
	launch(t, a, TaskSpec{TaskID: "recorded", Command: "while [ ! -e go ]; do sleep 0.05; done; exit 4"})
	launch(t, a, TaskSpec{TaskID: "vanished", Command: "sleep 30"})
	c, err := loadCheckpoint(a.Sandbox("fw1", "vanished") + ".json")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := loadCheckpoint(a.Sandbox("fw1", "recorded") + ".json")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	recSB := a.Sandbox("fw1", "recorded")
	if err := os.WriteFile(filepath.Join(recSB, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-c.Pgid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The wrapper writes the exit record just before it exits: wait for
	// both wrappers to be gone, or Recover may re-attach to "recorded".
	waitFor(t, 10*time.Second, "both tasks ended", func() bool {
		_, err := os.Stat(filepath.Join(recSB, exitFile))
		return err == nil && !processAlive(c.Pid, c.StartTime) && !processAlive(rc.Pid, rc.StartTime)
	})

	b := newExec(t, dir)
	ups, err := b.Recover()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Update{}
	for _, u := range ups {
		got[u.TaskID] = u
	}
	if u := got["recorded"]; u.State != StateFailed || u.ExitCode != 4 || !strings.Contains(u.Reason, "while the agent was down") {
		t.Fatalf("recorded = %+v, want FAILED 4", u)
	}
	if u := got["vanished"]; u.State != StateFailed || u.ExitCode != -1 || u.Reason != "agent restarted and task process was gone" {
		t.Fatalf("vanished = %+v, want FAILED gone", u)
	}
	if len(b.Running()) != 0 {
		t.Fatalf("running = %v", b.Running())
	}
	if again, err := b.Recover(); err != nil || len(again) != 0 {
		t.Fatalf("second recover = %+v, %v", again, err)
	}
}

func TestPidReuseIsNotMistakenForTask(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newExec(t, dir)
	// A checkpoint naming our own (live) pid with a wrong start time must
	// be treated as a task that is gone.
	start, _, err := procStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	spec := TaskSpec{TaskID: "ghost", FrameworkID: "fw1", Command: "true"}
	if err := os.MkdirAll(p.Sandbox("fw1", "ghost"), 0o755); err != nil {
		t.Fatal(err)
	}
	ck := &checkpoint{Spec: spec, Pid: os.Getpid(), Pgid: os.Getpid(), StartTime: start + 1}
	if err := saveCheckpoint(p.Sandbox("fw1", "ghost")+".json", ck); err != nil {
		t.Fatal(err)
	}
	ups, err := p.Recover()
	if err != nil || len(ups) != 1 || ups[0].State != StateFailed {
		t.Fatalf("recover = %+v, %v", ups, err)
	}
}

func TestProcStat(t *testing.T) {
	start, state, err := procStat(os.Getpid())
	if err != nil || start == 0 || state == 'Z' {
		t.Fatalf("procStat(self) = %d %c %v", start, state, err)
	}
	if !processAlive(os.Getpid(), start) {
		t.Fatal("self not alive")
	}
	if _, _, err := procStat(1 << 30); err == nil {
		t.Fatal("procStat of a missing pid succeeded")
	}
}

func TestDescribeExit(t *testing.T) {
	for code, want := range map[int]string{0: "exited with code 0", 3: "exited with code 3", 137: "killed by signal 9 (killed)", 143: "killed by signal 15 (terminated)", 255: "exited with code 255"} {
		if got := describeExit(code); got != want {
			t.Errorf("describeExit(%d) = %q, want %q", code, got, want)
		}
	}
}

// nextOf returns the next update for any of keys within d, skipping others.
func nextOf(t *testing.T, p *Process, d time.Duration, keys ...TaskKey) Update {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case u, ok := <-p.Updates():
			if !ok {
				t.Fatalf("updates closed while waiting for %v", keys)
			}
			if slices.Contains(keys, u.Key()) {
				return u
			}
		case <-timer.C:
			t.Fatalf("no update for %v within %v", keys, d)
		}
	}
}

// Task ids are unique within a framework only: two frameworks running the
// same id on one agent are two tasks, with their own sandbox, checkpoint,
// kill and recovery.
func TestSameTaskIDInTwoFrameworks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newExec(t, dir)
	a, b := TaskKey{FrameworkID: "fwA", TaskID: "web"}, TaskKey{FrameworkID: "fwB", TaskID: "web"}
	for _, k := range []TaskKey{a, b} {
		launch(t, p, TaskSpec{TaskID: k.TaskID, FrameworkID: k.FrameworkID, Command: "echo $AGORA_FRAMEWORK_ID > ready; sleep 30"})
	}
	running := map[TaskKey]bool{}
	for len(running) < 2 {
		u := nextOf(t, p, 10*time.Second, a, b)
		if u.State.Terminal() {
			t.Fatalf("task ended before both ran: %+v", u)
		}
		if u.State == StateRunning {
			running[u.Key()] = true
		}
	}
	if got := p.Running(); !slices.Equal(got, []TaskKey{a, b}) {
		t.Fatalf("running = %v, want both", got)
	}
	for _, k := range []TaskKey{a, b} {
		sb := p.Sandbox(k.FrameworkID, k.TaskID)
		waitFor(t, 10*time.Second, k.String()+" ready", func() bool {
			got, err := os.ReadFile(filepath.Join(sb, "ready"))
			return err == nil && string(got) == k.FrameworkID+"\n"
		})
	}

	if err := p.Kill(a, 0); err != nil {
		t.Fatal(err)
	}
	if u := nextOf(t, p, 10*time.Second, a, b); u.Key() != a || u.State != StateKilled {
		t.Fatalf("after killing %s: %+v, want %s KILLED", a, u, a)
	}
	if got := p.Running(); !slices.Equal(got, []TaskKey{b}) {
		t.Fatalf("running after kill of %s = %v, want only %s", a, got, b)
	}
	cb, err := loadCheckpoint(p.Sandbox(b.FrameworkID, b.TaskID) + ".json")
	if err != nil || !processAlive(cb.Pid, cb.StartTime) {
		t.Fatalf("%s not alive after the kill of %s: %+v %v", b, a, cb, err)
	}
	if err := p.Forget(b); !errors.Is(err, ErrTaskRunning) {
		t.Fatalf("forget of running %s = %v", b, err)
	}
	if err := p.Forget(a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Sandbox(b.FrameworkID, b.TaskID) + ".json"); err != nil {
		t.Fatalf("forgetting %s removed the checkpoint of %s: %v", a, b, err)
	}

	// After a restart only b is re-attached, under its own framework.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	q := newExec(t, dir)
	ups, err := q.Recover()
	if err != nil || len(ups) != 1 || ups[0].Key() != b || ups[0].State != StateRunning {
		t.Fatalf("recover = %+v, %v; want only %s RUNNING", ups, err, b)
	}
	if err := q.Kill(b, 0); err != nil {
		t.Fatal(err)
	}
	if u := nextOf(t, q, 10*time.Second, a, b); u.Key() != b || u.State != StateKilled {
		t.Fatalf("final = %+v, want %s KILLED", u, b)
	}
}

// A checkpoint written before tasks were keyed by framework (the file
// format is unchanged; the spec names both ids) is recovered as before.
func TestRecoverReadsEarlierCheckpoint(t *testing.T) {
	t.Parallel()
	p := newExec(t, t.TempDir())
	sb := p.Sandbox("fwOld", "old")
	if err := os.MkdirAll(sb, 0o755); err != nil {
		t.Fatal(err)
	}
	const earlier = `{
  "spec": {"TaskID": "old", "FrameworkID": "fwOld", "Name": "", "Command": "sleep 1", "Env": null,
           "CPUs": 0, "MemMiB": 0, "Ports": null, "KillGrace": 3000000000},
  "pid": 0, "pgid": 0, "start_time": 0, "launched_at": "2025-01-01T00:00:00Z"
}`
	if err := os.WriteFile(sb+".json", []byte(earlier), 0o644); err != nil {
		t.Fatal(err)
	}
	ups, err := p.Recover()
	want := TaskKey{FrameworkID: "fwOld", TaskID: "old"}
	if err != nil || len(ups) != 1 || ups[0].Key() != want || ups[0].State != StateFailed ||
		ups[0].Reason != "agent restarted while launching the task" {
		t.Fatalf("recover = %+v, %v", ups, err)
	}
}
