package fsm

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agora-sched/agora/resources"
	agorav1 "github.com/agora-sched/agora/rpc/gen/agora/v1"
	"github.com/agora-sched/agora/rpc/resourcepb"
)

// epochFixture is an FSM with agents a1 and a2 and tasks t1..t3 of
// framework f1 launched on a1 (STAGING).
func epochFixture(t *testing.T) (f *FSM, apply func(CommandType, proto.Message) Result) {
	t.Helper()
	f = New(Config{})
	var index uint64
	apply = func(typ CommandType, m proto.Message) Result {
		t.Helper()
		index++
		res, err := f.ApplyMessage(index, typ, m)
		if err != nil {
			t.Fatal(err)
		}
		if res.Err != nil {
			t.Fatalf("%s rejected: %v", typ, res.Err)
		}
		return res
	}
	now := &timestamppb.Timestamp{Seconds: 10}
	for _, id := range []string{"a1", "a2"} {
		apply(CmdRegisterAgent, &agorav1.RegisterAgentCommand{Agent: &agorav1.Agent{Id: id, Hostname: "h", Address: "x:1",
			Resources: resourcepb.ToProto("", resources.MustParse("cpus:4;mem:1024"))}, Now: now})
	}
	apply(CmdSubscribeFramework, &agorav1.SubscribeFrameworkCommand{Framework: &agorav1.Framework{Id: "f1",
		Info: &agorav1.FrameworkInfo{Name: "x", Principal: "p"}, StreamToken: "s"}, Now: now})
	apply(CmdOffersCreated, &agorav1.OffersCreatedCommand{Now: now, Offers: []*agorav1.Offer{{Id: "o1", FrameworkId: "f1", AgentId: "a1",
		Role: "*", Resources: resourcepb.ToProto("", resources.MustParse("cpus:4;mem:1024"))}}})
	op := &agorav1.Operation{Type: agorav1.OperationType_OPERATION_TYPE_LAUNCH}
	for i := 1; i <= 3; i++ {
		op.Tasks = append(op.Tasks, &agorav1.TaskInfo{TaskId: fmt.Sprintf("t%d", i), Name: "x",
			Resources: resourcepb.ToProto("", resources.MustParse("cpus:1;mem:1")), Command: &agorav1.CommandInfo{Value: "true"}})
	}
	apply(CmdAccept, &agorav1.AcceptCommand{FrameworkId: "f1", OfferIds: []string{"o1"}, Now: now, Operations: []*agorav1.Operation{op}})
	return f, apply
}

func running(tid, uuid string) *agorav1.TaskStatus {
	return &agorav1.TaskStatus{TaskId: tid, FrameworkId: "f1", State: agorav1.TaskState_TASK_STATE_RUNNING, Uuid: uuid}
}

// TestTaskEpochOncePerApply: an apply that writes several tasks of an agent
// stores one new task epoch for it (bumpTaskEpoch keeps the one it stored),
// which differs from every earlier state's; an agent whose tasks it did not
// write keeps its epoch.
func TestTaskEpochOncePerApply(t *testing.T) {
	f, apply := epochFixture(t)
	v0, other := f.State().AgentTasksVersion("a1"), f.State().AgentTasksVersion("a2")
	if v0 == nil {
		t.Fatal("a1 has tasks but no tasks version")
	}
	apply(CmdStatusUpdateBatch, &agorav1.StatusUpdateBatchCommand{Updates: []*agorav1.StatusUpdateCommand{
		{AgentId: "a1", Statuses: []*agorav1.TaskStatus{running("t1", "u1"), running("t2", "u2")}},
		{AgentId: "a1", Statuses: []*agorav1.TaskStatus{running("t3", "u3")}},
	}})
	s := f.State()
	v1 := s.AgentTasksVersion("a1")
	if v1 == v0 {
		t.Fatal("three tasks of a1 changed but its tasks version did not")
	}
	if got := s.AgentTasksVersion("a2"); got != other {
		t.Fatal("a2's tasks version changed, but none of its tasks did")
	}
	if n := v1.(*taskEpoch).n; n != v0.(*taskEpoch).n+1 {
		t.Fatalf("epoch count went from %d to %d; one apply stores one epoch per agent", v0.(*taskEpoch).n, n)
	}
	for _, tid := range []string{"t1", "t2", "t3"} {
		if tk, _ := s.Task("f1", tid); tk.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
			t.Fatalf("task %s is %s, want RUNNING", tid, tk.GetState())
		}
	}
}

// TestTaskEpochAfterRolledBackItem: a batch item that wrote a task of an
// agent and was then rejected is rolled back with the epoch it stored; a
// later item writing a task of that agent must store a new epoch again,
// or the new state would hold the previous state's epoch with other tasks.
func TestTaskEpochAfterRolledBackItem(t *testing.T) {
	f, apply := epochFixture(t)
	v0 := f.State().AgentTasksVersion("a1")
	res := apply(CmdStatusUpdateBatch, &agorav1.StatusUpdateBatchCommand{Updates: []*agorav1.StatusUpdateCommand{
		// Writes t1, then is rejected at the unknown task.
		{AgentId: "a1", Statuses: []*agorav1.TaskStatus{running("t1", "u1"), running("nope", "u9")}},
		{AgentId: "a1", Statuses: []*agorav1.TaskStatus{running("t2", "u2")}},
	}})
	if res.Items[0] == nil || res.Items[0].Code != CodeNotFound || res.Items[1] != nil {
		t.Fatalf("verdicts %v, want NotFound then applied", res.Items)
	}
	s := f.State()
	if t1, _ := s.Task("f1", "t1"); t1.GetState() != agorav1.TaskState_TASK_STATE_STAGING {
		t.Fatalf("rejected item's update of t1 stayed: %s", t1.GetState())
	}
	if t2, _ := s.Task("f1", "t2"); t2.GetState() != agorav1.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("t2 is %s, want RUNNING", t2.GetState())
	}
	if s.AgentTasksVersion("a1") == v0 {
		t.Fatal("t2 of a1 changed after a rolled back item, but a1's tasks version did not")
	}
}
