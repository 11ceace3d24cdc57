package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/agent/executor"
	"github.com/agora-sched/agora/gossip"
	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// newVolumeAgent returns an agent that is not run: the test feeds its
// reconcile assignments directly, as its assignment loop would.
func newVolumeAgent(t *testing.T) *Agent {
	t.Helper()
	a, err := New(Config{
		ID: "a1", DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0",
		Resources: resources.MustParse("cpus:2;mem:512;disk:100"), GossipProfile: gossip.ProfileLocal, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, k := range a.exec.Running() {
			ended := a.exec.Ended(k)
			_ = a.exec.Kill(k, time.Millisecond)
			<-ended // its volume is detached before the temp dir goes
		}
		a.Kill()
	})
	return a
}

func volTask(id, cmd string, vols ...string) *agorav1.Task {
	return &agorav1.Task{Id: id, FrameworkId: "fw", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_STAGING,
		Command: &agorav1.CommandInfo{Value: cmd}, VolumeIds: vols}
}

func vol(id string, created uint64) *agorav1.Volume {
	return &agorav1.Volume{Id: id, AgentId: "a1", Role: "db", SizeMib: 1, ContainerPath: "data", CreatedIndex: created}
}

// runToEnd assigns the task (with vols) and waits for the executor's
// final update of it (the agent is not run, so the test reads the
// executor's updates itself; other tasks' updates are skipped). A launch
// the agent refused, which never reaches the executor, fails the test
// with the agent's FAILED update and its reason. (It used to wait for the
// task's sandbox and no running task, which a refused launch also leaves:
// RELIABILITY open 15.)
func runToEnd(t *testing.T, a *Agent, index uint64, task *agorav1.Task, vols ...*agorav1.Volume) {
	t.Helper()
	a.reconcile(&agorav1.GetAssignmentsResponse{Index: index, Known: true, Tasks: []*agorav1.Task{task}, Volumes: vols})
	key := executor.TaskKey{FrameworkID: "fw", TaskID: task.GetId()}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case u := <-a.exec.Updates():
			if u.Key() == key && u.State.Terminal() {
				return
			}
		case <-tick.C:
			for _, st := range a.out.Peek(a.out.Len()) {
				if st.GetTaskId() == task.GetId() && st.GetState() == agorav1.TaskState_TASK_STATE_FAILED {
					t.Fatalf("task %s was not launched: %s: %s", task.GetId(), st.GetReason(), st.GetMessage())
				}
			}
		case <-deadline.C:
			t.Fatalf("timed out waiting for task %s to end", task.GetId())
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sandboxFile(t *testing.T, a *Agent, tid, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.exec.Sandbox("fw", tid), name))
	if err != nil {
		t.Fatalf("task %s: %v", tid, err)
	}
	return strings.TrimSpace(string(b))
}

// TestVolumeAtContainerPath: a task writes into its volume at its container
// path and dies; the next task on the volume sees the file; once the volume
// is destroyed its data is deleted, and a new volume with the same id
// starts empty.
func TestVolumeAtContainerPath(t *testing.T) {
	a := newVolumeAgent(t)
	v1 := vol("v1", 5)
	runToEnd(t, a, 10, volTask("t1", "echo kept > data/file; exit 3", "v1"), v1)
	dir := filepath.Join(a.cfg.DataDir, "volumes", "db", "v1")
	if b, err := os.ReadFile(filepath.Join(dir, "file")); err != nil || strings.TrimSpace(string(b)) != "kept" {
		t.Fatalf("volume dir after t1: %q %v", b, err)
	}
	runToEnd(t, a, 11, volTask("t2", "cat data/file > seen", "v1"), v1)
	if got := sandboxFile(t, a, "t2", "seen"); got != "kept" {
		t.Fatalf("t2 saw %q in its volume, want kept", got)
	}

	// DESTROY: the volume is no longer assigned, its data goes.
	a.reconcile(&agorav1.GetAssignmentsResponse{Index: 12, Known: true})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("volume dir after destroy: %v", err)
	}
	runToEnd(t, a, 13, volTask("t3", "ls -A data > seen; echo done >> seen", "v1"), vol("v1", 13))
	if got := sandboxFile(t, a, "t3", "seen"); got != "done" {
		t.Fatalf("a new v1 shows old files: %q", got)
	}

	// Destroyed and created again between two assignments the agent saw:
	// the marker tells the volumes apart.
	if err := os.WriteFile(filepath.Join(dir, "old"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	runToEnd(t, a, 20, volTask("t4", "ls -A data > seen; echo done >> seen", "v1"), vol("v1", 19))
	if got := sandboxFile(t, a, "t4", "seen"); got != "done" {
		t.Fatalf("a re-created v1 shows old files: %q", got)
	}
}

// TestVolumeStaleTaskKilledFirst: a task the masters lost (partition) still
// runs on its volume; when its successor is assigned, the agent kills the
// stale task before it starts the new one.
func TestVolumeStaleTaskKilledFirst(t *testing.T) {
	a := newVolumeAgent(t)
	v := vol("v2", 3)
	stale := volTask("old", "echo $$ > data/pid; exec sleep 1000", "v2")
	a.reconcile(&agorav1.GetAssignmentsResponse{Index: 5, Known: true, Tasks: []*agorav1.Task{stale}, Volumes: []*agorav1.Volume{v}})
	pidFile := filepath.Join(a.cfg.DataDir, "volumes", "db", "v2", "pid")
	waitFor(t, "the stale task to run", func() bool { _, err := os.Stat(pidFile); return err == nil })

	// The masters now assign "new" on v2 and no longer "old" (LOST).
	succ := volTask("new", `if kill -0 "$(cat data/pid)" 2>/dev/null; then echo alive; else echo dead; fi > seen`, "v2")
	runToEnd(t, a, 9, succ, v)
	if got := sandboxFile(t, a, "new", "seen"); got != "dead" {
		t.Fatalf("the successor started while the stale task was %s", got)
	}
	if _, running := a.exec.Spec(executor.TaskKey{FrameworkID: "fw", TaskID: "old"}); running {
		t.Fatal("stale task still running")
	}
}

// TestVolumeOverSizeFails: a task that writes more than its volume's size
// is killed and reported FAILED with the reason.
func TestVolumeOverSizeFails(t *testing.T) {
	a := newVolumeAgent(t)
	v := vol("v3", 1) // 1 MiB
	task := volTask("big", "head -c 2097152 /dev/zero > data/blob; exec sleep 1000", "v3")
	a.reconcile(&agorav1.GetAssignmentsResponse{Index: 2, Known: true, Tasks: []*agorav1.Task{task}, Volumes: []*agorav1.Volume{v}})
	blob := filepath.Join(a.cfg.DataDir, "volumes", "db", "v3", "blob")
	waitFor(t, "the blob", func() bool { fi, err := os.Stat(blob); return err == nil && fi.Size() == 2<<20 })
	a.checkVolumeUsage()
	for {
		select {
		case u := <-a.exec.Updates():
			st := a.statusFromUpdate(u)
			a.volumeFailure(st)
			if u.TaskID != "big" || !u.State.Terminal() {
				continue
			}
			if st.GetState() != agorav1.TaskState_TASK_STATE_FAILED || !strings.Contains(st.GetReason(), "volume v3 over its size: 2.0 MiB used of 1.0 MiB") {
				t.Fatalf("oversized task ended %v %q", st.GetState(), st.GetReason())
			}
			return
		case <-time.After(10 * time.Second):
			t.Fatal("oversized task not killed")
		}
	}
}
