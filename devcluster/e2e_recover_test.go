package devcluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/framework"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// reconcileDriver answers Reconcile from states, failing the first fails
// calls; the bench's recovery uses no other Driver method.
type reconcileDriver struct {
	framework.Driver
	mu     sync.Mutex
	fails  int
	calls  int
	states map[string]agorav1.TaskState
}

func (d *reconcileDriver) Reconcile(_ context.Context, tasks []*agorav1.ReconcileTask) ([]*agorav1.TaskStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.calls <= d.fails {
		return nil, errors.New("no leader")
	}
	var out []*agorav1.TaskStatus
	for _, t := range tasks {
		out = append(out, &agorav1.TaskStatus{TaskId: t.GetTaskId(), State: d.states[t.GetTaskId()]})
	}
	return out, nil
}

// TestE2ERecoverRelaunchesOnlyUnknownTasks: after a failed Accept the
// bench's framework gives back only the tasks the master does not hold
// (one launched task in an Accept retried whole would fail it for ever),
// asking again until the master answers.
func TestE2ERecoverRelaunchesOnlyUnknownTasks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := &e2eSched{run: &e2eRun{}, ctx: ctx, kick: make(chan struct{}, 1)}
	d := &reconcileDriver{fails: 1, states: map[string]agorav1.TaskState{
		"staging": agorav1.TaskState_TASK_STATE_STAGING,
		"running": agorav1.TaskState_TASK_STATE_RUNNING,
		"unknown": agorav1.TaskState_TASK_STATE_UNKNOWN,
	}}
	s.recover(d, []string{"staging", "unknown", "running"})
	if d.calls != 2 {
		t.Fatalf("%d Reconcile calls, want 2 (one failed, then answered)", d.calls)
	}
	if !slices.Equal(s.todo, []string{"unknown"}) || !s.revive {
		t.Fatalf("todo %v revive %v, want [unknown] and a revive", s.todo, s.revive)
	}
}
