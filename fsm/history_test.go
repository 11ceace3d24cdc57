package fsm

import (
	"bytes"
	"fmt"
	"testing"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestRemovedOffersBounded: the newest maxRemovedOffers removals are
// remembered, the oldest forgotten first, a re-removal keeps one record,
// and a snapshot keeps them all.
func TestRemovedOffersBounded(t *testing.T) {
	x := newTxn(emptyState(), 1)
	x.rememberRemoved("o0", "declined")
	x.rememberRemoved("o0", "expired") // the latest reason wins, counted once
	for i := 1; i <= maxRemovedOffers; i++ {
		x.rememberRemoved(fmt.Sprintf("o%d", i), "accepted")
	}
	if _, ok := x.removedReason("o0"); ok {
		t.Fatal("oldest removal kept past the bound")
	}
	if r, ok := x.removedReason("o1"); !ok || r != "accepted" {
		t.Fatalf("o1 = %q %v", r, ok)
	}
	if n := len(x.keys(hRemovedSeq)); n != maxRemovedOffers {
		t.Fatalf("%d removals kept, want %d", n, maxRemovedOffers)
	}
	st := &State{index: 1, root: x.t.CommitOnly(), changed: make(chan struct{})}
	var a, b bytes.Buffer
	if err := st.Persist(&a); err != nil {
		t.Fatal(err)
	}
	back, err := ReadState(bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Persist(&b); err != nil || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("re-snapshot differs (%v)", err)
	}
	// The restored state goes on evicting in the same order.
	y := newTxn(back, 2)
	y.rememberRemoved("new", "rescinded")
	if _, ok := y.removedReason("o1"); ok {
		t.Fatal("restored state did not evict the oldest removal")
	}
}

// TestSupersededBounded: a task keeps its newest maxSupersededPerTask
// superseded uuids, and none once it is removed.
func TestSupersededBounded(t *testing.T) {
	x := newTxn(emptyState(), 1)
	task := &agorav1.Task{Id: "t1", FrameworkId: "f1", AgentId: "a1", State: agorav1.TaskState_TASK_STATE_STAGING}
	x.putTask(nil, task)
	for i := range maxSupersededPerTask + 3 {
		x.index = uint64(10 + i)
		cur, _ := x.task("f1", "t1")
		x.setStatus(cur, &agorav1.TaskStatus{TaskId: "t1", FrameworkId: "f1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: fmt.Sprintf("u%02d", i)})
	}
	last := maxSupersededPerTask + 2 // the latest, not superseded
	for i := range last {
		want := i >= last-maxSupersededPerTask
		if got := x.wasSuperseded("f1", "t1", fmt.Sprintf("u%02d", i)); got != want {
			t.Errorf("u%02d superseded = %v, want %v", i, got, want)
		}
	}
	if x.wasSuperseded("f1", "t1", fmt.Sprintf("u%02d", last)) {
		t.Error("the latest uuid counts as superseded")
	}
	cur, _ := x.task("f1", "t1")
	x.deleteTask(cur)
	if n := len(x.keys(hSuperseded)); n != 0 {
		t.Fatalf("%d superseded uuids left after the task was removed", n)
	}
}
