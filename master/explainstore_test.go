package master

import (
	"testing"
	"time"

	"github.com/agora-sched/agora/allocator"
	"github.com/agora-sched/agora/resources"
)

// TestExplainTracesOnDemand: rounds are untraced until an explanation is
// asked for, traced for explainWindow after, and the asker is woken by the
// first traced round.
func TestExplainTracesOnDemand(t *testing.T) {
	var e explainStore
	snap := allocator.Snapshot{
		Agents:     []allocator.Agent{{ID: "a1", Total: resources.MustParse("cpus:1;mem:128"), Unreserved: resources.MustParse("cpus:1;mem:128")}},
		Frameworks: []allocator.Framework{{ID: "f1", Roles: []string{"web"}, Suppressed: map[string]bool{"web": true}}},
	}
	now := time.Unix(1000, 0)
	e.allocate(snap, now, 1)
	if _, _, _, ok := e.lookup("f1"); ok {
		t.Fatal("a round nobody asked to explain was traced")
	}
	fresh := e.want(now)
	select {
	case <-fresh:
		t.Fatal("fresh closed before any traced round")
	default:
	}
	e.allocate(snap, now.Add(time.Millisecond), 2)
	select {
	case <-fresh:
	default:
		t.Fatal("the traced round did not wake the asker")
	}
	ft, index, _, ok := e.lookup("f1")
	if !ok || index != 2 || len(ft.Reasons) != 1 || ft.Reasons[0].Reason != allocator.ReasonSuppressed {
		t.Fatalf("trace = %+v (index %d, ok %v), want f1 suppressed at index 2", ft, index, ok)
	}
	// Past the window, rounds are untraced again: the kept trace stays at 2.
	e.allocate(snap, now.Add(explainWindow+time.Second), 3)
	if _, index, _, _ := e.lookup("f1"); index != 2 {
		t.Fatalf("a round after the window was traced (index %d)", index)
	}
}
