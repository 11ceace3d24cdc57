package fsm

import (
	"runtime/debug"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"pgregory.net/rapid"

	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
)

// TestTaskSumsMatchUsageBuilder: tasks summed by taskSums where it accepts
// them (usageBuilder.add taking the others) and merged give the usage sums
// that usageBuilder.add gives for all of them: per agent and framework,
// terminal tasks, volumes' disks, ranges and sets, scalars that round to
// nothing, tasks spread over several workers' sums.
func TestTaskSumsMatchUsageBuilder(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		want, got := newUsageBuilder(), newUsageBuilder()
		workers := []*taskSums{newTaskSums(), newTaskSums()}
		for i := range rapid.IntRange(0, 40).Draw(rt, "tasks") {
			task := genTask(rt)
			if rapid.Bool().Draw(rt, "fewIDs") {
				task.AgentId = rapid.SampledFrom([]string{"a1", "a2"}).Draw(rt, "agent")
				task.FrameworkId = rapid.SampledFrom([]string{"f1", "f2"}).Draw(rt, "framework")
			}
			want.add(task)
			if !workers[i%2].add(task) {
				got.add(task)
			}
		}
		for _, w := range workers {
			w.merge(got)
		}
		wantAgents, wantFws := want.result()
		gotAgents, gotFws := got.result()
		if len(gotAgents) != len(wantAgents) || len(gotFws) != len(wantFws) || len(got.withTasks) != len(want.withTasks) {
			rt.Fatalf("%d agents, %d frameworks, %d with tasks; want %d, %d, %d",
				len(gotAgents), len(gotFws), len(got.withTasks), len(wantAgents), len(wantFws), len(want.withTasks))
		}
		for id := range want.withTasks {
			if !got.withTasks[id] {
				rt.Fatalf("agent %q has tasks, not counted", id)
			}
		}
		for id, w := range wantAgents {
			if err := diffValues(w, gotAgents[id]); err != nil {
				rt.Fatalf("agent %q: %v", id, err)
			}
		}
		for id, w := range wantFws {
			if err := diffValues(w, gotFws[id]); err != nil {
				rt.Fatalf("framework %q: %v", id, err)
			}
		}
	})
}

// TestTaskSumsDeclineNonScalars: a task with a range or set resource is
// left to usageBuilder.add (which converts it with resourcepb).
func TestTaskSumsDeclineNonScalars(t *testing.T) {
	s := newTaskSums()
	ports := &agorav1.Task{AgentId: "a", FrameworkId: "f", State: agorav1.TaskState_TASK_STATE_RUNNING,
		Resources: []*agorav1.Resource{{Name: "ports", Ranges: []*agorav1.Range{{Begin: 1, End: 2}}}}}
	if s.add(ports) || len(s.agents) != 0 {
		t.Fatal("taskSums counted a task with ranges")
	}
	cpus := &agorav1.Task{AgentId: "a", FrameworkId: "f", State: agorav1.TaskState_TASK_STATE_RUNNING,
		Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 1}}}
	if !s.add(cpus) || s.fws["f"].tasks != 1 {
		t.Fatal("taskSums did not count a task of scalars")
	}
}

// TestPauseGC: overlapping pauses hold the GC percent at gcPausePercent
// until the last one ends, then put back the percent set before; a
// collector turned off stays off.
func TestPauseGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(77))
	resume1 := pauseGC()
	resume2 := pauseGC()
	if p := debug.SetGCPercent(gcPausePercent); p != gcPausePercent {
		t.Fatalf("GC percent %d during a restore, want %d", p, gcPausePercent)
	}
	resume1()
	if p := debug.SetGCPercent(gcPausePercent); p != gcPausePercent {
		t.Fatalf("GC percent %d while a restore goes on, want %d", p, gcPausePercent)
	}
	resume2()
	if p := debug.SetGCPercent(-1); p != 77 {
		t.Fatalf("GC percent %d after the restores, want 77", p)
	}
	resume := pauseGC()
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Fatalf("GC percent %d during a restore with the collector off, want -1", p)
	}
	resume()
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Fatalf("GC percent %d after a restore with the collector off, want -1", p)
	}
}

// TestRestoreTaskAllocs pins the allocations of restoring one task: its
// block (the task and its messages), its resource pointers, its strings
// and its three keys, one each.
func TestRestoreTaskAllocs(t *testing.T) {
	now := &timestamppb.Timestamp{Seconds: 1700000000}
	task := &agorav1.Task{Id: "task-0000001", FrameworkId: "fw-1", AgentId: "agent-00001", Name: "task-0000001", Role: "web",
		Resources: []*agorav1.Resource{{Name: "cpus", Scalar: 0.5}, {Name: "mem", Scalar: 512}},
		Command:   &agorav1.CommandInfo{Value: "sleep 3600"}, State: agorav1.TaskState_TASK_STATE_RUNNING, Acknowledged: true, CreatedAt: now,
		Status: &agorav1.TaskStatus{TaskId: "task-0000001", FrameworkId: "fw-1", AgentId: "agent-00001", State: agorav1.TaskState_TASK_STATE_RUNNING,
			Uuid: "00000001-0000-5000-8000-000000000000", Source: agorav1.StatusSource_STATUS_SOURCE_AGENT, Timestamp: now}}
	body, err := proto.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	td, sums := &taskDecoder{in: interner{}}, newTaskSums()
	kvs := make([]restoreKV, 0, 8)
	restore := func() {
		if kvs, err = appendRecordKVs(kvs[:0], recTask, body, td, sums); err != nil || len(kvs) != 3 || !kvs[0].counted {
			t.Fatalf("restore a task: %v, %d keys", err, len(kvs))
		}
	}
	restore() // interns the repeated strings
	if n := testing.AllocsPerRun(100, restore); n > 4 {
		t.Fatalf("%v allocations to restore a task, want 4", n)
	}
}
