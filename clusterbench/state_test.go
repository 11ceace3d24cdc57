package clusterbench

import (
	"context"
	"testing"
	"time"
)

// TestStateTiny runs the state benchmark in this process (so that -race
// sees the catch-up writer): it fails unless the restored FSM and the
// caught-up follower hold every agent and task.
func TestStateTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := State(ctx, StateOptions{Agents: 20, Tasks: 300, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Agents != 20 || r.Tasks != 300 || r.SnapshotMiB <= 0 || r.HeapMiB <= 0 {
		t.Fatalf("incomplete result: %+v", r)
	}
}

func TestStateRejectsOverfullAgents(t *testing.T) {
	if _, err := State(context.Background(), StateOptions{Agents: 1, Tasks: 200, Dir: t.TempDir(), SkipCatchup: true}); err == nil {
		t.Fatal("200 tasks on one agent (more than 128) accepted")
	}
}
