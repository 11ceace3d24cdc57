package master

import (
	"fmt"
	"testing"
	"time"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestResendTrackerDueOrder: statuses come due in the order sent, a status
// sent again is due only from its last send, a forgotten one never, and
// the queue keeps its order across compactions.
func TestResendTrackerDueOrder(t *testing.T) {
	r := newResendTracker()
	t0 := time.Unix(1000, 0)
	every := 5 * time.Second
	const n = 5000
	for i := range n {
		r.note(&agorav1.TaskStatus{TaskId: fmt.Sprintf("t%d", i), Uuid: fmt.Sprintf("u%d", i)}, t0.Add(time.Duration(i)*time.Millisecond))
	}
	r.note(&agorav1.TaskStatus{TaskId: "t1", Uuid: "u1"}, t0.Add(time.Hour)) // sent again much later
	r.forget("u2")
	if _, ok := r.nextDue(t0.Add(every-time.Millisecond), every); ok {
		t.Fatal("a status came due before an interval passed")
	}
	var got []string
	for {
		e, ok := r.nextDue(t0.Add(every+n*time.Millisecond), every)
		if !ok {
			break
		}
		got = append(got, e.uuid)
		r.forget(e.uuid)
	}
	if len(got) != n-2 || got[0] != "u0" || got[1] != "u3" || got[len(got)-1] != fmt.Sprintf("u%d", n-1) {
		t.Fatalf("due %d statuses starting %v, want %d in send order without u1 and u2", len(got), got[:3], n-2)
	}
	for i := 1; i < len(got); i++ {
		var a, b int
		fmt.Sscanf(got[i-1], "u%d", &a)
		fmt.Sscanf(got[i], "u%d", &b)
		if b <= a {
			t.Fatalf("out of send order at %d: %s after %s", i, got[i], got[i-1])
		}
	}
	if e, ok := r.nextDue(t0.Add(time.Hour+every), every); !ok || e.uuid != "u1" {
		t.Fatalf("the status sent again came due as %v %v, want u1", e, ok)
	}
	// Backed off: resent at t, next due at t+2*every, not before.
	r.backOff("u1")
	at := t0.Add(2 * time.Hour)
	r.note(&agorav1.TaskStatus{TaskId: "t1", Uuid: "u1"}, at)
	if e, ok := r.nextDue(at.Add(2*every-time.Millisecond), every); ok {
		t.Fatalf("a backed-off status came due early: %v", e)
	}
	if e, ok := r.nextDue(at.Add(2*every), every); !ok || e.uuid != "u1" || e.level != 1 {
		t.Fatalf("the backed-off status came due as %v %v, want u1 at level 1", e, ok)
	}
}
