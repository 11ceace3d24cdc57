package agent

import (
	"os"
	"path/filepath"
	"testing"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

func status(task string, st agorav1.TaskState) *agorav1.TaskStatus {
	return &agorav1.TaskStatus{TaskId: task, FrameworkId: "fw", AgentId: "a1", State: st, Uuid: newUUID(), Reason: "r " + task}
}

func uuidsOf(sts []*agorav1.TaskStatus) []string {
	out := make([]string, len(sts))
	for i, s := range sts {
		out[i] = s.GetUuid()
	}
	return out
}

func TestOutboxSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.json")
	o, err := openOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := status("t1", agorav1.TaskState_TASK_STATE_RUNNING), status("t2", agorav1.TaskState_TASK_STATE_RUNNING), status("t1", agorav1.TaskState_TASK_STATE_FINISHED)
	if err := o.Append(a, b); err != nil {
		t.Fatal(err)
	}
	if err := o.Append(c); err != nil {
		t.Fatal(err)
	}
	if err := o.Remove(a.GetUuid()); err != nil { // delivered
		t.Fatal(err)
	}

	// A crash: nothing but the file is left.
	o2, err := openOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	got := o2.Peek(10)
	if want := []string{b.GetUuid(), c.GetUuid()}; len(got) != 2 || uuidsOf(got)[0] != want[0] || uuidsOf(got)[1] != want[1] {
		t.Fatalf("after restart outbox holds %v, want %v in that order", uuidsOf(got), want)
	}
	if got[1].GetState() != agorav1.TaskState_TASK_STATE_FINISHED || got[1].GetReason() != "r t1" || got[1].GetTaskId() != "t1" {
		t.Errorf("status not kept intact: %v", got[1])
	}
	select {
	case <-o2.Notify():
	default:
		t.Error("a reopened outbox with undelivered updates does not signal the sender")
	}
	if err := o2.Remove(b.GetUuid(), c.GetUuid()); err != nil {
		t.Fatal(err)
	}
	o3, err := openOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	if o3.Len() != 0 {
		t.Errorf("delivered updates came back after restart: %v", uuidsOf(o3.Peek(10)))
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".outbox.json.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestOutboxCorruptFileIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openOutbox(path); err == nil {
		t.Fatal("corrupt outbox opened without error")
	}
}

func TestLaunchedSetSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "launched.json")
	l, err := openLaunched(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{taskKey("fw", "t1"), taskKey("fw", "t2"), taskKey("fw2", "t1")} {
		if err := l.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Retain(func(k string) bool { return k != taskKey("fw", "t2") }); err != nil {
		t.Fatal(err)
	}
	l2, err := openLaunched(path)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]bool{taskKey("fw", "t1"): true, taskKey("fw", "t2"): false, taskKey("fw2", "t1"): true, taskKey("fw", "t3"): false} {
		if got := l2.Has(k); got != want {
			t.Errorf("after restart Has(%s) = %v, want %v", k, got, want)
		}
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"vol-1": "VOL_1", "data.db": "DATA_DB", "AbC_9": "ABC_9"} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}
